"""The episode-closing measurement's own arithmetic on hand-made numbers, the wait it changes (and only
that), and its one-line refusal of a file that is not a fold."""
import json

import numpy as np

from occ.benchmarks.episode_rules import DEPLOYED, RULES, inside_the_folds, main, pooled, rule_name
from occ.evaluation.protocols import ClipScores, alarm_counts
from occ.runtime.events import EpisodeTracker
from occ.runtime.manifest import EpisodeRule


def _counts(episodes: int, minutes: float, caught: int = 6) -> dict:
    return {"episodes": episodes, "normal_hours": minutes / 60, "events_caught": caught, "events": 6, "median_delay_frames": 5.0,
            "events_within_1s": caught - 1}


def test_folds_pool_into_one_rate_with_its_mean_and_worst_fold():
    result = pooled([_counts(2, 1.5), _counts(0, 1.5, 5), _counts(1, 3.0)])
    assert result["episodes"] == 3 and result["normal_minutes"] == 6.0 and result["per_hour"] == 30.0
    assert (result["events_caught"], result["events"], result["events_within_1s"]) == (17, 18, 14)
    assert result["worst_fold_per_hour"] == 80.0 and result["mean_fold_per_hour"] == (80 + 0 + 20) / 3
    assert 0 < result["per_hour_low"] < 30 < result["per_hour_high"]


def test_a_longer_wait_merges_a_pause_into_one_episode_and_opens_no_later():
    # normal footage: two bursts 8 quiet frames apart; then an event from frame 40
    labels = np.zeros(60, bool)
    labels[40:] = True
    decisions = np.zeros(60, bool)
    decisions[[5, 6, 7, 16, 17, 18, 40, 41, 42, 43]] = True
    clip = ClipScores("clip", labels, decisions.astype(float) * 2, decisions, fps=10.0)

    def counted(close_after):
        episodes = alarm_counts([clip], 10.0, EpisodeTracker(rule=EpisodeRule("k_of_n", 3, 3, close_after), camera="c"))["episodes"]
        return episodes["false_alarms_per_hour"]["false_alarms"], episodes["detection_delay"]["delays"]

    assert counted(5) == (2, [2])   # the pause of 8 quiet frames ends the first episode
    assert counted(10) == (1, [2])  # one incident; the event is flagged on the same frame


def test_a_file_that_is_not_a_fold_is_refused_in_one_line(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"method": "alocc"}))
    assert main([str(other), "--json", str(tmp_path / "out.json")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(other) in error and "holdout-fold" in error
    assert not (tmp_path / "out.json").exists()


def test_the_opening_is_chosen_on_the_other_folds_at_the_deployed_closing():
    deployed, later = rule_name(DEPLOYED), rule_name(type(DEPLOYED)("k_of_n", 3, 3, DEPLOYED.close_after))
    longer_wait = rule_name(type(DEPLOYED)("k_of_n", DEPLOYED.k, DEPLOYED.k, 30))

    def run(fold, counts):
        every = {name: _counts(9, 1.5) for name in RULES}
        return {"method": "alocc", "seed": 0, "fold": fold, "counts": {**every, **counts}}

    runs = [run(0, {deployed: _counts(2, 1.5), later: _counts(1, 1.5), longer_wait: _counts(0, 1.5)}),
            run(1, {deployed: _counts(2, 1.5), later: _counts(0, 1.5, 5), longer_wait: _counts(0, 1.5)}),
            run(2, {deployed: _counts(1, 1.5), later: _counts(0, 1.5), longer_wait: _counts(0, 1.5)})]
    result = inside_the_folds(runs)["alocc"]
    # fold 0: folds 1 and 2 give 'later' no alarm but 11 of 12 events: the deployed rule; fold 1: folds 0
    # and 2 give 'later' 1 alarm against 3, every event: 'later'; fold 2: folds 0 and 1 give it 11 of
    # 12 events: deployed. The longer wait, with no alarms anywhere, is never a candidate.
    assert [c["rule"] for c in result["chosen"]] == [deployed, later, deployed]
    assert result["chosen_inside_folds"]["episodes"] == 2 + 0 + 1 and result["deployed"]["episodes"] == 5


def test_the_choice_pools_every_seed_of_a_method():
    deployed, later = rule_name(DEPLOYED), rule_name(type(DEPLOYED)("k_of_n", 3, 3, DEPLOYED.close_after))

    def run(seed, counts):
        every = {name: _counts(9, 1.5) for name in RULES}
        return {"method": "alocc", "seed": seed, "fold": 0, "counts": {**every, **counts}}

    # one fold per seed: each run is measured with the choice made on the other seeds' runs
    runs = [run(seed, {deployed: _counts(2, 1.5), later: _counts(1, 1.5)}) for seed in (0, 1, 2)]
    result = inside_the_folds(runs)["alocc"]
    assert [(c["seed"], c["rule"]) for c in result["chosen"]] == [(0, later), (1, later), (2, later)]
    assert result["chosen_inside_folds"]["episodes"] == 3 and result["deployed"]["episodes"] == 6
