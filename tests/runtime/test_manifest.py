import json
import os

import pytest

from occ.runtime.manifest import (
    METADATA_KEY,
    AloccScoring,
    AvidScoring,
    InputSpec,
    LocationStats,
    Manifest,
    ManifestError,
    PatchSpec,
    RegionSpec,
    Threshold,
    engine_sidecar,
    load_manifest_file,
    manifest_from_metadata,
    read_manifest,
)


def alocc_manifest() -> Manifest:
    return Manifest(
        method="alocc",
        input=InputSpec(height=60, width=90, channels=2, temporal="frame_diff"),
        patches=PatchSpec(size=20, stride=10),
        scoring=AloccScoring(terms={"score": 0.25, "reconstruction_error": 1.0},
                             location_stats={"score": LocationStats(mean=[0.0] * 40, std=[1.0] * 40)}),
        thresholds={"tau": Threshold(value=1.5, data="walkway", target_false_alarm_rate=0.01, n_samples=100)},
    ).validate()


def avid_manifest() -> Manifest:
    return Manifest(method="avid", input=InputSpec(height=64, width=96, channels=3, temporal="avid_triplet"),
                    regions=RegionSpec(cell=8, rows=8, cols=12), scoring=AvidScoring(mask_reach=8, residual_kernel=9),
                    thresholds={"alpha": Threshold(value=0.2), "zeta": Threshold(value=0.7)}).validate()


def test_round_trip_keeps_every_field(tmp_path):
    manifest = alocc_manifest()
    manifest.training = {"epochs": 3}
    path = manifest.write(tmp_path / "m.json")
    loaded = load_manifest_file(path)
    assert loaded == manifest
    assert loaded.threshold("tau") == 1.5


def test_avid_manifest_needs_regions_that_tile_the_input():
    spec = InputSpec(height=64, width=96, channels=3, temporal="avid_triplet")
    Manifest(method="avid", input=spec, regions=RegionSpec(cell=16, rows=4, cols=6), scoring=AvidScoring()).validate()
    with pytest.raises(ManifestError, match="do not tile"):
        Manifest(method="avid", input=spec, regions=RegionSpec(cell=16, rows=4, cols=5), scoring=AvidScoring()).validate()
    with pytest.raises(ManifestError, match="needs 'regions'"):
        Manifest(method="avid", input=spec, scoring=AvidScoring()).validate()
    with pytest.raises(ManifestError, match="needs an AvidScoring 'scoring'"):
        Manifest(method="avid", input=spec, regions=RegionSpec(cell=16, rows=4, cols=6)).validate()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(schema_version="2.0"), "newer than this occ"),
        (lambda d: d.pop("schema_version"), "schema_version missing"),
        (lambda d: d.update(method="gan"), "method is 'gan'"),
        (lambda d: d["input"].update(channels=3), "temporal rule 'frame_diff' makes 2"),
        (lambda d: d["input"].pop("height"), "missing field"),
        (lambda d: d["input"].update(colour="bgr"), "unknown field"),
        (lambda d: d["patches"].update(size=500), "larger than the region"),
        (lambda d: d["thresholds"].update(alpha={"value": 1.0}), "threshold name"),
        (lambda d: d.update(patches=None), "needs 'patches'"),
        (lambda d: d["input"].update(height="60"), r"'input.height' must be a whole number, got str '60'"),
        (lambda d: d["input"].update(norm_std=True), r"'input.norm_std' must be a number, got bool"),
        (lambda d: d["thresholds"]["tau"].update(value="high"), r"'thresholds.tau.value' must be a number"),
        (lambda d: d["thresholds"]["tau"].update(value=float("nan")), "threshold 'tau' is not a finite number"),
        (lambda d: d["scoring"].update(terms={}), "scoring.terms is empty"),
        (lambda d: d["scoring"]["terms"].update(score="0.25"), r"'scoring.terms.score' must be a number"),
        (lambda d: d["scoring"]["location_stats"]["score"].update(mean=[0.0] * 7), "has 7 means and 40 deviations for 40 patch"),
        (lambda d: d["scoring"]["location_stats"].update(d_of_x={"mean": [0.0] * 40, "std": [1.0] * 40}), "belongs to no term"),
        (lambda d: d["scoring"].update(gate="binary"), r"unknown field\(s\) in 'scoring': gate"),
        (lambda d: d.update(thresholds=[1.5]), "'thresholds' must be an object, got list"),
    ],
)
def test_invalid_manifests_are_rejected_with_one_line(mutate, message):
    data = alocc_manifest().to_dict()
    mutate(data)
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.from_dict(data, source="model.onnx")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("model.onnx:")


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["scoring"].update(gate="fuzzy"), "scoring.gate is 'fuzzy'; allowed: binary, soft"),
    (lambda d: d["scoring"].update(residual_weight=0.2), "residual_weight must be in \\(0, 1\\) for the soft gate and absent"),
    (lambda d: d["scoring"].update(frame_score="evidence"), "evidence_floor must be in \\[0, 1\\) for the evidence score"),
    (lambda d: d["scoring"].update(residual_kernel=4), "residual_kernel must be a positive odd number"),
    (lambda d: d["thresholds"]["zeta"].update(value=1.5), "threshold 'zeta' must lie in \\(0, 1\\)"),
    (lambda d: d["thresholds"].update(tau={"value": 1.0}), "threshold name for avid is 'tau'"),
])
def test_invalid_avid_scoring_is_rejected_with_one_line(mutate, message):
    data = avid_manifest().to_dict()
    mutate(data)
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.from_dict(data, source="avid.onnx")
    assert "\n" not in str(info.value) and str(info.value).startswith("avid.onnx: invalid manifest:")


def test_schema_1_0_manifests_are_refused_with_one_line():
    """Schema 1.0 (occ before 0.2) described scoring in words; it is no longer read."""
    legacy = alocc_manifest().to_dict()
    legacy.update(schema_version="1.0")
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(legacy, source="old.onnx")
    assert str(info.value) == "old.onnx: invalid manifest: schema 1.0 (occ before 0.2) is no longer read; export the model again with this occ"


def test_read_manifest_from_every_artifact(tmp_path):
    manifest = avid_manifest()
    assert read_manifest(manifest.write(tmp_path / "m.json")) == manifest
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    engine_sidecar(engine).write_text(json.dumps({"manifest": manifest.to_dict(), "tensorrt_version": "10.3.0"}))
    assert read_manifest(engine) == manifest
    (tmp_path / "lonely.engine").write_bytes(b"plan")
    with pytest.raises(ManifestError, match="lonely.engine.json: the engine's manifest sidecar is missing"):
        read_manifest(tmp_path / "lonely.engine")
    triton = tmp_path / "repo" / "m"
    triton.mkdir(parents=True)
    escaped = json.dumps(manifest.to_dict()).replace("\\", "\\\\").replace('"', '\\"')
    (triton / "config.pbtxt").write_text(f'name: "m"\nparameters [\n  {{ key: "occ.manifest" value: {{ string_value: "{escaped}" }} }}\n]\n')
    assert read_manifest(triton) == manifest and read_manifest(triton / "config.pbtxt") == manifest
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ManifestError, match="notes.txt: not an occ model"):
        read_manifest(tmp_path / "notes.txt")
    with pytest.raises(ManifestError, match="model file not found"):
        read_manifest(tmp_path / "none.onnx")


def test_missing_and_broken_metadata():
    with pytest.raises(ManifestError, match="no occ manifest"):
        manifest_from_metadata({}, "x.onnx")
    with pytest.raises(ManifestError, match="not valid JSON"):
        manifest_from_metadata({METADATA_KEY: "{"}, "x.onnx")
    ok = manifest_from_metadata({METADATA_KEY: alocc_manifest().to_json()}, "x.onnx")
    assert ok.patches.size == 20


def test_missing_file(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        load_manifest_file(tmp_path / "nope.json")


def test_set_threshold_keeps_history():
    manifest = alocc_manifest()
    manifest.set_threshold("tau", Threshold(value=2.0, data="site camera"))
    assert manifest.threshold("tau") == 2.0
    assert manifest.threshold_history[0]["value"] == 1.5
    again = Manifest.from_json(manifest.to_json())
    assert again.threshold_history == manifest.threshold_history


def test_atomic_write_leaves_no_temp_files_and_takes_the_mode_from_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        alocc_manifest().write(tmp_path / "m.json")
        assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600
        os.umask(0o077)
        alocc_manifest().write(tmp_path / "private.json")
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "private.json"]
    json.loads((tmp_path / "m.json").read_text())
