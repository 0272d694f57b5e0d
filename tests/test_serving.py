"""Serving through Triton / KServe v2 and DeepStream: repository schema, the served graph, the
client against a real HTTP server that speaks the protocol, the nvinfer configuration and probe."""
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed (pip install 'occ[triton]')")

from occ.export.triton import TritonExportError, check_config_against_graph, parse_config, write_triton_repository  # noqa: E402

KSERVE_TYPES = {"FP32": np.float32, "FP16": np.float16, "BOOL": np.bool_, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


class KServeServer:
    """A KServe v2 (HTTP/JSON) server over one Triton model repository entry, in a thread.

    It implements what a client of Triton uses: health, model readiness and metadata, Triton's
    model-configuration extension (the config.pbtxt as JSON, as Triton returns it) and inference,
    with ONNX Runtime running the repository's model.onnx. Requests are counted per batch size.
    """

    def __init__(self, model_dir):
        from google.protobuf import json_format

        self.name = model_dir.name
        self.config = parse_config((model_dir / "config.pbtxt").read_text(), str(model_dir))
        self.config_json = json_format.MessageToDict(self.config, preserving_proto_field_name=True)
        self.session = ort.InferenceSession(str(model_dir / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        self.batches: list[int] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send(self, code, payload=None):
                body = json.dumps(payload or {}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.rstrip("/")
                model = f"/v2/models/{server.name}"
                if path in ("/v2/health/ready", "/v2/health/live", f"{model}/ready", f"{model}/versions/1/ready"):
                    return self._send(200)
                if path == model:
                    return self._send(200, server.metadata())
                if path == f"{model}/config":
                    return self._send(200, server.config_json)
                return self._send(404, {"error": f"unknown path {path}"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                request = json.loads(self.rfile.read(length))
                if self.path.rstrip("/") != f"/v2/models/{server.name}/infer":
                    return self._send(404, {"error": "unknown model"})
                try:
                    return self._send(200, server.infer(request))
                except Exception as exc:  # the protocol's error reply
                    return self._send(400, {"error": str(exc)})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def metadata(self):
        def describe(values):
            return [{"name": v.name, "datatype": {"tensor(float)": "FP32", "tensor(bool)": "BOOL"}[v.type],
                     "shape": [-1 if isinstance(d, str) else d for d in v.shape]} for v in values]

        return {"name": self.name, "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": describe(self.session.get_inputs()), "outputs": describe(self.session.get_outputs())}

    def infer(self, request):
        feed = {t["name"]: np.array(t["data"], KSERVE_TYPES[t["datatype"]]).reshape(t["shape"]) for t in request["inputs"]}
        batch = {len(v) for v in feed.values()}
        assert len(batch) == 1, f"inputs disagree on the batch size: {batch}"
        assert batch.pop() <= self.config.max_batch_size, "batch above max_batch_size"
        self.batches.append(len(next(iter(feed.values()))))
        wanted = [o["name"] for o in request.get("outputs", [])] or [o.name for o in self.session.get_outputs()]
        values = self.session.run(wanted, feed)
        kinds = {np.dtype(np.float32): "FP32", np.dtype(np.bool_): "BOOL"}
        return {"model_name": self.name, "model_version": "1",
                "outputs": [{"name": n, "datatype": kinds[v.dtype], "shape": list(v.shape), "data": v.ravel().tolist()}
                            for n, v in zip(wanted, values)]}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("model", ["alocc_onnx", "avid_onnx"])
def test_triton_repository_round_trips_through_the_schema_and_matches_the_graph(model, request, tmp_path):
    import onnx

    path = request.getfixturevalue(model)
    repository = write_triton_repository(path, tmp_path / "models", name="occ_model")
    config = parse_config(repository.config_path.read_text(), str(repository.config_path))
    served = onnx.load(str(repository.onnx_path))
    check_config_against_graph(config, served, "test")
    graph_inputs = {i.name for i in served.graph.input} - {i.name for i in served.graph.initializer}
    assert {t.name for t in config.input} == graph_inputs
    assert [t.name for t in config.output] == [o.name for o in served.graph.output]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].kind == config.instance_group[0].KIND_AUTO  # a server's GPUs, or its CPU without one
    manifest = json.loads(config.parameters["occ.manifest"].string_value)
    assert manifest == json.loads((repository.model_dir / "occ_manifest.json").read_text())
    if model == "avid_onnx":
        assert {"alpha", "zeta"} <= graph_inputs  # per-request thresholds
        assert next(t for t in config.input if t.name == "alpha").dims == [1]
    # a configuration that names a tensor the graph lacks is refused
    broken = repository.config_path.read_text().replace('name: "score"', 'name: "scores"')
    with pytest.raises(TritonExportError, match="do not match the graph"):
        check_config_against_graph(parse_config(broken, "broken"), served, "broken")
    with pytest.raises(TritonExportError, match="not a valid Triton model configuration"):
        parse_config(repository.config_path.read_text().replace("max_batch_size", "max_batch"), "typo")


def test_occ_export_writes_the_instance_kind_asked_for_and_refuses_others_in_one_line(avid_onnx, tmp_path):
    from typer.testing import CliRunner

    from occ.cli.export import app

    written = CliRunner().invoke(app, [str(avid_onnx), "--triton", str(tmp_path / "models"), "--triton-instance-kind", "cpu",
                                       "--triton-instances", "2", "--quiet"])
    assert written.exit_code == 0, written.output[-2000:]
    config = parse_config((tmp_path / "models" / "avid" / "config.pbtxt").read_text(), "written")
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU and config.instance_group[0].count == 2
    refused = CliRunner().invoke(app, [str(avid_onnx), "--triton", str(tmp_path / "other"), "--triton-instance-kind", "tpu"])
    assert refused.exit_code == 2
    assert "--triton-instance-kind must be one of auto, gpu, cpu, got 'tpu'" in refused.output.strip().splitlines()[-1]
    assert not (tmp_path / "other").exists()


def test_served_avid_graph_takes_one_alpha_and_zeta_per_request(avid_onnx, tmp_path):
    """Same outputs as the exported graph for the same thresholds, and each row its own thresholds."""
    repository = write_triton_repository(avid_onnx, tmp_path / "models")
    exported = ort.InferenceSession(str(avid_onnx), providers=["CPUExecutionProvider"])
    served = ort.InferenceSession(str(repository.onnx_path), providers=["CPUExecutionProvider"])
    shape = exported.get_inputs()[0].shape
    frames = np.random.default_rng(0).normal(size=(3, shape[1], shape[2], shape[3])).astype(np.float32)
    alphas, zetas = np.array([0.05, 0.2, 1e6], np.float32), np.array([0.5, 0.9, 0.5], np.float32)
    names = [o.name for o in served.get_outputs()]
    got = dict(zip(names, served.run(names, {"frames": frames, "alpha": alphas[:, None], "zeta": zetas[:, None]})))
    for row in range(3):
        want = exported.run(names, {"frames": frames[row : row + 1], "alpha": alphas[row : row + 1], "zeta": zetas[row : row + 1]})
        for name, w in zip(names, want):
            np.testing.assert_allclose(got[name][row : row + 1], w, atol=1e-6)
    assert not got["mask"][2].any()  # row 2's α is above every residual: empty mask


def _occ_run(args, tmp_path, name):
    from typer.testing import CliRunner

    from occ.cli import app

    out = tmp_path / f"{name}.jsonl"
    run = CliRunner().invoke(app, ["run", *args, "--out", str(out)])
    assert run.exit_code == 0, run.output[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.mark.parametrize("model", ["alocc_onnx", "avid_onnx"])
def test_occ_run_through_a_kserve_server_gives_the_local_results(model, request, tiny_walkway, tmp_path):
    from occ.evaluation.datasets import write_ucsd_layout

    path = request.getfixturevalue(model)
    clip = write_ucsd_layout(tiny_walkway, tmp_path / "walkway") / "Test" / "Test001"
    repository = write_triton_repository(path, tmp_path / "models", name="detector")
    local = _occ_run([str(path), "--source", str(clip)], tmp_path, "local")
    with KServeServer(repository.model_dir) as server:
        remote = _occ_run(["detector", "--backend", "triton", "--triton-url", f"http://{server.url}", "--source", str(clip)],
                          tmp_path, "remote")
    assert len(remote) == len(local) == len(tiny_walkway.test[0])
    for a, b in zip(local, remote):
        assert a["decision"] == b["decision"]
        assert abs(a["score"] - b["score"]) <= 1e-5 * max(1.0, abs(a["score"]))
        assert a["boxes"] == b["boxes"]
    assert server.batches and all(size <= server.config.max_batch_size for size in server.batches)


def test_occ_run_with_an_unreachable_server_is_one_line(tmp_path, tiny_walkway):
    from occ.evaluation.datasets import write_ucsd_layout

    clip = write_ucsd_layout(tiny_walkway, tmp_path / "walkway") / "Test" / "Test001"
    run = subprocess.run([sys.executable, "-m", "occ", "run", "detector", "--backend", "triton", "--triton-url", "127.0.0.1:9",
                          "--source", str(clip), "--out", str(tmp_path / "x.jsonl")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert "127.0.0.1:9/detector: no answer from the server" in run.stderr.strip().splitlines()[-1]


def test_deepstream_config_agrees_with_the_manifest_and_the_probe_gives_the_runtime_events(avid_onnx, tiny_walkway, tmp_path):
    import configparser
    import importlib.util

    from occ.export.deepstream import write_deepstream_config
    from occ.runtime.detector import open_detector

    written = write_deepstream_config(avid_onnx, tmp_path / "ds", batch_size=4)
    parser = configparser.ConfigParser()
    parser.optionxform = str
    parser.read(written.config_path)
    props = parser["property"]
    detector = open_detector(str(avid_onnx))
    spec = detector.manifest.input
    assert props["infer-dims"] == f"{spec.channels};{spec.height};{spec.width}"
    assert props["network-mode"] == "0" and props["output-tensor-meta"] == "1" and props["batch-size"] == "4"
    assert (tmp_path / "ds" / props["onnx-file"]).is_file()
    # the probe's decision logic (pyds is only needed to read DeepStream's buffers) on real graph outputs
    spec_module = importlib.util.spec_from_file_location("occ_probe", written.probe_path)
    probe = importlib.util.module_from_spec(spec_module)
    spec_module.loader.exec_module(probe)
    events = probe.OccEvents(str(tmp_path / "ds" / "avid.manifest.json"), str(tmp_path / "events.jsonl"), 1, 1)
    from occ.runtime.preprocess import preprocess_clip

    clip = tiny_walkway.test[0]
    inputs = preprocess_clip(clip.frames, spec)
    local = detector.process_clip(clip.frames)
    for x, want in zip(inputs, local):
        tensors = detector.forward(detector.prepare(x[None]))
        assert events.result(tensors).decision == want.decision
        events.update(tensors)
    events.log.close()
    assert (tmp_path / "events.jsonl").stat().st_size > 0 or not any(r.decision for r in local)
