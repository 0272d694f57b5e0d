import json

import pytest

from occ.runtime.manifest import (
    InputSpec,
    Manifest,
    ManifestError,
    PatchSpec,
    RegionSpec,
    Threshold,
    load_manifest_file,
    manifest_from_metadata,
    METADATA_KEY,
)


def alocc_manifest() -> Manifest:
    return Manifest(
        method="alocc",
        input=InputSpec(height=60, width=90, channels=2, temporal="frame_diff"),
        patches=PatchSpec(size=20, stride=10),
        thresholds={"tau": Threshold(value=1.5, data="walkway", target_false_alarm_rate=0.01, n_samples=100)},
    ).validate()


def test_round_trip_keeps_every_field(tmp_path):
    manifest = alocc_manifest()
    manifest.training = {"epochs": 3}
    path = manifest.write(tmp_path / "m.json")
    loaded = load_manifest_file(path)
    assert loaded == manifest
    assert loaded.threshold("tau") == 1.5


def test_avid_manifest_needs_regions_that_tile_the_input():
    spec = InputSpec(height=64, width=96, channels=3, temporal="avid_triplet")
    Manifest(method="avid", input=spec, regions=RegionSpec(cell=16, rows=4, cols=6)).validate()
    with pytest.raises(ManifestError, match="do not tile"):
        Manifest(method="avid", input=spec, regions=RegionSpec(cell=16, rows=4, cols=5)).validate()
    with pytest.raises(ManifestError, match="needs 'regions'"):
        Manifest(method="avid", input=spec).validate()


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
    ],
)
def test_invalid_manifests_are_rejected_with_one_line(mutate, message):
    data = alocc_manifest().to_dict()
    mutate(data)
    with pytest.raises(ManifestError, match=message) as info:
        Manifest.from_dict(data, source="model.onnx")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("model.onnx:")


def test_older_minor_schema_is_accepted():
    data = alocc_manifest().to_dict()
    data["schema_version"] = "1.0"
    assert Manifest.from_dict(data).method == "alocc"


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


def test_atomic_write_leaves_no_temp_files(tmp_path):
    alocc_manifest().write(tmp_path / "m.json")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    json.loads((tmp_path / "m.json").read_text())
