"""occ against a real Triton Inference Server: PyTriton's tritonserver, its Python backend running
occ's exported ONNX with ONNX Runtime CPU, on loopback ports (occ.benchmarks.triton_server).

The repository is the one ``occ-export --triton`` writes with only its backend line changed (the
wheel has no ONNX Runtime backend); the tests check that this is the only change and that Triton
accepts everything else as written."""
import json
import shutil
import threading

import numpy as np
import pytest

pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (pip install 'occ[triton]')")
pytest.importorskip("pytriton", reason="nvidia-pytriton, which ships tritonserver, is not installed: pip install 'occ[triton-server]' "
                                       "(x86-64 Linux, glibc 2.35 or newer)")

from occ.benchmarks.triton_server import (  # noqa: E402
    EXPORTED_BACKEND_LINE, SERVED_BACKEND_LINE, LocalTritonServer, TritonServerError, model_counter, python_backend_repository,
    server_problem)
from occ.export.triton import parse_config, write_triton_repository  # noqa: E402

if server_problem():
    pytest.skip(server_problem(), allow_module_level=True)

MODELS = {"alocc": "alocc_onnx", "avid": "avid_onnx"}


@pytest.fixture(scope="module")
def served(request, tmp_path_factory):
    """One server for the module, with both methods' repositories (named alocc and avid)."""
    repository = tmp_path_factory.mktemp("triton") / "models"
    written = {name: python_backend_repository(request.getfixturevalue(fixture), repository, name=name)
               for name, fixture in MODELS.items()}
    with LocalTritonServer(repository) as server:
        yield server, written


def _occ_run(args, out):
    from typer.testing import CliRunner

    from occ.cli import app

    run = CliRunner().invoke(app, ["run", *args, "--out", str(out)])
    assert run.exit_code == 0, run.output[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


def _same_results(local, remote):
    assert len(remote) == len(local)
    for a, b in zip(local, remote):
        assert a.decision == b.decision
        assert abs(a.score - b.score) <= 1e-5 * max(1.0, abs(a.score))
        assert a.boxes == b.boxes


@pytest.mark.parametrize("name", list(MODELS))
def test_the_exported_repository_is_served_with_only_its_backend_line_changed(name, served, request, tmp_path):
    import tritonclient.http as httpclient
    from tritonclient.grpc import model_config_pb2

    server, written = served
    exported = write_triton_repository(request.getfixturevalue(MODELS[name]), tmp_path / "exported", name=name)
    served_lines = written[name].config_path.read_text().splitlines()
    exported_lines = exported.config_path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(exported_lines, served_lines) if a != b]
    assert len(served_lines) == len(exported_lines) and changed == [(EXPORTED_BACKEND_LINE, SERVED_BACKEND_LINE)]
    assert written[name].onnx_path.read_bytes() == exported.onnx_path.read_bytes()
    assert (written[name].model_dir / "occ_manifest.json").read_text() == (exported.model_dir / "occ_manifest.json").read_text()

    # Triton's view of the loaded model: every name, type, shape, reshape, the batching, the instances and
    # the manifest parameter as written (KIND_AUTO resolved by the server to its CPU or its GPUs)
    want = parse_config(exported.config_path.read_text(), str(exported.config_path))
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_model_ready(name)
    got = client.get_model_config(name)
    client.close()
    assert got["backend"] == "python" and got["max_batch_size"] == want.max_batch_size
    for kind, configured in (("input", want.input), ("output", want.output)):
        assert [t["name"] for t in got[kind]] == [t.name for t in configured]
        for served_tensor, tensor in zip(got[kind], configured):
            assert served_tensor["data_type"] == model_config_pb2.DataType.Name(tensor.data_type)
            assert [int(d) for d in served_tensor["dims"]] == list(tensor.dims)
            assert ("reshape" in served_tensor) == tensor.HasField("reshape")
            if tensor.HasField("reshape"):
                assert [int(d) for d in served_tensor["reshape"].get("shape", [])] == list(tensor.reshape.shape)
    assert got["dynamic_batching"]["max_queue_delay_microseconds"] == want.dynamic_batching.max_queue_delay_microseconds
    group = got["instance_group"][0]
    assert int(group["count"]) == want.instance_group[0].count
    assert group["kind"] == ("KIND_GPU" if group["gpus"] else "KIND_CPU")
    assert got["parameters"]["occ.manifest"]["string_value"] == want.parameters["occ.manifest"].string_value


@pytest.mark.parametrize("name", list(MODELS))
def test_occ_run_through_tritonserver_gives_the_local_results_one_request_per_frame(name, served, request, tiny_walkway, tmp_path):
    from occ.evaluation.datasets import write_ucsd_layout
    from occ.runtime.manifest import read_manifest

    server, _ = served
    path = request.getfixturevalue(MODELS[name])
    clip = write_ucsd_layout(tiny_walkway, tmp_path / "walkway") / "Test" / "Test001"
    local = _occ_run([str(path), "--source", str(clip)], tmp_path / "local.jsonl")
    before = server.metrics()
    remote = _occ_run([name, "--backend", "triton", "--triton-url", server.url, "--source", str(clip)], tmp_path / "remote.jsonl")
    after = server.metrics()
    frames = len(tiny_walkway.test[0])
    assert len(remote) == len(local) == frames
    for a, b in zip(local, remote):
        assert a["decision"] == b["decision"]
        assert abs(a["score"] - b["score"]) <= 1e-5 * max(1.0, abs(a["score"]))
        assert a["boxes"] == b["boxes"]
    # Triton's own counters: one successful request per frame; ALOCC's request carries the frame's patches
    manifest = read_manifest(path)
    rows = manifest.patches.count(manifest.input) if name == "alocc" else 1
    delta = {metric: model_counter(after, metric, name) - model_counter(before, metric, name)
             for metric in ("nv_inference_request_success", "nv_inference_count", "nv_inference_request_failure")}
    assert delta == {"nv_inference_request_success": frames, "nv_inference_count": frames * rows, "nv_inference_request_failure": 0}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_output_comes_back_in_the_graphs_shape_with_the_local_values(name, served, request, tiny_walkway):
    """A batch of frames: Triton answers with the configured dims (a per-frame score as [1]); the
    client gives back the graph's own shapes, and the values of the local ONNX Runtime run."""
    from occ.runtime.detector import open_detector
    from occ.runtime.preprocess import preprocess_clip

    server, _ = served
    local = open_detector(str(request.getfixturevalue(MODELS[name])))
    remote = open_detector(name, "triton", url=server.url)
    feed = local.prepare(preprocess_clip(tiny_walkway.test[1].frames, local.manifest.input)[5:8])
    want = local.backend.infer(feed)
    got = remote.backend.infer(feed)
    assert sorted(got) == sorted(want)
    for output, value in want.items():
        assert got[output].shape == value.shape and got[output].dtype == value.dtype, output
        np.testing.assert_allclose(got[output], value, rtol=1e-5, atol=1e-5, err_msg=output)
    remote.close(), local.close()


def test_cameras_with_their_own_thresholds_share_dynamic_batches(avid_onnx, tiny_walkway, tmp_path):
    """Four cameras at once, each with its own α: the server batches their requests together
    (a queue delay long enough that it must) and every camera still gets its local results."""
    from occ.runtime.detector import open_detector

    repository = tmp_path / "models"
    python_backend_repository(avid_onnx, repository, name="avid", queue_delay_us=100_000)
    frames = tiny_walkway.test[0].frames[:12]
    alpha = open_detector(str(avid_onnx)).manifest.threshold("alpha")
    factors = (0.5, 1.0, 2.0, 4.0)
    local = {}
    for factor in factors:
        detector = open_detector(str(avid_onnx))
        detector.set_thresholds(alpha=alpha * factor)
        local[factor] = [detector.process(frame) for frame in frames]
    assert len({tuple(r.decision for r in results) for results in local.values()}) > 1  # the thresholds matter here

    remote, errors = {}, []
    with LocalTritonServer(repository) as server:
        start = threading.Barrier(len(factors))

        def camera(factor):
            try:
                detector = open_detector("avid", "triton", url=server.url)  # one client per camera, as on separate boxes
                detector.set_thresholds(alpha=alpha * factor)
                start.wait()
                remote[factor] = [detector.process(frame) for frame in frames]
                detector.close()
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
                start.abort()

        threads = [threading.Thread(target=camera, args=(factor,)) for factor in factors]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        samples = server.metrics()
    assert not errors, errors
    for factor in factors:
        _same_results(local[factor], remote[factor])
    requests = model_counter(samples, "nv_inference_request_success", "avid")
    executions = model_counter(samples, "nv_inference_exec_count", "avid")
    assert requests == len(factors) * len(frames)
    assert executions < requests  # some model executions held several cameras' frames


def test_a_server_restart_mid_stream_is_waited_for_and_no_frame_is_lost(avid_onnx, tiny_walkway, tmp_path):
    from occ.runtime.detector import open_detector

    repository = tmp_path / "models"
    python_backend_repository(avid_onnx, repository, name="avid")
    frames = tiny_walkway.test[0].frames
    local = open_detector(str(avid_onnx)).process_clip(frames)
    at_frame_10, server_down = threading.Event(), threading.Event()
    remote, errors, reconnects = [], [], []

    with LocalTritonServer(repository, exit_timeout_s=1) as server:
        def camera():
            try:
                detector = open_detector("avid", "triton", url=server.url, backoff=0.1, max_backoff=0.5, give_up_after=90)
                for index, frame in enumerate(frames):
                    if index == 10:
                        at_frame_10.set()
                        server_down.wait(60)
                    remote.append(detector.process(frame))
                reconnects.append(detector.backend.reconnects)
                detector.close()
            except Exception as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)
                at_frame_10.set()

        thread = threading.Thread(target=camera)
        thread.start()
        assert at_frame_10.wait(60)
        first_start = server.starts
        server.stop()  # frame 10 finds no server: the client waits with the reconnect rules
        server_down.set()
        server.start()  # from this thread: PyTriton's launcher ends the server with the thread that started it
        thread.join(timeout=120)
        assert server.starts == first_start + 1
    assert not errors, errors
    assert reconnects == [1]
    _same_results(local, remote)
    for index, result in enumerate(remote):
        assert result.index == index


def test_a_server_gone_for_good_is_given_up_on_by_the_rules_or_by_a_stop_request(avid_onnx, tiny_walkway, tmp_path):
    """``give_up_after`` bounds the wait; the service's stop request ends it at once (each one line)."""
    import time

    from occ.runtime.backends import BackendError
    from occ.runtime.detector import open_detector

    repository = tmp_path / "models"
    python_backend_repository(avid_onnx, repository, name="avid")
    frame = tiny_walkway.test[0].frames[0]
    stop = threading.Event()
    with LocalTritonServer(repository, exit_timeout_s=1) as server:
        bounded = open_detector("avid", "triton", url=server.url, backoff=0.1, max_backoff=0.4, give_up_after=1.5)
        stoppable = open_detector("avid", "triton", url=server.url, backoff=0.1, max_backoff=0.4, stop=stop)
        bounded.process(frame), stoppable.process(frame)
        server.stop()
        started = time.monotonic()
        with pytest.raises(BackendError, match=rf"^{server.url}/avid: gave up after 1.5 s without the server \(no answer"):
            bounded.process(frame)
        assert 1.5 <= time.monotonic() - started < 10
        threading.Timer(0.5, stop.set).start()
        started = time.monotonic()
        with pytest.raises(BackendError, match=rf"^{server.url}/avid: stopped while waiting for the server"):
            stoppable.process(frame)
        assert 0.5 <= time.monotonic() - started < 5
        assert bounded.backend.reconnects == stoppable.backend.reconnects == 0


def test_occ_bench_triton_writes_local_and_served_frame_rates_per_camera_count(avid_onnx, tmp_path):
    from typer.testing import CliRunner

    from occ.cli.bench import app

    out = tmp_path / "triton.json"
    run = CliRunner().invoke(app, ["triton", str(avid_onnx), "--cameras", "1,3", "--duration", "1", "--warmup", "0.3",
                                   "--frame-size", "48x72", "--threads", "1", "--json", str(out), "--quiet"])
    assert run.exit_code == 0, run.output[-2000:]
    result = json.loads(out.read_text())
    assert result["schema"] == "occ-bench-triton/1" and result["method"] == "avid" and result["settings"]["ort_threads"] == 1
    assert result["server"]["backend"].startswith("python") and result["server"]["tensors"] == "binary"
    assert result["server"]["instance_kind"] in ("KIND_CPU", "KIND_GPU")
    assert [(r["backend"], r["cameras"]) for r in result["runs"]] == [("ort-cpu", 1), ("ort-cpu", 3), ("triton", 1), ("triton", 3)]
    assert len(result["commit"]) == 40 and result["command"].startswith("occ-bench") and result["machine"]
    rates = {(r["backend"], r["cameras"]): r["frames_per_s"] for r in result["runs"]}
    assert result["triton_over_local"] == pytest.approx({str(count): rates["triton", count] / rates["ort-cpu", count] for count in (1, 3)})
    for row in result["runs"]:
        assert row["frames"] > 0 and row["frames_per_s"] == pytest.approx(row["frames"] / row["seconds"])
        assert row["per_camera_frames_per_s"]["min"] > 0  # every camera was served
        assert row["latency_ms"]["count"] == row["frames"]
        if row["backend"] == "triton":  # Triton counted the requests of the recorded window: one per frame, give or take those in flight
            server = row["server"]
            assert abs(server["requests"] - row["frames"]) <= max(2 * row["cameras"], 0.1 * row["frames"])
            # Triton counts a frame's inference before its request's success: a frame in flight may sit between them
            assert abs(server["inferences"] - server["requests"]) <= row["cameras"]
            # the same frames in flight at the window's edges: an execution counted before its inferences
            assert 1.0 - row["cameras"] / server["executions"] <= server["mean_batch_frames"] <= row["cameras"] * 1.01

    bad = CliRunner().invoke(app, ["triton", str(avid_onnx), "--cameras", "0,4"])
    assert bad.exit_code == 2 and "--cameras must be positive integers" in bad.output
    missing = CliRunner().invoke(app, ["triton", str(tmp_path / "none.onnx")])
    assert missing.exit_code == 2 and "none.onnx: file not found" in missing.output


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is visible here: KIND_GPU would load")
def test_kind_gpu_is_refused_by_a_server_without_a_gpu_in_the_servers_words(avid_onnx, tmp_path):
    """Why occ-export writes KIND_AUTO: the same repository with KIND_GPU does not load on a CPU server."""
    repository = tmp_path / "models"
    python_backend_repository(avid_onnx, repository, name="avid", instance_kind="gpu")
    with pytest.raises(TritonServerError, match="has kind KIND_GPU but no GPUs are available"):
        with LocalTritonServer(repository):
            pass
