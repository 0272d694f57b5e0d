"""A DeepStream ``nvinfer`` configuration for an exported occ model, and a probe that turns its
output tensors into occ events.

    DIR/config_infer_<name>.txt   nvinfer [property] group: the DeepStream model, FP32, batch size,
                                  input dims from the manifest, output tensor meta on
    DIR/<name>.ds-<digest>.onnx   the model as nvinfer takes it: one image input, α and ζ folded to
                                  the manifest's values, every output in an NvDsInferDataType; the
                                  digest of its bytes in the name gives every threshold set its own
                                  engine file, so nvinfer never loads an engine with old thresholds
    DIR/<name>.manifest.json      the manifest (the probe reads thresholds and geometry here)
    DIR/occ_probe.py              a pad probe: preprocess ROI meta → NvDsInferTensorMeta → occ events
    DIR/README.txt                what to re-run when the thresholds change

nvinfer's own preprocessing scales and offsets single frames; occ's temporal rules (AVID's
⟨I'_{t−4}, I'_{t−2}, I'_t⟩) are not expressible there, so the configuration takes its input from
tensor meta (``input-tensor-from-meta=1``), which an ``nvdspreprocess`` element with a custom
tensor-preparation library must fill, implementing ``runtime/preprocess/reference.py`` (its CUDA
form is ``runtime/preprocess/kernels/preprocess_frames.cu``). That library is not part of occ.

What NVIDIA's documentation settles here (and the code follows):

- nvinfer works with networks whose one input layer is the video frames; any other input layer
  needs a custom library implementing ``NvDsInferInitializeInputLayers`` (``custom-lib-path``;
  nvdsinfer_custom_impl.h, "Input Layers Initialization"), called once before the first inference. So
  AVID's α and ζ become constants of a DeepStream-only graph, at the manifest's values: after
  ``occ calibrate`` or any threshold change the folder must be written again.
- ``network-mode=2`` makes nvinfer build the whole network in FP16, with no FP32 islands for the
  residual, the thresholds and the comparisons; the configuration is FP32 (``network-mode=0``).
- ``NvDsInferDataType`` has FLOAT, HALF, INT8 and INT32 only (nvdsinfer.h): AVID's bool ``mask``
  is cast to float in the DeepStream graph.
- With ``input-tensor-from-meta=1`` nvinfer attaches its output tensor meta to each ROI's
  ``roi_user_meta_list`` of the preprocess batch meta, not to the frame's user meta (pyds,
  deepstream_python_apps ``deepstream-preprocess-test``): the probe walks that list.
- nvinfer serialises the engine it builds as ``<onnx-file>_b<batch>_gpu<id>_<fp32|fp16|int8>.engine``
  beside the model; ``model-engine-file`` names that file, so later starts load it instead of
  building again.
- ALOCC is refused: ``decide()`` scores a frame from all of its patches together, and nvinfer
  infers one tensor per ROI (``infer-dims`` is one patch), so one frame's patches would have to
  come out of nvdspreprocess as one batch and be gathered per frame in the probe. occ cannot check
  that without DeepStream; ALOCC runs under ``occ run``, Triton or the TensorRT backend.

Nothing here has run under DeepStream (it was not available where occ was developed); the files
are checked for consistency with the manifest and graph, and the probe on pyds-shaped metadata
built from plain Python objects (tests/test_deepstream_probe.py).
"""
from __future__ import annotations

import configparser
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from occ.runtime.manifest import Manifest, manifest_from_metadata


class DeepStreamExportError(RuntimeError):
    """The configuration cannot be written or does not check out; one line says why."""


@dataclass
class DeepStreamConfig:
    folder: Path
    config_path: Path
    probe_path: Path
    model_path: Path


# NvDsInferDataType (nvdsinfer.h): the only output types nvinfer hands to a probe
NVDSINFER_TYPES = {TensorProto.FLOAT: "FLOAT", TensorProto.FLOAT16: "HALF", TensorProto.INT8: "INT8", TensorProto.INT32: "INT32"}
NETWORK_MODES = {"fp32": "0", "int8": "1", "fp16": "2"}  # nvinfer's network-mode values


def deepstream_problem(manifest: Manifest) -> str | None:
    """Why this model cannot run under nvinfer as occ writes it, or None."""
    if manifest.method == "alocc":
        return ("--deepstream supports AVID only: ALOCC decides a frame from all of its patches together, and nvinfer infers one patch "
                "per ROI, so one frame's patches would have to be batched and regathered in ways occ cannot check without DeepStream; "
                "run ALOCC with occ run, Triton or --backend tensorrt")
    return None


def engine_file_name(onnx_file: str, batch_size: int, gpu_id: int, precision: str = "fp32") -> str:
    """The name nvinfer gives the engine it builds from ``onnx_file`` and serialises beside it."""
    return f"{onnx_file}_b{batch_size}_gpu{gpu_id}_{precision}.engine"


def deepstream_model(model: onnx.ModelProto, manifest: Manifest) -> onnx.ModelProto:
    """The graph nvinfer takes: α and ζ (inputs with a default) become constants at the manifest's
    thresholds, and outputs outside NvDsInferDataType (the bool ``mask``) are cast to float."""
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    initializers = {init.name: init for init in graph.initializer}
    for value in [v for v in graph.input if v.name in manifest.thresholds]:
        constant = numpy_helper.from_array(np.asarray(manifest.threshold(value.name), np.float32).reshape(
            [d.dim_value for d in value.type.tensor_type.shape.dim]), value.name)
        if value.name in initializers:
            graph.initializer.remove(initializers[value.name])
        graph.initializer.append(constant)
        graph.input.remove(value)
    for output in graph.output:
        kind = output.type.tensor_type.elem_type
        if kind in NVDSINFER_TYPES:
            continue
        if kind != TensorProto.BOOL:
            raise DeepStreamExportError(f"output {output.name} is {TensorProto.DataType.Name(kind)}, which NvDsInferDataType cannot carry")
        internal = f"{output.name}_bool"
        for node in graph.node:
            node.output[:] = [internal if name == output.name else name for name in node.output]
            node.input[:] = [internal if name == output.name else name for name in node.input]
        graph.node.append(helper.make_node("Cast", [internal], [output.name], to=TensorProto.FLOAT, name=f"{output.name}_to_float"))
        output.type.tensor_type.elem_type = TensorProto.FLOAT
    onnx.checker.check_model(folded)
    return folded


def model_file_name(name: str, graph: onnx.ModelProto) -> str:
    return f"{name}.ds-{hashlib.sha256(graph.SerializeToString()).hexdigest()[:12]}.onnx"


def nvinfer_properties(name: str, manifest: Manifest, batch_size: int, gpu_id: int, model_file: str) -> dict[str, str]:
    spec = manifest.input
    return {
        "gpu-id": str(gpu_id),
        "onnx-file": model_file,
        "model-engine-file": engine_file_name(model_file, batch_size, gpu_id, "fp32"),
        "network-mode": NETWORK_MODES["fp32"],  # FP16 here would cover the residual, thresholds and comparisons too
        "batch-size": str(batch_size),
        "infer-dims": f"{spec.channels};{spec.height};{spec.width}",
        "network-type": "100",  # "other": no built-in post-processing; tensors go to the probe
        "output-tensor-meta": "1",
        "input-tensor-from-meta": "1",  # filled by nvdspreprocess with occ's temporal rule (see module doc)
        "gie-unique-id": "1",
        "process-mode": "1",
        "output-blob-names": ";".join(manifest.export.get("outputs", [])),
    }


def config_header(manifest: Manifest) -> str:
    values = ", ".join(f"{name} = {manifest.threshold(name):.8g}" for name in sorted(manifest.thresholds))
    return (f"# written by occ export --deepstream; the model has the thresholds folded in ({values}).\n"
            "# After occ calibrate or any threshold change, run occ export MODEL.onnx --deepstream DIR again.\n")


def write_deepstream_config(onnx_path: str | Path, folder: str | Path, batch_size: int = 1, gpu_id: int = 0) -> DeepStreamConfig:
    """Write the nvinfer configuration, the DeepStream model, its manifest and the probe into ``folder``."""
    onnx_path = Path(onnx_path)
    try:
        model = onnx.load(str(onnx_path))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for a bad file
        raise DeepStreamExportError(f"{onnx_path}: not a readable ONNX model ({type(exc).__name__})") from None
    manifest = manifest_from_metadata({p.key: p.value for p in model.metadata_props}, str(onnx_path))
    problem = deepstream_problem(manifest)
    if problem:
        raise DeepStreamExportError(f"{onnx_path}: {problem}")
    if batch_size < 1:
        raise DeepStreamExportError(f"batch size must be ≥ 1, got {batch_size}")
    name = onnx_path.name.split(".")[0]
    graph = deepstream_model(model, manifest)
    properties = nvinfer_properties(name, manifest, batch_size, gpu_id, model_file_name(name, graph))
    parser = configparser.ConfigParser()
    parser.optionxform = str  # nvinfer keys are case-sensitive
    parser["property"] = properties
    text = io.StringIO()
    text.write(config_header(manifest))
    parser.write(text)
    check_nvinfer_config(text.getvalue(), manifest, graph, f"{folder}/config_infer_{name}.txt")

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".occ-deepstream.", dir=folder))
    try:
        (staging / f"config_infer_{name}.txt").write_text(text.getvalue())
        onnx.save(graph, str(staging / properties["onnx-file"]))
        (staging / f"{name}.manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2))
        (staging / "occ_probe.py").write_text(PROBE.replace("@MANIFEST@", f"{name}.manifest.json"))
        (staging / "README.txt").write_text(README.format(name=name, model=properties["onnx-file"], config=f"config_infer_{name}.txt",
                                                          header=config_header(manifest)))
        for item in staging.iterdir():
            os.replace(item, folder / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DeepStreamConfig(folder, folder / f"config_infer_{name}.txt", folder / "occ_probe.py", folder / properties["onnx-file"])


def check_nvinfer_config(text: str, manifest: Manifest, model: onnx.ModelProto, where: str) -> None:
    """The configuration reads back and agrees with the manifest and the DeepStream graph."""
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise DeepStreamExportError(f"{where}: not a valid nvinfer configuration ({exc})") from None
    properties = parser["property"]
    inputs = [i.name for i in model.graph.input]
    if inputs != ["frames"]:
        raise DeepStreamExportError(f"{where}: nvinfer fills one image input without a custom library; the graph takes {inputs}")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]]
    if [int(v) for v in properties["infer-dims"].split(";")] != dims:
        raise DeepStreamExportError(f"{where}: infer-dims {properties['infer-dims']} differ from the graph's input {dims}")
    outputs = properties["output-blob-names"].split(";")
    if outputs != [o.name for o in model.graph.output]:
        raise DeepStreamExportError(f"{where}: output-blob-names {outputs} differ from the graph's outputs")
    untyped = [o.name for o in model.graph.output if o.type.tensor_type.elem_type not in NVDSINFER_TYPES]
    if untyped:
        raise DeepStreamExportError(f"{where}: outputs {untyped} have no NvDsInferDataType")
    if properties["output-tensor-meta"] != "1" or properties["network-mode"] != NETWORK_MODES["fp32"]:
        raise DeepStreamExportError(f"{where}: output tensor meta must be on and the network FP32")
    precision = {v: k for k, v in NETWORK_MODES.items()}[properties["network-mode"]]
    expected = engine_file_name(properties["onnx-file"], int(properties["batch-size"]), int(properties["gpu-id"]), precision)
    if properties["model-engine-file"] != expected:
        raise DeepStreamExportError(f"{where}: model-engine-file must be {expected}, the engine nvinfer writes, or it rebuilds at every start")


README = """occ for DeepStream ({name})

{config} configures nvinfer; occ_probe.py turns its output tensor meta into occ events.
{header}
The model {model} holds AVID's thresholds as constants (nvinfer fills only the image input).
Retuned thresholds need this folder written again: occ export {name}.onnx --deepstream DIR. The
first start builds {model}_b<batch>_gpu<id>_fp32.engine beside the model and later starts load it;
a new threshold set is a new model name, hence a new engine. Older models and engines may be deleted.
"""


PROBE = '''"""occ probe for DeepStream (written by occ export --deepstream; never run under DeepStream).

Attach to the src pad of the nvinfer element configured by config_infer_*.txt:

    pad = pgie.get_static_pad("src")
    pad.add_probe(Gst.PadProbeType.BUFFER, occ_probe, OccEvents("@MANIFEST@", "events.jsonl"))

nvinfer takes its input from nvdspreprocess (input-tensor-from-meta=1), so it attaches its output
tensor meta to each ROI of the preprocess batch meta (batch_user_meta_list → NVDS_PREPROCESS_BATCH_META
→ roi_vector → roi_user_meta_list), as in NVIDIA's deepstream-preprocess-test. Each ROI's tensors
become a score, a decision and a mask by occ's own rule (occ.runtime.scoring.decide, the manifest's
scoring contract) and feed the episode tracker of the ROI's source, which writes the same JSON-lines
events as `occ run`.
"""
import ctypes
import sys

import numpy as np

from occ.runtime.events import EpisodeTracker, EventLog
from occ.runtime.manifest import load_manifest_file
from occ.runtime.scoring import decide


class OccEvents:
    def __init__(self, manifest_path, events_path, open_after=3, close_after=5):
        self.manifest = load_manifest_file(manifest_path)
        self.open_after, self.close_after = open_after, close_after
        self.trackers = {}
        self.indices = {}
        self.log = EventLog(events_path)
        self.warned = False

    def result(self, tensors, source=0):
        result = decide(tensors, self.manifest)[0]
        result.index = self.indices.get(source, 0)
        return result

    def update(self, tensors, source=0):
        result = self.result(tensors, source)
        self.indices[source] = result.index + 1
        if source not in self.trackers:
            self.trackers[source] = EpisodeTracker(self.open_after, self.close_after, camera=f"source-{source}")
        opened, closed, _ = self.trackers[source].update(result)
        if opened:
            self.log.write("opened", opened)
        if closed:
            self.log.write("closed", closed)

    def on_batch(self, pyds, batch_meta):
        """Every ROI's output tensors in one batch; returns how many were scored."""
        count = 0
        for source, tensor_meta in roi_tensor_metas(pyds, batch_meta):
            tensors = {}
            for i in range(tensor_meta.num_output_layers):
                layer = pyds.get_nvds_LayerInfo(tensor_meta, i)
                tensors[layer.layerName] = layer_array(pyds, layer)
            self.update(tensors, source)
            count += 1
        if not count and not self.warned:
            print("occ probe: no NvDsInferTensorMeta in the preprocess ROI meta; check that nvdspreprocess runs before nvinfer "
                  "and that the nvinfer config sets input-tensor-from-meta=1 and output-tensor-meta=1", file=sys.stderr)
            self.warned = True
        return count


def roi_tensor_metas(pyds, batch_meta):
    """(source id, NvDsInferTensorMeta) of each ROI of the preprocess batch meta."""
    batch_users = batch_meta.batch_user_meta_list
    while batch_users is not None:
        user = pyds.NvDsUserMeta.cast(batch_users.data)
        if user.base_meta.meta_type == pyds.NvDsMetaType.NVDS_PREPROCESS_BATCH_META:
            preprocess = pyds.GstNvDsPreProcessBatchMeta.cast(user.user_meta_data)
            for roi in preprocess.roi_vector:
                roi_users = roi.roi_user_meta_list
                while roi_users is not None:
                    roi_user = pyds.NvDsUserMeta.cast(roi_users.data)
                    if roi_user.base_meta.meta_type == pyds.NvDsMetaType.NVDSINFER_TENSOR_OUTPUT_META:
                        yield roi.frame_meta.source_id, pyds.NvDsInferTensorMeta.cast(roi_user.user_meta_data)
                    roi_users = roi_users.next
        batch_users = batch_users.next


def layer_array(pyds, layer):
    """One layer's host buffer as a (1, *dims) array; NvDsInferDataType has FLOAT, HALF, INT8 and INT32 (nvdsinfer.h)."""
    kinds = {pyds.NvDsInferDataType.FLOAT: ctypes.c_float, pyds.NvDsInferDataType.HALF: ctypes.c_uint16,
             pyds.NvDsInferDataType.INT8: ctypes.c_int8, pyds.NvDsInferDataType.INT32: ctypes.c_int32}
    if layer.dataType not in kinds:
        raise ValueError(f"occ probe: layer {layer.layerName} has NvDsInferDataType {layer.dataType}, not one of FLOAT, HALF, INT8, INT32")
    dims = [layer.inferDims.d[i] for i in range(layer.inferDims.numDims)]
    pointer = ctypes.cast(pyds.get_ptr(layer.buffer), ctypes.POINTER(kinds[layer.dataType]))
    array = np.ctypeslib.as_array(pointer, shape=(1, *dims)).copy()
    return array.view(np.float16).astype(np.float32) if layer.dataType == pyds.NvDsInferDataType.HALF else array


def occ_probe(pad, info, events):
    import pyds
    from gi.repository import Gst

    events.on_batch(pyds, pyds.gst_buffer_get_nvds_batch_meta(hash(info.get_buffer())))
    return Gst.PadProbeReturn.OK
'''
