"""AVID's threshold-rule measurement on hand-made numbers: the pooling, the choice made on the other
runs (never on the run it is measured on), and its one-line refusal of a file that is not an AVID fold."""
import json

import pytest

from occ.benchmarks.avid_rules import CHOSEN_AMONG, RATES, deployed_candidate, inside_the_folds, main, pooled

ONE, HALF, LARGEST = RATES


def _one(episodes: int, caught: int = 6, delays: tuple[int, ...] = (3, 5)) -> dict:
    return {"episodes": episodes, "normal_hours": 1.5 / 60, "events_caught": caught, "events": 6, "delays": list(delays)}


def _counts(episodes: int, caught: int = 6, delays: tuple[int, ...] = (3, 5), later_opening: tuple = (9,),
            broken_opening: tuple = (9,)) -> dict:
    return {"3 in a row open": _one(episodes, caught, delays), "4 in a row open": _one(*later_opening),
            "3 of 5 open": _one(*broken_opening)}


def test_runs_pool_into_one_rate_with_the_median_delay_over_every_event():
    result = pooled([_counts(2)["3 in a row open"], _counts(0, 5, (7,))["3 in a row open"], _counts(1, delays=(1, 2, 40))["3 in a row open"]])
    assert result["episodes"] == 3 and result["normal_minutes"] == pytest.approx(4.5) and result["per_hour"] == pytest.approx(40.0)
    assert (result["events_caught"], result["events"]) == (17, 18) and result["median_delay_frames"] == 4.0
    assert result["worst_run_per_hour"] == pytest.approx(80.0) and 0 < result["per_hour_low"] < 40 < result["per_hour_high"]


def test_each_run_is_measured_with_the_rate_chosen_on_the_others():
    def run(seed, one, half, largest):
        return {"seed": seed, "fold": 0, "candidates": {ONE: _counts(one), HALF: _counts(*half), LARGEST: _counts(largest)}}

    # 0.5 % has the fewest alarms everywhere but misses an event on run 1
    runs = [run(0, 2, (0,), 2), run(1, 1, (0, 5), 0), run(2, 3, (1,), 2)]
    result = inside_the_folds(runs, f"{ONE}, 3 in a row open")
    # run 0: runs 1 and 2 give 0.5 % 11 of 12 events, the largest 2 alarms against 4; run 1: runs 0 and 2
    # give 0.5 % 1 alarm, every event; run 2: runs 0 and 1 give 0.5 % 11 of 12, the largest 2 against 3
    assert [c["candidate"] for c in result["chosen"]] == [f"{LARGEST}, 3 in a row open", f"{HALF}, 3 in a row open", f"{LARGEST}, 3 in a row open"]
    assert result["chosen_inside_folds"]["episodes"] == 2 + 0 + 2 and result["deployed"]["episodes"] == 6


def test_the_later_opening_is_chosen_only_where_it_catches_as_many_events():
    def run(seed, today, later):
        return {"seed": seed, "fold": 0, "candidates": {rate: _counts(today, later_opening=later) for rate in RATES}}

    # opening one frame later halves the alarms on runs 0 and 2, but misses an event on run 1
    runs = [run(0, 2, (1,)), run(1, 2, (0, 5)), run(2, 2, (1,))]
    chosen = [c["candidate"] for c in inside_the_folds(runs, f"{ONE}, 3 in a row open")["chosen"]]
    # run 1 is measured with the choice of runs 0 and 2 (every event, fewer alarms); runs 0 and 2 with
    # that of a pair holding run 1, where the later opening misses an event
    assert chosen == [f"{ONE}, 3 in a row open", f"{ONE}, 4 in a row open", f"{ONE}, 3 in a row open"]


def test_the_deployed_candidate_is_the_video_recipes_rate_and_opening():
    assert deployed_candidate() == f"{ONE}, 4 in a row open" and deployed_candidate() in CHOSEN_AMONG


def test_a_file_that_is_not_an_avid_fold_is_refused_in_one_line(tmp_path, capsys):
    other = tmp_path / "alocc-fold.json"
    other.write_text(json.dumps({"method": "alocc", "held_out_clips": ["Train001"], "model": str(tmp_path)}))
    assert main([str(other), "--json", str(tmp_path / "out.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(other) in error and "AVID occ-bench ped2 --holdout-fold" in error
    assert not (tmp_path / "out.json").exists()
