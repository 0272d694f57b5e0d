"""A backend added from outside the runtime: its class and one registry line. The detector, `occ run`,
`occ inspect` and the GPU path take it by its capabilities, with no branch on its name."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from occ.cli import app
from occ.evaluation.datasets.video import write_video
from occ.runtime.backends import REGISTRY, Backend, BackendError, BackendKind, Capabilities, register_backend
from occ.runtime.detector import open_detector
from occ.runtime.manifest import manifest_from_metadata
from occ.runtime.model_info import model_info

MOST_SAMPLES = 4


class OnnxRuntimeByHand(Backend):
    """ONNX Runtime called directly, at most four samples a run: a backend as a newcomer writes one."""

    name = "by-hand"
    capabilities = Capabilities(runs_on="cpu", artifact=".onnx")

    def __init__(self, model_path: str):
        super().__init__(model_path)
        self.session = None
        self.run_sizes: list[int] = []

    def _activate_impl(self) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(self.model_path, providers=["CPUExecutionProvider"])
        self.manifest = manifest_from_metadata(self.session.get_modelmeta().custom_metadata_map, self.model_path)
        self.input_names = [i.name for i in self.session.get_inputs()] + [i.name for i in self.session.get_overridable_initializers()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.batch_limits = (1, MOST_SAMPLES)

    def _deactivate_impl(self) -> None:
        self.session = None

    def _infer_impl(self, feed: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        self.run_sizes.append(len(feed["patches"]))
        return dict(zip(outputs, self.session.run(outputs, feed)))


@pytest.fixture
def by_hand():
    register_backend(BackendKind("by-hand", OnnxRuntimeByHand, "ONNX Runtime called by hand (a test)"))
    yield REGISTRY["by-hand"]
    REGISTRY.pop("by-hand")


def test_a_registered_backend_runs_the_detector_within_its_batch_limits(by_hand, alocc_onnx, tiny_walkway):
    frames = tiny_walkway.test[0].frames[:6]
    detector = open_detector(str(alocc_onnx), "by-hand")
    got = detector.process_clip(frames)
    want = open_detector(str(alocc_onnx), "ort-cpu").process_clip(frames)
    np.testing.assert_allclose([r.score for r in got], [r.score for r in want], rtol=1e-5, atol=1e-6)
    assert [r.decision for r in got] == [r.decision for r in want]
    # six frames of 15 patches: Backend.infer cut them to the backend's batch limits, no caller did
    assert detector.backend.run_sizes and max(detector.backend.run_sizes) <= MOST_SAMPLES
    assert sum(detector.backend.run_sizes) == 6 * 15
    detector.close()


def test_occ_run_and_inspect_take_a_registered_backend(by_hand, alocc_onnx, tiny_walkway, tmp_path):
    video = write_video(tmp_path / "clip.avi", tiny_walkway.test[0].frames[:8])
    out = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(app, ["run", str(alocc_onnx), "--source", str(video), "--backend", "by-hand", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 8 and "score" in json.loads(out.read_text().splitlines()[0])
    rows = {row["backend"]: row for row in model_info(alocc_onnx)["backends"]}
    assert rows["by-hand"] == {"backend": "by-hand", "usable": True, "why_not": None}


def test_the_gpu_path_asks_the_capabilities_not_the_name(by_hand, alocc_onnx):
    """No device-resident path declared: refused before any GPU is looked for."""
    with pytest.raises(BackendError, match="backend by-hand cannot run on device buffers"):
        open_detector(str(alocc_onnx), "by-hand", preprocess="gpu")


def test_the_built_in_backends_declare_their_capabilities():
    declared = {name: kind.capabilities for name, kind in REGISTRY.items() if name != "torch"}
    assert declared["ort-cpu"] == Capabilities(runs_on="cpu", artifact=".onnx")
    assert declared["ort-cuda"] == Capabilities(runs_on="gpu", artifact=".onnx", device_resident=True)
    assert declared["tensorrt"] == Capabilities(runs_on="gpu", artifact=".engine", device_resident=True)
    assert declared["triton"].on_server and not declared["triton"].device_resident
    assert all(kind.create("m", {}).capabilities == kind.capabilities for name, kind in REGISTRY.items() if name in declared and name != "triton")


def test_the_device_path_is_opened_by_the_backend_class(avid_onnx):
    """What GpuPipeline asks for, short of a GPU: each device-resident class sets itself up for the
    caller's stream; the others refuse in one line."""
    from occ.runtime.backends import OrtBackend, OrtCudaBackend, TensorRTBackend

    class Stream:
        ptr = 0x5000

    shared = OrtCudaBackend.on_device(str(avid_onnx), Stream(), 6)
    assert shared.providers == ("CUDAExecutionProvider",) and shared.user_stream == 0x5000
    assert shared.fixed_dimensions == {"batch": 6} and shared.cuda_graph and shared.runs_on_bound_stream
    assert not OrtCudaBackend.on_device(str(avid_onnx), Stream(), 6, share_stream=False).runs_on_bound_stream
    assert OrtCudaBackend.on_device(str(avid_onnx), Stream(), 6, profile_prefix="p").profile_prefix == "p"
    assert TensorRTBackend.on_device("m.engine", Stream(), 6).runs_on_bound_stream
    with pytest.raises(BackendError, match="takes no option"):
        TensorRTBackend.on_device("m.engine", Stream(), 6, profile_prefix="p")
    with pytest.raises(BackendError, match="backend ort-cpu cannot run on device buffers"):
        OrtBackend.on_device(str(avid_onnx), Stream(), 6)
    with OrtBackend(str(avid_onnx)) as backend:  # α and ζ are overridable initializers, not graph inputs
        assert backend.input_dtype("frames") == np.float32 and backend.input_dtype("alpha") == np.float32
        with pytest.raises(BackendError, match="no input 'beta'"):
            backend.input_dtype("beta")
