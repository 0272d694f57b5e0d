"""Bad inputs a careful or hostile user tries, and what occ answers: the table of docs/reliability.md.

Each probe prepares its files in a fresh folder, runs one command through the CLI, and expects an
exit code and a one-line message. ``tests/test_reliability.py`` runs them all and checks that
docs/reliability.md is exactly the table they produce (``OCC_WRITE_RELIABILITY=1`` rewrites it).
"""
from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

Setup = Callable[[Path, dict], None]


@dataclass
class Probe:
    area: str
    what: str  # what the user did
    args: list[str]  # the command after `occ`; {name} placeholders come from the models and the setup
    code: int
    message: str  # a part of the one line occ answers with
    setup: Setup | None = None


def _write(name: str, text: str) -> Setup:
    return lambda folder, _: (folder / name).write_text(text)


def _bytes(name: str, payload: bytes) -> Setup:
    return lambda folder, _: (folder / name).write_bytes(payload)


def _manifest_edit(name: str, source: str, edit: Callable[[dict], None]) -> Setup:
    """A copy of a model with its embedded manifest changed by ``edit``."""
    def setup(folder: Path, models: dict) -> None:
        import onnx

        from occ.runtime.manifest import METADATA_KEY

        model = onnx.load(str(models[source]))
        for entry in model.metadata_props:
            if entry.key == METADATA_KEY:
                data = json.loads(entry.value)
                edit(data)
                entry.value = json.dumps(data)
        onnx.save(model, str(folder / name))
    return setup


def _checkpoint_edit(name: str, edit: Callable[[dict], None]) -> Setup:
    def setup(folder: Path, models: dict) -> None:
        import torch

        payload = torch.load(models["alocc_pt"], weights_only=True)
        edit(payload)
        torch.save(payload, folder / name)
    return setup


def _busy_port(folder: Path, _: dict) -> None:
    """A real listener on a port, kept open while the probe runs (closed with the folder's owner)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    BUSY.append(listener)
    (folder / "port").write_text(str(listener.getsockname()[1]))


BUSY: list[socket.socket] = []


def _config(text: str) -> Setup:
    return _write("site.toml", text)


def _ucsd(folder: Path, _: dict, damage: Callable[[Path], None] | None = None) -> None:
    from occ.evaluation.datasets import WalkwayConfig, generate_walkway, write_ucsd_layout

    root = write_ucsd_layout(generate_walkway(WalkwayConfig(height=32, width=48, train_clips=1, test_clips=2, frames_per_clip=12)),
                             folder / "ucsd")
    if damage:
        damage(root)


def _ucsd_damaged(damage: Callable[[Path], None]) -> Setup:
    return lambda folder, models: _ucsd(folder, models, damage)


def _clip(folder: Path, _: dict) -> None:
    from occ.evaluation.datasets.video import write_video

    write_video(folder / "clip.avi", np.full((5, 32, 48), 128, np.uint8))


def _both(*setups: Setup) -> Setup:
    def setup(folder: Path, models: dict) -> None:
        for one in setups:
            one(folder, models)
    return setup


MODEL = "[model]\npath = \"{avid}\"\n"
SOURCE = "[source]\nspec = \"{dir}/clip.avi\"\n"

PROBES: list[Probe] = [
    # ---- models and checkpoints -------------------------------------------------------------------
    Probe("model", "a model file that does not exist", ["run", "{dir}/none.onnx", "--source", "x"], 2, "model file not found"),
    Probe("model", "a text file named .onnx", ["eval", "{dir}/junk.onnx", "--data", "walkway"], 2, "ONNX Runtime cannot load the model",
          _bytes("junk.onnx", b"not a model")),
    Probe("model", "an ONNX model without occ's manifest", ["eval", "{dir}/bare.onnx", "--data", "walkway"], 2, "no occ manifest",
          lambda folder, models: _strip_manifest(folder, models)),
    Probe("model", "a manifest from a newer occ", ["eval", "{dir}/new.onnx", "--data", "walkway"], 2, "newer than this occ understands",
          _manifest_edit("new.onnx", "avid", lambda d: d.update(schema_version="2.0"))),
    Probe("model", "a manifest field of the wrong type", ["eval", "{dir}/typed.onnx", "--data", "walkway"], 2,
          "'input.height' must be a whole number", _manifest_edit("typed.onnx", "avid", lambda d: d["input"].update(height="32"))),
    Probe("model", "a manifest whose sizes disagree with the graph", ["eval", "{dir}/liar.onnx", "--data", "walkway"], 2,
          "per sample in the graph but the manifest says",
          _manifest_edit("liar.onnx", "avid", lambda d: (d["input"].update(height=64, width=96), d["regions"].update(rows=16, cols=24)))),
    Probe("model", "a threshold that is not a number in the manifest", ["eval", "{dir}/nan.onnx", "--data", "walkway"], 2,
          "threshold 'alpha'", _manifest_edit("nan.onnx", "avid", lambda d: d["thresholds"]["alpha"].update(value=-1.0))),
    Probe("model", "an unknown scoring gate in the manifest", ["eval", "{dir}/gate.onnx", "--data", "walkway"], 2,
          "scoring.gate is 'fuzzy'", _manifest_edit("gate.onnx", "avid", lambda d: d["scoring"].update(gate="fuzzy"))),
    Probe("export", "a checkpoint that does not exist", ["export", "{dir}/none.pt"], 2, "none.pt: file not found"),
    Probe("export", "a file that is neither .pt nor .onnx", ["export", "{dir}/model.txt"], 2, "give a checkpoint (.pt) or an exported model",
          _write("model.txt", "x")),
    Probe("export", "a damaged checkpoint", ["export", "{dir}/junk.pt"], 2, "not a readable torch checkpoint", _bytes("junk.pt", b"\x80junk")),
    Probe("export", "a checkpoint with a key missing", ["export", "{dir}/nokey.pt"], 2, "damaged occ checkpoint, missing architecture",
          _checkpoint_edit("nokey.pt", lambda p: p.pop("architecture"))),
    Probe("export", "a checkpoint whose method does not match its networks", ["export", "{dir}/swap.pt"], 2,
          "the checkpoint says avid but its manifest says alocc", _checkpoint_edit("swap.pt", lambda p: p.update(method="avid"))),
    Probe("export", "a checkpoint whose weights do not fit its architecture", ["export", "{dir}/wide.pt"], 2,
          "the weights do not fit the architecture", _checkpoint_edit("wide.pt", lambda p: p.update(
              architecture=json.dumps({**json.loads(p["architecture"]), "base_width": 16})))),
    Probe("export", "--out equal to the checkpoint", ["export", "{alocc_pt}", "--out", "{alocc_pt}"], 2, "would overwrite the checkpoint"),
    Probe("export", "--out in a folder that does not exist", ["export", "{alocc_pt}", "--out", "{dir}/no/such/m.onnx"], 2,
          "does not exist or is not writable"),
    Probe("export", "an engine batch profile out of order", ["export", "{avid}", "--engine", "--batch", "8,1,32"], 2,
          "--batch must be MIN,OPT,MAX"),
    Probe("export", "an engine batch profile that is not numbers", ["export", "{avid}", "--engine", "--batch", "a,b,c"], 2,
          "--batch must be MIN,OPT,MAX"),
    Probe("export", "an opset too old for the graph", ["export", "{avid}", "--opset", "9"], 2, "--opset must be >= 13"),
    Probe("export", "FP16 from an ONNX model with nothing to verify on", ["export", "{avid}", "--fp16"], 2, "needs --data SPEC"),
    Probe("export", "--triton pointing at a file", ["export", "{avid}", "--triton", "{dir}/file"], 2, "--triton takes a folder",
          _write("file", "x")),
    # ---- data -------------------------------------------------------------------------------------
    Probe("data", "generate into the current folder, which holds other files", ["data", "generate", "{dir}", "--height", "32"], 2,
          "not empty and not an occ data set; refusing to replace it", _write("thesis.tex", "years of work")),
    Probe("data", "generate onto an existing file", ["data", "generate", "{dir}/file"], 2, "exists and is not a folder", _write("file", "x")),
    Probe("data", "a frame height out of range", ["data", "generate", "{dir}/w", "--height", "5"], 2, "Invalid value for '--height'"),
    Probe("data", "info on a folder that does not exist", ["data", "info", "{dir}/nothing"], 2, "no such data folder"),
    Probe("data", "info on a folder without footage, Train/ or Test/", ["data", "info", "{dir}"], 2, "no video files"),
    Probe("data", "a UCSD frame that is not an image", ["data", "info", "{dir}/ucsd"], 2, "unreadable image",
          _ucsd_damaged(lambda root: (root / "Test" / "Test001" / "005.tif").write_bytes(b"garbage"))),
    Probe("data", "a UCSD pixel mask missing", ["data", "info", "{dir}/ucsd"], 2, "11 masks for 12 frames",
          _ucsd_damaged(lambda root: (root / "Test" / "Test002_gt" / "003.bmp").unlink())),
    Probe("data", "a UCSD .m file with fewer entries than clips", ["data", "info", "{dir}/ucsd"], 2, "1 gt_frame entries for 2 test clips",
          _ucsd_damaged(lambda root: (root / "Test" / "UCSDwalkway.m").write_text(
              (root / "Test" / "UCSDwalkway.m").read_text().splitlines()[1] + "\n"))),
    Probe("data", "a walkway option that is not a number", ["data", "info", "walkway:height=abc"], 2, "walkway option height needs a number"),
    Probe("data", "an unknown walkway option", ["data", "info", "walkway:colour=1"], 2, "bad walkway option"),
    Probe("eval", "MNIST from a folder that does not exist", ["eval", "{alocc}", "--data", "mnist:{dir}/none", "--digit", "0"], 2, "MNIST folder not found"),
    Probe("eval", "IR-MNIST without a folder", ["eval", "{avid}", "--data", "irmnist:"], 2, "give the MNIST folder"),
    Probe("eval", "IR-MNIST on a video model", ["eval", "{avid}", "--data", "irmnist:{dir}"], 2, "needs a single-image AVID model"),
    Probe("eval", "an even smoothing window", ["eval", "{avid}", "--data", "walkway", "--smoothing", "4"], 2, "--smoothing must be odd"),
    Probe("eval", "the JSON report written over the model", ["eval", "{dir}/m.onnx", "--data", "walkway", "--json", "{dir}/m.onnx"], 2,
          "the model itself", lambda folder, models: _copy(models["avid"], folder / "m.onnx")),
    # ---- training ---------------------------------------------------------------------------------
    Probe("train", "a checkpoint in a folder that does not exist", ["train", "alocc", "--data", "walkway", "--out", "{dir}/no/a.pt"], 2,
          "does not exist or is not writable"),
    Probe("train", "zero epochs", ["train", "avid", "--data", "walkway", "--out", "{dir}/a.pt", "--epochs", "0"], 2,
          "Invalid value for '--epochs'"),
    Probe("train", "the images recipe on video", ["train", "avid", "--data", "walkway", "--recipe", "images", "--out", "{dir}/a.pt"], 2,
          "the AVID recipe 'images' is for images"),
    Probe("train", "a recipe that does not exist", ["train", "avid", "--data", "walkway", "--recipe", "fancy", "--out", "{dir}/a.pt"], 2,
          "unknown AVID recipe 'fancy'"),
    Probe("train", "the region memory on video", ["train", "avid", "--data", "walkway", "--region-memory", "100", "--out", "{dir}/a.pt"], 2,
          "the region memory is for single images"),
    Probe("train", "a frame size that the region cell does not divide", ["train", "avid", "--data", "walkway", "--height", "60",
                                                                        "--out", "{dir}/a.pt"], 2, "must be a multiple of the 8px region cell"),
    Probe("train", "a digit that is not a digit", ["train", "alocc", "--data", "mnist:{dir}", "--digit", "12", "--out", "{dir}/a.pt"], 2,
          "Invalid value for '--digit'"),
    Probe("train", "no processes", ["train", "alocc", "--data", "walkway", "--devices", "0", "--out", "{dir}/a.pt"], 2,
          "Invalid value for '--devices'"),
    Probe("train", "a false-alarm rate above one", ["train", "alocc", "--data", "walkway", "--false-alarm-rate", "2", "--out", "{dir}/a.pt"],
          2, "Invalid value for '--false-alarm-rate'"),
    Probe("train", "IR-MNIST with one training grid", ["train", "avid", "--data", "irmnist:{dir}:grids=1", "--out", "{dir}/a.pt"], 2,
          "needs grids >= 2"),
    Probe("train", "an unknown option", ["train", "alocc", "--data", "walkway", "--out", "{dir}/a.pt", "--depth", "2"], 2,
          "No such option: --depth"),
    # ---- run ----------------------------------------------------------------------------------------
    Probe("run", "a backend that does not exist", ["run", "{avid}", "--source", "{dir}/clip.avi", "--backend", "nosuch"], 2,
          "unknown backend 'nosuch'", _clip),
    Probe("run", "preprocessing on a TPU", ["run", "{avid}", "--source", "{dir}/clip.avi", "--preprocess", "tpu"], 2,
          "--preprocess must be one of cpu, gpu", _clip),
    Probe("run", "GPU preprocessing with the CPU backend", ["run", "{avid}", "--source", "{dir}/clip.avi", "--preprocess", "gpu"], 2,
          "backend ort-cpu cannot run on device buffers", _clip),
    Probe("run", "ONNX Runtime CUDA where onnxruntime has no CUDA", ["run", "{avid}", "--source", "{dir}/clip.avi", "--backend", "ort-cuda"],
          2, "ONNX Runtime here lacks ['CUDAExecutionProvider']", _clip),
    Probe("run", "a Triton address without the triton backend", ["run", "{avid}", "--source", "{dir}/clip.avi", "--triton-url", "h:1"], 2,
          "--triton-url goes with --backend triton", _clip),
    Probe("run", "the triton backend without an address", ["run", "avid", "--source", "{dir}/clip.avi", "--backend", "triton"], 2,
          "needs the server's address", _clip),
    Probe("run", "a Triton server that is not there", ["run", "avid", "--source", "{dir}/clip.avi", "--backend", "triton",
                                                       "--triton-url", "127.0.0.1:9"], 2, "no answer from the server", _clip),
    Probe("run", "a metrics port out of range", ["run", "{avid}", "--source", "{dir}/clip.avi", "--metrics-port", "70000"], 2,
          "Invalid value for '--metrics-port'", _clip),
    Probe("run", "a metrics port already in use", ["run", "{avid}", "--source", "{dir}/clip.avi", "--metrics-port", "{port}"], 2,
          "Address already in use", _both(_clip, _busy_port)),
    Probe("run", "a video file that does not exist", ["run", "{avid}", "--source", "{dir}/none.avi"], 2, "no such file or folder"),
    Probe("run", "a text file as the video", ["run", "{avid}", "--source", "{dir}/clip.avi"], 2, "OpenCV cannot open this video",
          _write("clip.avi", "not a video")),
    Probe("run", "an image folder without images", ["run", "{avid}", "--source", "{dir}/empty"], 2, "no image files",
          lambda folder, _: (folder / "empty").mkdir()),
    Probe("run", "a negative give-up time", ["run", "{avid}", "--source", "{dir}/clip.avi", "--give-up-after", "-1"], 2,
          "Invalid value for '--give-up-after'", _clip),
    Probe("run", "the per-frame log written over the model", ["run", "{dir}/m.onnx", "--source", "{dir}/clip.avi", "--out", "{dir}/m.onnx"],
          2, "is an input of the service", _both(_clip, lambda folder, models: _copy(models["avid"], folder / "m.onnx"))),
    Probe("run", "the events log written over the video", ["run", "{avid}", "--source", "{dir}/clip.avi", "--events", "{dir}/clip.avi"], 2,
          "is an input of the service", _clip),
    Probe("run", "an overlay in a folder that cannot be created", ["run", "{avid}", "--source", "{dir}/clip.avi", "--overlay",
                                                                   "/proc/occ/overlay.avi"], 2, "cannot be written", _clip),
    Probe("run", "neither a model nor a configuration", ["run", "--source", "x"], 2, "give MODEL and --source, or --config FILE"),
    # ---- the service's configuration ----------------------------------------------------------------
    Probe("config", "a configuration file that does not exist", ["run", "--config", "{dir}/none.toml"], 2, "cannot read"),
    Probe("config", "a configuration that is not TOML", ["run", "--config", "{dir}/site.toml"], 2, "not valid TOML", _config("[model\n")),
    Probe("config", "a misspelt section", ["run", "--config", "{dir}/site.toml"], 2, "unknown section [sorce]; did you mean 'source'?",
          _both(_clip, _config(MODEL + "[sorce]\nspec = \"x\"\n"))),
    Probe("config", "a misspelt key", ["run", "--config", "{dir}/site.toml"], 2, "unknown key 'buffr' in [source]; did you mean 'buffer'?",
          _both(_clip, _config(MODEL + SOURCE + "buffr = 2\n"))),
    Probe("config", "a frame buffer of 0", ["run", "--config", "{dir}/site.toml"], 2, "[source] buffer = 0 must be >= 1",
          _both(_clip, _config(MODEL + SOURCE + "buffer = 0\n"))),
    Probe("config", "a number written as a string", ["run", "--config", "{dir}/site.toml"], 2, "[source] buffer must be a whole number",
          _both(_clip, _config(MODEL + SOURCE + "buffer = \"2\"\n"))),
    Probe("config", "a threshold that is not a number", ["run", "--config", "{dir}/site.toml"], 2, "[thresholds] tau = nan must be a finite number",
          _both(_clip, _config(MODEL + SOURCE + "[thresholds]\ntau = nan\n"))),
    Probe("config", "ζ outside (0, 1)", ["run", "--config", "{dir}/site.toml"], 2, "[thresholds] zeta = 1.5 must be between 0 and 1",
          _both(_clip, _config(MODEL + SOURCE + "[thresholds]\nzeta = 1.5\n"))),
    Probe("config", "a threshold the model does not have", ["run", "--config", "{dir}/site.toml"], 2, "threshold name for avid is 'tau'",
          _both(_clip, _config(MODEL + SOURCE + "[thresholds]\ntau = 1.0\n"))),
    Probe("config", "no model path", ["run", "--config", "{dir}/site.toml"], 2, "[model] needs path", _both(_clip, _config(SOURCE))),
    Probe("config", "no source", ["run", "--config", "{dir}/site.toml"], 2, "[source] needs spec", _config(MODEL)),
    Probe("config", "the events log is the model", ["run", "--config", "{dir}/site.toml"], 2, "is an input of the service",
          _both(_clip, _config(MODEL + SOURCE + "[events]\nlog = \"{avid}\"\n"))),
    Probe("config", "two cameras with one name", ["run", "--config", "{dir}/site.toml"], 2, "camera names must differ",
          _both(_clip, _config(MODEL + "[[cameras]]\nspec = \"{dir}/clip.avi\"\nname = \"a\"\n[[cameras]]\nspec = \"{dir}/clip.avi\"\nname = \"a\"\n"))),
    Probe("config", "two cameras writing one overlay", ["run", "--config", "{dir}/site.toml"], 2, "needs '{camera}' in its name",
          _both(_clip, _config(MODEL + "[[cameras]]\nspec = \"{dir}/clip.avi\"\nname = \"a\"\n[[cameras]]\nspec = \"{dir}/clip.avi\"\n"
                               "name = \"b\"\n[overlay]\nvideo = \"{dir}/o.avi\"\n"))),
    Probe("config", "[source] and [[cameras]] together", ["run", "--config", "{dir}/site.toml"], 2, "give one [source] or several [[cameras]]",
          _both(_clip, _config(MODEL + SOURCE + "[[cameras]]\nspec = \"{dir}/clip.avi\"\n"))),
    Probe("config", "an unknown backend in the file", ["run", "--config", "{dir}/site.toml"], 2, "[model] backend = 'gpu' must be one of",
          _both(_clip, _config("[model]\npath = \"{avid}\"\nbackend = \"gpu\"\n" + SOURCE))),
    # ---- calibration ------------------------------------------------------------------------------------
    Probe("calibrate", "footage that does not exist", ["calibrate", "{avid}", "--data", "{dir}/none.avi"], 2, "no such file or folder"),
    Probe("calibrate", "a false-alarm rate of zero", ["calibrate", "{avid}", "--data", "walkway", "--false-alarm-rate", "0"], 2,
          "Invalid value for '--false-alarm-rate'"),
    Probe("calibrate", "zero minutes of live footage", ["calibrate", "{avid}", "--data", "rtsp://x", "--minutes", "0"], 2,
          "Invalid value for '--minutes'"),
    Probe("calibrate", "an engine without its sidecar", ["calibrate", "{dir}/m.engine", "--data", "walkway", "--backend", "tensorrt"], 2,
          "TensorRT is not installed here", _bytes("m.engine", b"plan")),
    # ---- inspecting a model ------------------------------------------------------------------------------
    Probe("inspect", "a model file that is not ONNX", ["inspect", "{dir}/m.onnx"], 2, "not a readable ONNX model", _bytes("m.onnx", b"\x00junk")),
    Probe("inspect", "a checkpoint that is torn", ["inspect", "{dir}/m.pt"], 2, "not a readable torch checkpoint", _bytes("m.pt", b"PK\x03\x04")),
    Probe("inspect", "an engine without its sidecar", ["inspect", "{dir}/m.engine"], 2, "manifest sidecar is missing",
          _bytes("m.engine", b"plan")),
    Probe("inspect", "a file that is no model", ["inspect", "{dir}/notes.txt"], 2, "not an occ model", _write("notes.txt", "hi")),
    Probe("eval", "plots for an image protocol", ["eval", "{avid}", "--data", "irmnist:{dir}", "--plots", "{dir}/plots"], 2,
          "plots are drawn for video data"),
    # ---- benchmarks -------------------------------------------------------------------------------------
    Probe("bench", "a backend that does not exist", ["bench", "latency", "{avid}", "--backend", "nosuch"], 2, "unknown backend(s) 'nosuch'"),
    Probe("bench", "a batch of zero", ["bench", "latency", "{avid}", "--batch", "0"], 2, "--batch must be positive integers"),
    Probe("bench", "a frame size that is not HxW", ["bench", "latency", "{avid}", "--frame-size", "240by360"], 2,
          "--frame-size must look like 240x360"),
    Probe("bench", "a variant that cannot run here", ["bench", "latency", "{avid}", "--backend", "tensorrt", "--duration", "0.01"], 2,
          "tensorrt fp16 cpu: TensorRT is not installed here"),
    Probe("bench", "comparing a file that is not JSON", ["bench", "compare", "{dir}/a.json", "{dir}/a.json"], 2, "not a readable JSON file",
          _write("a.json", "{")),
    Probe("bench", "comparing JSON that is not a latency result", ["bench", "compare", "{dir}/a.json", "{dir}/a.json"], 2,
          "not an occ-bench/2 result", _write("a.json", "[1, 2]")),
    Probe("bench", "comparing runs of two different models", ["bench", "compare", "{dir}/a.json", "{dir}/b.json"], 2,
          "the two runs measured different models", _both(
              _write("a.json", '{"schema": "occ-bench/2", "model": "a.onnx", "model_sha256": "aa", "frame_size": [240, 360], "runs": []}'),
              _write("b.json", '{"schema": "occ-bench/2", "model": "b.onnx", "model_sha256": "bb", "frame_size": [240, 360], "runs": []}'))),
    Probe("bench", "a precision that does not exist", ["bench", "validate", "{avid}", "--data", "walkway", "--backend", "ort-cpu",
                                                       "--precision", "fp8"], 2, "--precision takes fp32, fp16"),
    Probe("bench", "MNIST digits that are not digits", ["bench", "mnist", "--mnist", "{dir}", "--digits", "1,x"], 2,
          "--digits must be digits 0-9"),
    Probe("bench", "a walkway benchmark for a method that does not exist", ["bench", "walkway", "--method", "gan", "--out", "{dir}/w"], 2,
          "method must be alocc or avid"),
    # ---- footage ------------------------------------------------------------------------------------
    Probe("data", "record into a folder that holds other files", ["data", "record", "{dir}/clip.avi", "--out", "{dir}", "--minutes", "1"], 2,
          "not empty; record into a new or empty folder", _write("clip.avi", "x")),
    Probe("data", "footage split that does not sum to 100", ["data", "info", "walkway", "--split", "70/10/10"], 2,
          "percentages summing to 100"),
]


def _copy(source: Path, target: Path) -> None:
    target.write_bytes(Path(source).read_bytes())


def _strip_manifest(folder: Path, models: dict) -> None:
    import onnx

    model = onnx.load(str(models["avid"]))
    del model.metadata_props[:]
    onnx.save(model, str(folder / "bare.onnx"))


@dataclass
class ProbeResult:
    probe: Probe
    code: int
    line: str
    lines: int


def run_probe(probe: Probe, folder: Path, models: dict[str, Path], invoke) -> ProbeResult:
    """Prepare, run through ``invoke(args) -> (exit code, output)``, and keep the answer's first line."""
    folder.mkdir(parents=True, exist_ok=True)
    values = {name: str(path) for name, path in models.items()}
    values["dir"] = str(folder)
    if probe.setup:
        probe.setup(folder, {**models})
    if (folder / "port").is_file():
        values["port"] = (folder / "port").read_text()
    for name in ("site.toml",):  # configuration files name the models and the folder too
        if (folder / name).is_file():
            (folder / name).write_text((folder / name).read_text().replace("{avid}", values["avid"]).replace("{dir}", values["dir"]))
    args = [arg.format(**values) for arg in probe.args]
    code, output = invoke(args)
    lines = [line for line in output.splitlines() if line.strip()]
    return ProbeResult(probe, code, lines[0] if lines else "", len(lines))


def anonymous(line: str, folder: Path, models: dict[str, Path]) -> str:
    """A message with this run's paths and ports replaced by stable names, for the document."""
    for name, path in sorted(models.items(), key=lambda item: -len(str(item[1]))):
        line = line.replace(str(path), f"{name.upper()}.{Path(path).suffix.lstrip('.')}" if name not in ("avid", "alocc") else
                            f"{name}.onnx")
    line = line.replace(str(folder), "DIR")
    return re.sub(r"127\.0\.0\.1:\d{4,5}", "127.0.0.1:PORT", line).replace("|", "\\|")


def markdown(results: list[tuple[ProbeResult, str]]) -> str:
    lines = ["# What occ does with bad input",
             "",
             "Every row is a probe a careful or a hostile user might try, run by `tests/test_reliability.py` through the CLI",
             "(`OCC_WRITE_RELIABILITY=1 .venv/bin/python -m pytest tests/test_reliability.py` rewrites this file from what occ",
             "answered; the test fails when the answers and this file differ). Exit code 2 is bad input: one line naming the",
             "file or option and the problem, no traceback, nothing written. The service's own faults (a full disk, a camera",
             "that goes away, a killed stream) are further down.",
             "",
             "| # | area | what the user did | exit | what occ answered |",
             "|---|---|---|---|---|"]
    for number, (result, answer) in enumerate(results, 1):
        lines.append(f"| {number} | {result.probe.area} | {result.probe.what} | {result.code} | `{answer}` |")
    return "\n".join(lines) + "\n"
