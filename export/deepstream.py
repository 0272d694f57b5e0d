"""A DeepStream ``nvinfer`` configuration for an exported occ model, and a probe that turns its
output tensors into occ events.

    DIR/config_infer_<name>.txt   nvinfer [property] group: the ONNX/engine, FP16, batch size,
                                  input dims from the manifest, output tensor meta on
    DIR/<name>.onnx               the exported model (nvinfer builds <name>.engine from it)
    DIR/<name>.manifest.json      the manifest (the probe reads thresholds and geometry here)
    DIR/occ_probe.py              a pad probe: NvDsInferTensorMeta → mask / O map → occ events

nvinfer's own preprocessing scales and offsets single frames; occ's temporal rules (AVID's
⟨I'_{t−4}, I'_{t−2}, I'_t⟩, ALOCC's frame difference and patch grid) are not expressible there,
so the configuration takes its input from tensor meta (``input-tensor-from-meta=1``), which an
``nvdspreprocess`` element with a custom tensor-preparation library must fill, implementing
``runtime/preprocess/reference.py`` (its CUDA form is ``runtime/preprocess/kernels/preprocess_frames.cu``).
That library is not part of occ. Nothing here has run under DeepStream (it was not available where
occ was developed); the files are checked for consistency with the manifest and graph, and the
probe's ``OccEvents`` on real graph outputs.
"""
from __future__ import annotations

import configparser
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import onnx

from occ.runtime.manifest import Manifest, manifest_from_metadata


class DeepStreamExportError(RuntimeError):
    """The configuration cannot be written or does not check out; one line says why."""


@dataclass
class DeepStreamConfig:
    folder: Path
    config_path: Path
    probe_path: Path


def nvinfer_properties(name: str, manifest: Manifest, batch_size: int, gpu_id: int) -> dict[str, str]:
    spec = manifest.input
    if manifest.method == "alocc":
        size = manifest.patches.size
        dims = f"{spec.channels};{size};{size}"  # one tensor per patch: the batch is patches
    else:
        dims = f"{spec.channels};{spec.height};{spec.width}"
    return {
        "gpu-id": str(gpu_id),
        "onnx-file": f"{name}.onnx",
        "model-engine-file": f"{name}.engine",
        "network-mode": "2",  # FP16
        "batch-size": str(batch_size),
        "infer-dims": dims,
        "network-type": "100",  # "other": no built-in post-processing; tensors go to the probe
        "output-tensor-meta": "1",
        "input-tensor-from-meta": "1",  # filled by nvdspreprocess with occ's temporal rule (see module doc)
        "gie-unique-id": "1",
        "process-mode": "1",
        "output-blob-names": ";".join(manifest.export.get("outputs", [])),
    }


def write_deepstream_config(onnx_path: str | Path, folder: str | Path, batch_size: int = 1, gpu_id: int = 0) -> DeepStreamConfig:
    """Write the nvinfer configuration, the model, its manifest and the probe into ``folder``."""
    onnx_path = Path(onnx_path)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise DeepStreamExportError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__})") from None
    manifest = manifest_from_metadata({p.key: p.value for p in model.metadata_props}, str(onnx_path))
    if batch_size < 1:
        raise DeepStreamExportError(f"batch size must be ≥ 1, got {batch_size}")
    name = onnx_path.name.split(".")[0]
    properties = nvinfer_properties(name, manifest, batch_size, gpu_id)
    parser = configparser.ConfigParser()
    parser.optionxform = str  # nvinfer keys are case-sensitive
    parser["property"] = properties
    text = io.StringIO()
    parser.write(text)
    check_nvinfer_config(text.getvalue(), manifest, model, f"{folder}/config_infer_{name}.txt")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".occ-deepstream.", dir=folder))
    try:
        (staging / f"config_infer_{name}.txt").write_text(text.getvalue())
        shutil.copyfile(onnx_path, staging / f"{name}.onnx")
        (staging / f"{name}.manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2))
        (staging / "occ_probe.py").write_text(PROBE.replace("@MANIFEST@", f"{name}.manifest.json"))
        for item in staging.iterdir():
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DeepStreamConfig(folder, folder / f"config_infer_{name}.txt", folder / "occ_probe.py")


def check_nvinfer_config(text: str, manifest: Manifest, model: onnx.ModelProto, where: str) -> None:
    """The configuration reads back and agrees with the manifest and the graph."""
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise DeepStreamExportError(f"{where}: not a valid nvinfer configuration ({exc})") from None
    properties = parser["property"]
    graph_input = next(i for i in model.graph.input if i.name in ("frames", "patches"))
    dims = [d.dim_value for d in graph_input.type.tensor_type.shape.dim[1:]]
    if [int(v) for v in properties["infer-dims"].split(";")] != dims:
        raise DeepStreamExportError(f"{where}: infer-dims {properties['infer-dims']} differ from the graph's input {dims}")
    outputs = properties["output-blob-names"].split(";")
    if outputs != [o.name for o in model.graph.output]:
        raise DeepStreamExportError(f"{where}: output-blob-names {outputs} differ from the graph's outputs")
    if properties["output-tensor-meta"] != "1" or properties["network-mode"] != "2":
        raise DeepStreamExportError(f"{where}: output tensor meta must be on and the network FP16")


PROBE = '''"""occ probe for DeepStream (written by occ-export --deepstream; never run under DeepStream).

Attach to the src pad of the nvinfer element configured by config_infer_*.txt:

    pad = pgie.get_static_pad("src")
    pad.add_probe(Gst.PadProbeType.BUFFER, occ_probe, OccEvents("@MANIFEST@", "events.jsonl"))

For each frame it reads the output tensors from NvDsInferTensorMeta (pyds), turns them into a
score, a decision and a mask with occ's own rule (occ.runtime.scoring.decide, the manifest's
scoring contract) and feeds occ's episode tracker, which writes the same JSON-lines events as
`occ run`.
"""
import ctypes

import numpy as np

from occ.runtime.events import EpisodeTracker, EventLog
from occ.runtime.manifest import load_manifest_file
from occ.runtime.scoring import decide, frame_threshold


class OccEvents:
    def __init__(self, manifest_path, events_path, open_after=None, close_after=None):
        self.manifest = load_manifest_file(manifest_path)
        self.tracker = EpisodeTracker(open_after, close_after, rule=self.manifest.episodes, threshold=frame_threshold(self.manifest))
        self.log = EventLog(events_path)
        self.index = 0

    def result(self, tensors):
        result = decide(tensors, self.manifest)[0]
        result.index = self.index
        return result

    def update(self, tensors):
        result = self.result(tensors)
        self.index += 1
        opened, closed, _ = self.tracker.update(result)
        if opened:
            self.log.write("opened", opened)
        if closed:
            self.log.write("closed", closed)


def _layer_array(layer):
    import pyds

    dims = [layer.inferDims.d[i] for i in range(layer.inferDims.numDims)]
    kinds = {pyds.NvDsInferDataType.FLOAT: ctypes.c_float, pyds.NvDsInferDataType.HALF: ctypes.c_uint16,
             pyds.NvDsInferDataType.INT8: ctypes.c_int8, pyds.NvDsInferDataType.INT32: ctypes.c_int32}
    pointer = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(kinds[layer.dataType]))
    array = np.ctypeslib.as_array(pointer, shape=(1, *dims)).copy()
    return array.view(np.float16).astype(np.float32) if layer.dataType == pyds.NvDsInferDataType.HALF else array


def occ_probe(pad, info, events):
    import pyds
    from gi.repository import Gst

    batch = pyds.gst_buffer_get_nvds_batch_meta(hash(info.get_buffer()))
    frames = batch.frame_meta_list
    while frames is not None:
        frame = pyds.NvDsFrameMeta.cast(frames.data)
        users = frame.frame_user_meta_list
        while users is not None:
            user = pyds.NvDsUserMeta.cast(users.data)
            if user.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
                meta = pyds.NvDsInferTensorMeta.cast(user.user_meta_data)
                tensors = {}
                for i in range(meta.num_output_layers):
                    layer = pyds.get_nvds_LayerInfo(meta, i)
                    tensors[layer.layerName] = _layer_array(layer)
                events.update(tensors)
            users = users.next
        frames = frames.next
    return Gst.PadProbeReturn.OK
'''
