"""occ calibrate: alarm budgets (thresholds and episode rule together), the training-footage guard,
--dry-run and --out, and a re-export that keeps a calibration."""
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.calibration import FootageStatistics, alarms_at, budget_warning, solve_alarm_budget
from occ.evaluation.datasets import WalkwayConfig, generate_walkway
from occ.runtime.events import EpisodeCount, EpisodeTracker, count_episodes
from occ.runtime.fingerprint import Fingerprint, frame_hash
from occ.runtime.manifest import EpisodeRule, ManifestError, read_manifest
from occ.runtime.scoring import FrameResult

from test_manifest import alocc_manifest

runner = CliRunner()
WIDE = {"COLUMNS": "250"}
# The conftest walkway (the tiny models' training footage) as a data spec, and other minutes of it.
TRAINING_SPEC = "walkway:height=48,width=72,train_clips=2,test_clips=3,frames_per_clip=30,seed=7"
OTHER_SPEC = "walkway:height=48,width=72,train_clips=2,test_clips=1,frames_per_clip=40,seed=11"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=WIDE)


def k_of_n(k, n, close_after):
    return EpisodeRule("k_of_n", k, n, close_after)


def cusum(reference, decision, close_after):
    return EpisodeRule("cusum", None, None, close_after, reference, decision)


# ---- the episode rule, counted by hand ---------------------------------------------------------------------
DECISIONS = [1, 0, 1, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1]


@pytest.mark.parametrize("rule, expected", [
    # 2 of 3: opens at frames 2 and 7; each closes after 2 non-firing frames (4, 9); 10 and 13 stand alone
    (k_of_n(2, 3, 2), 2),
    # every firing frame opens unless one is open: 0 (closes at 4), 6 (closes at 9), 10 (closes at 12), 13
    (k_of_n(1, 1, 2), 4),
    # never 3 in a row
    (k_of_n(3, 3, 2), 0),
])
def test_k_of_n_episodes_counted_by_hand(rule, expected):
    assert count_episodes(DECISIONS, DECISIONS, rule).opened == expected


def test_cusum_episodes_counted_by_hand():
    # τ = 2: score/τ = .5 1.5 1.5 .5 0 0 2.5 0 0 0. With reference 1 and decision 1, S = 0 .5 1 .5 0 0 1.5 .5 0 0:
    # the two frames at 1.5 τ reach S = 1, not above it; the frame at 2.5 τ opens (S = 1.5), S ≤ 1 twice closes.
    scores = np.array([1, 3, 3, 1, 0, 0, 5, 0, 0, 0], float)
    decisions = scores > 2
    assert count_episodes(scores, decisions, cusum(1.0, 1.0, 2), threshold=2.0).opened == 1
    # k of n on the same frames: 2 in a row opens at frame 2 only; 1 of 1 opens at 1 and at 6
    assert count_episodes(scores, decisions, k_of_n(2, 2, 2)).opened == 1
    assert count_episodes(scores, decisions, k_of_n(1, 1, 2)).opened == 2
    # a new clip at frame 2 breaks the pair: nothing opens
    assert count_episodes(scores, decisions, k_of_n(2, 2, 2), clip_starts=[0, 2]).opened == 0
    # reference 0.5: the frames at 1.5 τ add 1 each: S = 0 1 2 (capped at decision + 1) opens at frame 2, then
    # 2 1.5 1 (quiet once) 2 1.5 1 .5: the spike at frame 6 keeps the same episode open, quiet at 8 and 9 closes it
    assert count_episodes(scores, decisions, cusum(0.5, 1.0, 2), threshold=2.0).opened == 1


def test_the_tracker_runs_the_same_rule_and_starts_the_episode_at_its_evidence():
    scores = [1, 3, 3, 1, 0, 0, 5, 0, 0, 0]
    results = [FrameResult(index=i, score=float(s), decision=s > 2, location_scores=np.zeros((1, 1)), timestamp=i / 10)
               for i, s in enumerate(scores)]
    tracker = EpisodeTracker(camera="gate", rule=cusum(0.5, 1.0, 2), threshold=2.0)
    events = [event for r in results for event in [tracker.update(r)[1]] if event]
    # S rose from 0 at frame 1 (the episode's start), opened at frame 2, held through the spike at 6 (see above)
    assert [(e.start_frame, e.end_frame, e.frames, e.peak_frame) for e in events] == [(1, 6, 3, 6)]
    late = EpisodeTracker(camera="gate", rule=cusum(1.0, 1.0, 2), threshold=2.0)
    assert [(e.start_frame, e.end_frame) for r in results for e in [late.update(r)[1]] if e] == [(6, 6)]
    # the service configuration's open_after overrides the model's rule
    assert EpisodeTracker(open_after=2, rule=cusum(0.5, 1.0, 2)).rule == k_of_n(2, 2, 2)
    with pytest.raises(ValueError, match="positive threshold"):
        EpisodeTracker(rule=cusum(1.0, 1.0, 2), threshold=-1.0)


def test_episode_rule_is_validated_in_one_line():
    manifest = alocc_manifest().to_dict()
    manifest["episodes"] = {"kind": "cusum", "k": 3, "n": 3, "close_after": 5, "reference": 1.0, "decision": 1.0}
    with pytest.raises(ManifestError, match="belong to the k_of_n rule") as info:
        type(alocc_manifest()).from_dict(manifest, "m.onnx")
    assert "\n" not in str(info.value)
    manifest["episodes"] = {"kind": "k_of_n", "k": 4, "n": 3}
    with pytest.raises(ManifestError, match=r"episodes.k \(4\) must be <= episodes.n \(3\)"):
        type(alocc_manifest()).from_dict(manifest, "m.onnx")


# ---- an alarm budget on a hand-made score sequence --------------------------------------------------------
def _hour_of_scores() -> FootageStatistics:
    """One hour at 10 fps of frame scores 0.2, with ten one-frame spikes at 5.0 … 5.9 and three
    four-frame bursts at 3.0, 3.1 and 3.2, far apart (episodes never merge)."""
    scores = np.full(36000, 0.2)
    for i in range(10):
        scores[1000 + 2000 * i] = 5.0 + 0.1 * i
    for i, level in enumerate((3.0, 3.1, 3.2)):
        scores[25000 + 3000 * i:25004 + 3000 * i] = level
    return FootageStatistics("alocc", {"frame_scores": scores}, [0])


def test_alarm_budget_picks_the_rule_with_the_lowest_threshold():
    """24 alarms a day over one hour: at most 1 alarm. By hand, with rules that open within 2 frames
    (0.2 s at 10 fps), thresholds being quantiles of the 36 000 scores:

    - 1 of 1: every spike opens; only the highest may: τ in [5.8, 5.9);
    - 2 in a row (and 2 of 3): spikes never open, each burst does: τ in [3.1, 3.2) leaves one;
    - CUSUM, reference 1, decision 1, at τ = 3.0 (the lowest burst, which then does not fire): the
      bursts add 4 · (3.2/3 − 1) = 0.27 at most and a spike 5.9/3 − 1 = 0.97, never above 1: no
      alarm. The next quantile down is the baseline, 0.2, where normal frames sit at the reference: the
      first spike (frame 1000) opens an episode that never closes, 35 000 frames open, which the
      bound on open frames refuses. So τ = 3.0, below every k-of-n rule's: the CUSUM is chosen (the
      first of the CUSUMs that tie there).
    """
    manifest = alocc_manifest()
    statistics = _hour_of_scores()
    thresholds, chosen, outcomes, why = solve_alarm_budget(manifest, statistics, 24.0, 10.0, "hand-made", max_opening_seconds=0.2)
    by_rule = {(o.rule.kind, o.rule.k, o.rule.n, o.rule.reference, o.rule.decision): o for o in outcomes}
    assert len(outcomes) == 3 + 6  # (1, 1), (2, 2), (2, 3), and the CUSUMs that open within 2 frames
    one = by_rule[("k_of_n", 1, 1, None, None)]
    assert 5.8 <= one.thresholds["tau"] < 5.9 and one.alarms == 1
    for k, n in ((2, 2), (2, 3)):
        assert 3.1 <= by_rule[("k_of_n", k, n, None, None)].thresholds["tau"] < 3.2
        assert by_rule[("k_of_n", k, n, None, None)].alarms == 1
    assert chosen.rule == cusum(1.0, 1.0, manifest.episodes.close_after)
    tau = thresholds["tau"].value
    assert tau == pytest.approx(3.0) and chosen.alarms == 0
    assert alarms_at(manifest, statistics, {"tau": tau}, chosen.rule).opened == 0
    assert alarms_at(manifest, statistics, {"tau": 0.2}, chosen.rule) == EpisodeCount(opened=1, open_frames=35000)
    assert "cusum" in why and "lowest threshold" in why and "k_of_n" in why
    assert thresholds["tau"].target_false_alarm_rate == pytest.approx(chosen.frame_rate)


def test_short_footage_warns_with_the_length_the_budget_needs():
    assert budget_warning(24.0, 36000, 10.0) is None  # an hour shows one alarm at 24 a day
    warning = budget_warning(24.0, 600, 10.0)  # one minute
    assert warning.startswith("1.0 minutes of footage cannot show a rate of 24 alarms a day: one alarm at that rate takes 60 minutes")
    assert "3.7 hours" in warning  # −ln(0.025) / (1 per hour)
    assert "takes 24.0 hours" in budget_warning(1.0, 36000, 10.0)


# ---- the footage fingerprint ------------------------------------------------------------------------------
def test_fingerprint_recognizes_the_same_frames_and_only_them(tiny_walkway):
    frames = [frame for clip in tiny_walkway.train for frame in clip.frames]
    fingerprint = Fingerprint.from_dict(Fingerprint.of(frames).to_dict())
    assert fingerprint.frames == len(frames)
    same = fingerprint.overlap(frame_hash(f) for f in tiny_walkway.train[1].frames)
    assert (same.checked, same.training, same.is_training_footage) == (len(tiny_walkway.train[1]), len(tiny_walkway.train[1]), True)
    other = generate_walkway(WalkwayConfig(height=48, width=72, train_clips=1, test_clips=1, frames_per_clip=30, seed=8)).train[0]
    assert fingerprint.overlap(frame_hash(f) for f in other.frames).share == 0.0
    # a BGR copy of a grey frame has the same luma, so the same hash
    grey = tiny_walkway.train[0].frames[0]
    assert frame_hash(np.dstack([grey] * 3)) == frame_hash(grey)


def test_a_sketch_checks_exactly_the_frames_below_its_largest_hash():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3000, 16, 16), dtype=np.uint8)
    fingerprint = Fingerprint.of(frames)
    kept = fingerprint.hashes()
    assert len(kept) == 2048 and fingerprint.distinct == 3000 and np.all(np.diff(kept.astype(np.float64)) > 0)
    overlap = fingerprint.overlap(frame_hash(f) for f in frames[:1000])
    # the frames whose hash is at most the largest kept: all in the sketch
    assert overlap.checked == overlap.training and 500 < overlap.checked < 1000
    unseen = fingerprint.overlap(frame_hash(f) for f in rng.integers(0, 256, (300, 16, 16), dtype=np.uint8))
    assert unseen.training == 0 and unseen.checked > 100


# ---- occ calibrate on the tiny walkway models ----------------------------------------------------------
@pytest.fixture
def alocc_copy(alocc_onnx, tmp_path):
    model = tmp_path / "alocc.onnx"
    shutil.copy(alocc_onnx, model)
    return model


@pytest.mark.parametrize("method", ["alocc", "avid"])
def test_calibrate_to_an_alarm_budget(method, alocc_onnx, avid_onnx, tmp_path):
    model = tmp_path / f"{method}.onnx"
    shutil.copy(alocc_onnx if method == "alocc" else avid_onnx, model)
    before = read_manifest(model)
    result = invoke("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "2000", "--json", tmp_path / "c.json")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "c.json").read_text())
    manifest = read_manifest(model)
    names = list(before.thresholds)
    assert report["frames"] == 80 and report["fps"] == 10.0 and report["written"] == str(model)
    assert report["old"]["thresholds"] == {n: before.threshold(n) for n in names}
    assert report["new"]["thresholds"] == {n: manifest.threshold(n) for n in names}
    assert report["new"]["episode_rule"] == json.loads(json.dumps(manifest.episodes.__dict__))
    assert report["choice"] and len(report["rules"]) >= 2 and {r["rule"]["kind"] for r in report["rules"]} == {"k_of_n", "cusum"}
    # 80 frames at 10 fps: 8 s; 2000 a day is 0.19 in 8 s, so no alarm is allowed, and the footage is too short to show it
    expected = report["new"]["expected_alarms"]
    assert expected["alarms"] == 0 and expected["hours"] == pytest.approx(80 / 10 / 3600)
    assert expected["per_hour_high"] == pytest.approx(3.689 / expected["hours"], rel=1e-3)
    assert any("cannot show a rate of 2000 alarms a day" in w for w in report["warnings"])
    for name in names:
        threshold = manifest.thresholds[name]
        assert threshold.by and "@" in threshold.by and threshold.fps == 10.0 and threshold.minutes == pytest.approx(80 / 600)
        assert threshold.alarms_per_day_budget == 2000 and threshold.expected_alarms.alarms == 0
        assert threshold.episodes == manifest.episodes and threshold.data.startswith(OTHER_SPEC)
    assert [h["name"] for h in manifest.threshold_history] == names
    assert all(h["value"] == before.threshold(h["name"]) for h in manifest.threshold_history)
    assert "old" in result.output and "new" in result.output and "alarms / h on this footage" in result.output
    shown = invoke("inspect", model)
    assert shown.exit_code == 0 and "episode rule" in shown.output and manifest.episodes.describe()[:30] in shown.output
    assert "alarms / h" in shown.output and "0 (0-1.66e+03; 0 in 0.1 min; budget" in shown.output
    info = json.loads(invoke("inspect", model, "--json", "-").output)
    assert info["thresholds"][names[0]]["expected_alarms"]["alarms"] == 0 and info["episodes"]["kind"] == manifest.episodes.kind


def test_calibrate_refuses_the_training_footage(alocc_copy, tmp_path):
    before = alocc_copy.read_bytes()
    refused = invoke("calibrate", alocc_copy, "--data", TRAINING_SPEC)
    assert refused.exit_code == 2
    line = refused.output.strip()
    assert "\n" not in line and "60 of 60 checked frames are frames the model was trained on" in line and "--force" in line
    assert alocc_copy.read_bytes() == before
    forced = invoke("calibrate", alocc_copy, "--data", TRAINING_SPEC, "--force", "--quiet")
    assert forced.exit_code == 0 and "calibrated anyway: --force" in forced.output
    assert read_manifest(alocc_copy).thresholds["tau"].n_samples == 60


def test_dry_run_writes_nothing_and_out_writes_a_new_model(alocc_copy, tmp_path):
    before = alocc_copy.read_bytes()
    files = sorted(tmp_path.iterdir())
    dry = invoke("calibrate", alocc_copy, "--data", OTHER_SPEC, "--false-alarm-rate", "0.1", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "not written (--dry-run)" in dry.output and "old" in dry.output and "new" in dry.output
    assert alocc_copy.read_bytes() == before and sorted(tmp_path.iterdir()) == files
    out = tmp_path / "site.onnx"
    written = invoke("calibrate", alocc_copy, "--data", OTHER_SPEC, "--false-alarm-rate", "0.1", "--out", out, "--quiet")
    assert written.exit_code == 0, written.output
    assert alocc_copy.read_bytes() == before
    new = read_manifest(out)
    assert new.thresholds["tau"].target_false_alarm_rate == 0.1 and new.threshold("tau") != read_manifest(alocc_copy).threshold("tau")
    assert new.episodes == read_manifest(alocc_copy).episodes  # a frame rate keeps the episode rule
    assert new.thresholds["tau"].expected_alarms is not None and new.thresholds["tau"].alarms_per_day_budget is None


@pytest.mark.parametrize("extra, message", [
    (["--out", "{tmp}/site.onnx"], "{tmp}/site.onnx: already exists; --out writes a new model"),
    (["--out", "{tmp}/site.engine"], "--out must be a .onnx file like the model"),
    (["--out", "{model}"], "is the model itself"),
    (["--alarms-per-day", "24", "--false-alarm-rate", "0.01"], "give --alarms-per-day or --false-alarm-rate, not both"),
    (["--alarms-per-day", "0"], "--alarms-per-day must be > 0"),
])
def test_calibrate_errors_are_one_line(alocc_copy, tmp_path, extra, message):
    (tmp_path / "site.onnx").write_bytes(b"a user's file")
    before = alocc_copy.read_bytes()
    args = [a.format(tmp=tmp_path, model=alocc_copy) for a in extra]
    result = invoke("calibrate", alocc_copy, "--data", OTHER_SPEC, *args)
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.output and len(result.output.strip().splitlines()) == 1
    assert alocc_copy.read_bytes() == before and (tmp_path / "site.onnx").read_bytes() == b"a user's file"


# ---- a re-export keeps the calibration ---------------------------------------------------------------------
def test_reexport_keeps_a_calibration_and_refuses_to_drop_another_checkpoints(avid_checkpoint, alocc_checkpoint, tmp_path):
    model = tmp_path / "avid.onnx"
    assert invoke("export", avid_checkpoint, "--out", model, "--quiet").exit_code == 0
    assert invoke("calibrate", model, "--data", OTHER_SPEC, "--alarms-per-day", "5000", "--quiet").exit_code == 0
    calibrated = read_manifest(model)
    again = invoke("export", avid_checkpoint, "--out", model, "--quiet")
    assert again.exit_code == 0, again.output
    kept = read_manifest(model)
    assert kept.thresholds == calibrated.thresholds and kept.threshold_history == calibrated.threshold_history
    assert kept.episodes == calibrated.episodes
    assert not (tmp_path / "avid.onnx.json").exists()
    other = invoke("export", alocc_checkpoint, "--out", model)
    assert other.exit_code == 2 and "holds a calibration of another checkpoint" in other.output
    assert len(other.output.strip().splitlines()) == 1 and read_manifest(model).thresholds == calibrated.thresholds
    forced = invoke("export", alocc_checkpoint, "--out", model, "--force", "--quiet")
    assert forced.exit_code == 0 and read_manifest(model).method == "alocc" and read_manifest(model).threshold_history == []


# ---- a freshly trained model names its data, never a path -----------------------------------------------
def test_a_trained_model_records_no_path_and_refuses_its_own_folder(tmp_path):
    from occ.evaluation.datasets.walkway import write_walkway
    from occ.export.onnx_export import export_onnx
    from occ.train.workflow import train_alocc_from

    data = tmp_path / "site" / "walkway"
    write_walkway(data, WalkwayConfig(height=48, width=72, train_clips=2, test_clips=1, frames_per_clip=20, seed=3))
    checkpoint = tmp_path / "alocc.pt"
    train_alocc_from(str(data.resolve()), checkpoint, height=48, width=72, patch_size=16, stride=16, base_width=8, depth=2,
                     epochs=1, batch_size=32)
    model = export_onnx(checkpoint).path
    text = read_manifest(model).to_json()
    assert str(tmp_path) not in text and "/site/" not in text
    training = read_manifest(model).training
    assert training["data"] == "walkway" and training["dataset"]["spec"] == "walkway" and training["footage"]["frames"] == 40
    refused = invoke("calibrate", model, "--data", data)
    assert refused.exit_code == 2 and "40 of 40 checked frames are frames the model was trained on (walkway)" in refused.output


# ---- the service follows the model's episode rule ---------------------------------------------------------
def test_occ_run_follows_the_manifests_episode_rule_and_open_after_overrides_it(alocc_copy, tiny_walkway, tmp_path):
    from occ.evaluation.datasets.video import write_video
    from occ.runtime.manifest import Threshold, write_manifest

    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[0].frames)
    manifest = read_manifest(alocc_copy)
    manifest.set_threshold("tau", Threshold(value=-1e6, method="given"))
    # every frame fires, and the model's rule needs 40 in a row: the 30-frame clip never opens an episode
    manifest.episodes = k_of_n(40, 40, 5)
    write_manifest(alocc_copy, manifest)

    def events(*extra):
        log = tmp_path / f"events{len(extra)}.jsonl"
        result = invoke("run", alocc_copy, "--source", video, "--events", log, *extra)
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    assert events() == []
    overridden = events("--open-after", "3")
    assert overridden and overridden[0]["start_frame"] == 0
