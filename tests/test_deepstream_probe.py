"""The DeepStream folder (``occ export --deepstream``) and its probe, without DeepStream.

The probe is fed the batch metadata pyds exposes, built from plain Python objects shaped as the pyds
API describes it (GList nodes with ``data``/``next``; NvDsUserMeta with ``base_meta.meta_type`` and
``user_meta_data``; GstNvDsPreProcessBatchMeta with ``roi_vector``, each ROI with ``frame_meta`` and
``roi_user_meta_list``; NvDsInferTensorMeta whose layers carry ``layerName``, ``dataType``,
``inferDims`` and a host ``buffer``), holding the real outputs of the DeepStream graph on ONNX
Runtime. What needs DeepStream itself (nvinfer, nvdspreprocess, the engine nvinfer builds) is not
checked here: docs/jetson.md says so.
"""
import configparser
import importlib.util
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.export.deepstream import DeepStreamExportError, check_nvinfer_config, write_deepstream_config
from occ.runtime.detector import open_detector
from occ.runtime.events import EpisodeTracker
from occ.runtime.manifest import read_manifest, write_manifest
from occ.runtime.preprocess import preprocess_clip

runner = CliRunner()

# pyds names the probe uses; the enum values are nvdsmeta.h's and nvdsinfer.h's
PYDS = SimpleNamespace(
    NvDsUserMeta=SimpleNamespace(cast=lambda data: data),
    GstNvDsPreProcessBatchMeta=SimpleNamespace(cast=lambda data: data),
    NvDsInferTensorMeta=SimpleNamespace(cast=lambda data: data),
    NvDsMetaType=SimpleNamespace(NVDSINFER_TENSOR_OUTPUT_META=12, NVDS_PREPROCESS_BATCH_META=27),
    NvDsInferDataType=SimpleNamespace(FLOAT=0, HALF=1, INT8=2, INT32=3),
    get_nvds_LayerInfo=lambda tensor_meta, index: tensor_meta.output_layers_info[index],
    get_ptr=lambda buffer: buffer,
)
DATA_TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2, np.dtype(np.int32): 3}


def glist(items):
    """A pyds GList: nodes with ``data`` and ``next`` (None at the end)."""
    head = None
    for item in reversed(items):
        head = SimpleNamespace(data=item, next=head)
    return head


def user_meta(meta_type, data):
    return SimpleNamespace(base_meta=SimpleNamespace(meta_type=meta_type), user_meta_data=data)


def tensor_meta(outputs, keep):
    """NvDsInferTensorMeta of one ROI: one layer per output, batch dimension dropped (inferDims)."""
    layers = []
    for name, value in outputs.items():
        array = np.ascontiguousarray(value[0])
        keep.append(array)  # the host buffers must outlive the probe's reads
        layers.append(SimpleNamespace(layerName=name, dataType=DATA_TYPES[array.dtype], buffer=array.ctypes.data,
                                      inferDims=SimpleNamespace(numDims=array.ndim, d=list(array.shape))))
    return SimpleNamespace(num_output_layers=len(layers), output_layers_info=layers)


def preprocess_batch(rois, keep):
    """A batch as nvinfer leaves it with input-tensor-from-meta=1: each ROI's tensor meta on the ROI's
    user meta list of the NVDS_PREPROCESS_BATCH_META batch user meta (deepstream-preprocess-test)."""
    roi_vector = [SimpleNamespace(frame_meta=SimpleNamespace(source_id=source),
                                  roi_user_meta_list=glist([user_meta(12, tensor_meta(outputs, keep))])) for source, outputs in rois]
    return SimpleNamespace(batch_user_meta_list=glist([user_meta(27, SimpleNamespace(roi_vector=roi_vector))]),
                           frame_meta_list=glist([]))


def load_probe(path):
    spec = importlib.util.spec_from_file_location("occ_probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def folder(avid_onnx, tmp_path):
    return write_deepstream_config(avid_onnx, tmp_path / "ds", batch_size=4)


def properties(written):
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(written.config_path)
    return parser["property"]


def test_the_deepstream_model_folds_the_manifests_thresholds_and_casts_the_mask(avid_onnx, folder, tiny_walkway, tmp_path):
    """Items 2 and 9: nvinfer fills only the image input, and NvDsInferDataType has no bool."""
    manifest = read_manifest(avid_onnx)
    model = onnx.load(str(folder.model_path))
    assert [i.name for i in model.graph.input] == ["frames"]
    assert {o.name: o.type.tensor_type.elem_type for o in model.graph.output}["mask"] == onnx.TensorProto.FLOAT
    frames = preprocess_clip(tiny_walkway.test[0].frames, manifest.input)[:4]
    thresholds = {name: np.array([manifest.threshold(name)], np.float32) for name in ("alpha", "zeta")}
    reference = ort.InferenceSession(str(avid_onnx), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    want = dict(zip(names, reference.run(names, {"frames": frames, **thresholds})))
    got = dict(zip(names, ort.InferenceSession(str(folder.model_path), providers=["CPUExecutionProvider"]).run(names, {"frames": frames})))
    for name in names:
        np.testing.assert_array_equal(got[name], want[name].astype(got[name].dtype))
    text = folder.config_path.read_text()
    assert text.startswith("# written by occ export --deepstream") and "occ export MODEL.onnx --deepstream DIR again" in text
    assert f"alpha = {manifest.threshold('alpha'):.8g}" in text and "written again" in (folder.folder / "README.txt").read_text()
    # retuned thresholds: a new model file (so a new engine file), with the new α inside
    retuned = Path(shutil.copy(avid_onnx, tmp_path / "avid.onnx"))
    write_manifest(retuned, manifest.with_thresholds({"alpha": manifest.threshold("alpha") * 2}))
    again = write_deepstream_config(retuned, tmp_path / "ds2", batch_size=4)
    assert again.model_path.name != folder.model_path.name
    alpha = next(i for i in onnx.load(str(again.model_path)).graph.initializer if i.name == "alpha")
    assert onnx.numpy_helper.to_array(alpha)[0] == np.float32(manifest.threshold("alpha") * 2)


def test_the_configuration_is_fp32_and_names_the_engine_nvinfer_writes(avid_onnx, folder):
    """Items 6 and 12: FP16 put the residual, thresholds and comparisons in FP16; the engine file
    named was never written, so nvinfer rebuilt at every start."""
    props = properties(folder)
    assert props["network-mode"] == "0" and props["batch-size"] == "4" and props["onnx-file"] == folder.model_path.name
    assert props["model-engine-file"] == f"{folder.model_path.name}_b4_gpu0_fp32.engine"
    model = onnx.load(str(folder.model_path))
    text = folder.config_path.read_text()
    with pytest.raises(DeepStreamExportError, match="network FP32"):
        check_nvinfer_config(text.replace("network-mode = 0", "network-mode = 2"), read_manifest(avid_onnx), model, "c.txt")
    with pytest.raises(DeepStreamExportError, match="or it rebuilds at every start"):
        check_nvinfer_config(text.replace("_b4_gpu0_fp32", "_b1_gpu0_fp32"), read_manifest(avid_onnx), model, "c.txt")


def test_alocc_is_refused_for_deepstream_in_one_line(alocc_onnx, tmp_path):
    """Item 5: nvinfer infers one patch per ROI; decide() needs a frame's patches together."""
    with pytest.raises(DeepStreamExportError, match="--deepstream supports AVID only"):
        write_deepstream_config(alocc_onnx, tmp_path / "ds")
    result = runner.invoke(app, ["export", str(alocc_onnx), "--deepstream", str(tmp_path / "ds")])
    assert result.exit_code == 2 and "--deepstream supports AVID only" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ds").exists()


def test_the_probe_reads_the_preprocess_roi_meta_and_writes_the_runtimes_events(avid_onnx, folder, tiny_walkway, tmp_path, capsys):
    """Item 4: with input-tensor-from-meta=1 the tensor meta hangs off each preprocess ROI; the
    probe walked only the frames' user meta, found nothing and wrote nothing."""
    probe = load_probe(folder.probe_path)
    manifest = read_manifest(avid_onnx)
    session = ort.InferenceSession(str(folder.model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    clip = tiny_walkway.test[0]
    local = open_detector(str(avid_onnx)).process_clip(clip.frames)
    events = probe.OccEvents(str(folder.folder / f"{avid_onnx.stem}.manifest.json"), str(tmp_path / "events.jsonl"), 1, 1)
    keep = []
    for x, want in zip(preprocess_clip(clip.frames, manifest.input), local):
        outputs = dict(zip(names, session.run(names, {"frames": x[None]})))
        batch = preprocess_batch([(0, outputs), (1, outputs)], keep)  # two cameras showing the same frame
        assert events.on_batch(PYDS, batch) == 2
        assert events.result(outputs).decision == want.decision
    events.log.close()
    tracker, expected = EpisodeTracker(1, 1), 0
    for result in local:
        opened, closed, _ = tracker.update(result)
        expected += bool(opened) + bool(closed)
    lines = (tmp_path / "events.jsonl").read_text().splitlines() if (tmp_path / "events.jsonl").exists() else []
    assert expected and len(lines) == 2 * expected  # each camera's tracker saw the runtime's decisions
    assert sorted(events.indices.values()) == [len(local), len(local)]
    # tensor meta where the old probe looked (the frame's user meta) is not nvinfer's place with preprocess: one warning
    frame = SimpleNamespace(frame_user_meta_list=glist([user_meta(12, tensor_meta(outputs, keep))]))
    assert events.on_batch(PYDS, SimpleNamespace(batch_user_meta_list=None, frame_meta_list=glist([frame]))) == 0
    assert "no NvDsInferTensorMeta in the preprocess ROI meta" in capsys.readouterr().err


def test_the_probe_refuses_a_layer_type_outside_nvdsinferdatatype(folder):
    """Item 9: the type table raised KeyError for anything outside its four types."""
    probe = load_probe(folder.probe_path)
    array = np.zeros(3, np.float32)
    layer = SimpleNamespace(layerName="mask", dataType=7, buffer=array.ctypes.data, inferDims=SimpleNamespace(numDims=1, d=[3]))
    with pytest.raises(ValueError, match="layer mask has NvDsInferDataType 7, not one of FLOAT, HALF, INT8, INT32"):
        probe.layer_array(PYDS, layer)
    half = np.array([0.5, 2.0], np.float16)
    layer = SimpleNamespace(layerName="score", dataType=1, buffer=half.ctypes.data, inferDims=SimpleNamespace(numDims=1, d=[2]))
    np.testing.assert_array_equal(probe.layer_array(PYDS, layer), [[0.5, 2.0]])
