"""A real Triton Inference Server on this machine, for the tests and ``occ-bench triton``.

The ``nvidia-pytriton`` wheel (``pip install 'occ[triton-server]'``; x86-64 Linux, glibc 2.35 or
newer) ships NVIDIA's ``tritonserver`` binary with its Python backend, and nothing else: the
ONNX Runtime and TensorRT backends come only in NVIDIA's containers. So the repository served
here is the one ``occ-export --triton`` writes (:func:`occ.export.triton.write_triton_repository`,
the same function, so the two cannot drift) with one line changed, ``backend: "python"``, and a
``1/model.py`` (:mod:`occ.benchmarks.triton_onnx_model`) that runs the same ``1/model.onnx`` with
ONNX Runtime CPU. Tensor names, types, shapes, reshapes, dynamic batching, instance groups and
the parameters that carry the manifest are served as written.

The server is started through PyTriton's own launcher (:class:`pytriton.server.triton_server.TritonServer`:
its libraries on the loader path, this Python environment first on ``PATH`` so the backend's
stub runs in it, the process ended with its parent) with the Python backend's stub built for
this interpreter's version (it loads the system's shared libpython of that version), and listens
on loopback ports only.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from occ.export.triton import TritonExportError, TritonRepository, parse_config, write_triton_repository

PYTHON_MODEL = Path(__file__).with_name("triton_onnx_model.py")
EXPORTED_BACKEND_LINE = 'backend: "onnxruntime"'
SERVED_BACKEND_LINE = 'backend: "python"'
INSTALL_HINT = "pip install 'occ[triton-server]'"


class TritonServerError(RuntimeError):
    """The local server cannot be prepared, started or reached; one line says why."""


def server_problem() -> str | None:
    """Why PyTriton's tritonserver cannot run here (None: it can)."""
    if importlib.util.find_spec("pytriton") is None:
        return f"nvidia-pytriton (PyTriton's tritonserver) is not installed: {INSTALL_HINT}"
    from pytriton.utils.distribution import get_root_module_path, get_stub_path

    binary = get_root_module_path() / "tritonserver" / "bin" / "tritonserver"
    if not binary.is_file():
        return f"{binary}: PyTriton's wheel has no tritonserver binary here"
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = Path(get_stub_path(version))
    if not stub.is_file():
        return f"PyTriton ships no Python-backend stub for Python {version}"
    missing = _missing_libraries(stub)
    if missing:
        return (f"the Python backend's stub cannot load {', '.join(missing)} (the stub embeds the system's shared "
                f"libpython{version}; Debian: apt-get install libpython{version})")
    return None


def _missing_libraries(binary: Path) -> list[str]:
    """Shared libraries the dynamic loader does not find for ``binary`` (none when ldd is absent)."""
    if shutil.which("ldd") is None:
        return []
    try:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split("=>")[0].strip() for line in listing.splitlines() if "not found" in line]


def python_backend_repository(onnx_path: str | Path, repository: str | Path, name: str | None = None,
                              **options) -> TritonRepository:
    """The repository ``occ-export --triton`` writes, made servable by PyTriton's tritonserver.

    ``options`` go to :func:`~occ.export.triton.write_triton_repository` unchanged.
    """
    written = write_triton_repository(onnx_path, repository, name=name, **options)
    text = written.config_path.read_text()
    lines = text.splitlines(keepends=True)
    matches = [i for i, line in enumerate(lines) if line.strip() == EXPORTED_BACKEND_LINE]
    if len(matches) != 1:
        raise TritonExportError(f"{written.config_path}: expected one line {EXPORTED_BACKEND_LINE!r}, found {len(matches)}")
    # The one change: PyTriton's tritonserver has no ONNX Runtime backend (it comes only in NVIDIA's
    # containers), so its Python backend runs the same 1/model.onnx with ONNX Runtime CPU (model.py).
    lines[matches[0]] = lines[matches[0]].replace(EXPORTED_BACKEND_LINE, SERVED_BACKEND_LINE)
    served = "".join(lines)
    parse_config(served, str(written.config_path))
    written.config_path.write_text(served)
    shutil.copyfile(PYTHON_MODEL, written.model_dir / "1" / "model.py")
    return written


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def parse_prometheus(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text → ``{metric: {((label, value), ...): sample}}`` (comments skipped)."""
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    pattern = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
    for line in text.splitlines():
        match = pattern.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        pairs = tuple(sorted(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', labels or "")))
        samples.setdefault(name, {})[pairs] = float(value)
    return samples


@dataclass
class ServerPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> "ServerPorts":
        return cls(free_port(), free_port(), free_port())


class LocalTritonServer:
    """PyTriton's tritonserver over one model repository, on loopback ports.

    ``with LocalTritonServer(repository) as server:`` starts it and waits until every model is
    ready; :meth:`stop` then :meth:`start` restarts it on the same ports (clients see it go away
    and come back); :meth:`metrics` scrapes Triton's own ``/metrics``. Start it from a thread that
    outlives it: PyTriton's launcher has the server ended when the thread that started it exits.

    Args:
        repository: the model repository folder.
        ports: HTTP, gRPC and metrics ports (default: free ones, kept across restarts).
        startup_timeout_s: how long to wait for every model to be ready, seconds.
        exit_timeout_s: on stop, how long Triton keeps serving the requests in flight before it
            exits, seconds (Triton's ``--exit-timeout-secs``; its default, 30, is a long restart).
        environment: variables added to the server's environment (its models' ``model.py`` read them).
    """

    host = "127.0.0.1"

    def __init__(self, repository: str | Path, ports: ServerPorts | None = None, startup_timeout_s: float = 120.0,
                 exit_timeout_s: int = 5, environment: dict[str, str] | None = None):
        problem = server_problem()
        if problem:
            raise TritonServerError(problem)
        self.repository = Path(repository).resolve()
        if any(c.isspace() for c in str(self.repository)):  # PyTriton's launcher splits arguments on whitespace
            raise TritonServerError(f"{self.repository}: the repository path must not contain whitespace")
        self.ports = ports or ServerPorts.free()
        self.startup_timeout_s = startup_timeout_s
        self.exit_timeout_s = exit_timeout_s
        self.environment = dict(environment or {})
        self.starts = 0
        self._server = None
        self._workdir: Path | None = None

    @property
    def url(self) -> str:
        """The HTTP endpoint, ``host:port`` (what ``occ run --triton-url`` takes)."""
        return f"{self.host}:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    def _backends(self) -> Path:
        """The Python backend with the stub built for this interpreter (PyTriton's layout)."""
        from pytriton.utils.distribution import get_root_module_path, get_stub_path

        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="occ-tritonserver-"))
            backends = self._workdir / "backends"
            shutil.copytree(get_root_module_path() / "tritonserver" / "backends", backends,
                            ignore=shutil.ignore_patterns("__pycache__"))
            stub = backends / "python" / "triton_python_backend_stub"
            shutil.copy(get_stub_path(f"{sys.version_info[0]}.{sys.version_info[1]}"), stub)
            stub.chmod(0o755)
        return self._workdir / "backends"

    def start(self) -> "LocalTritonServer":
        from pytriton.server.triton_server_config import TritonServerConfig

        from pytriton.utils.distribution import get_libs_path, get_root_module_path

        if self.alive():
            return self
        # the launcher warns "exited with failure" at every stop (Triton exits non-zero on SIGINT); a
        # failure to start is reported here with the server's own words instead
        logging.getLogger("pytriton.server.triton_server").setLevel(logging.ERROR)
        config = TritonServerConfig()
        settings = {
            "model-repository": str(self.repository), "backend-directory": str(self._backends()),
            "http-address": self.host, "http-port": self.ports.http, "grpc-address": self.host, "grpc-port": self.ports.grpc,
            "metrics-address": self.host, "metrics-port": self.ports.metrics, "allow-gpu-metrics": "false",
            "exit-on-error": "true", "strict-readiness": "true", "exit-timeout-secs": self.exit_timeout_s,
            # the Python backend's shared-memory regions get a name of their own, so two servers never share one
            "backend-config": [f"python,shm-region-prefix-name=occ{os.getpid()}x{self.starts}x{self.ports.http}"],
        }
        for key, value in settings.items():
            config[key] = value
        launcher = _launcher_with(self.environment)
        self._server = launcher(path=get_root_module_path() / "tritonserver" / "bin" / "tritonserver", libs_path=get_libs_path(),
                                config=config, verbose=False)
        self._server.start()
        self.starts += 1
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise TritonServerError(f"tritonserver on {self.repository} exited while starting: {self._why()}")
            try:
                with urllib.request.urlopen(f"http://{self.url}/v2/health/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TritonServerError(f"tritonserver on {self.repository} not ready after {self.startup_timeout_s:.0f} s: {self._why()}")

    def _why(self) -> str:
        """The server's own words about a failure: its error lines and unavailable models."""
        logs = self.logs()
        lines = [line.strip(" |") for line in logs.splitlines()
                 if line.startswith(("E", "error")) or "UNAVAILABLE" in line or "failed to" in line.lower()]
        return " / ".join(re.sub(r"\s+", " ", line) for line in lines[-4:]) or (logs.strip().splitlines() or ["no output"])[-1]

    def logs(self) -> str:
        return self._server.logs() if self._server is not None else ""

    def alive(self) -> bool:
        return self._server is not None and self._server.is_alive()

    def stop(self) -> None:
        """Stop the server (SIGINT: in-flight requests finish) and wait for it to exit."""
        if self._server is not None:
            self._server.stop()

    def metrics(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        """Triton's ``/metrics``, parsed (:func:`parse_prometheus`)."""
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=10) as reply:
                return parse_prometheus(reply.read().decode())
        except (urllib.error.URLError, OSError) as exc:
            raise TritonServerError(f"{self.metrics_url}: no metrics ({exc})") from None

    def close(self) -> None:
        self.stop()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "LocalTritonServer":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()


def _launcher_with(environment: dict[str, str]):
    """PyTriton's launcher, with ``environment`` added to the environment it builds for the server."""
    from pytriton.server.triton_server import TritonServer

    class Launcher(TritonServer):
        def _get_env(self) -> dict:
            return {**super()._get_env(), **environment}

    return Launcher


def model_counter(samples: dict[str, dict[tuple[tuple[str, str], ...], float]], metric: str, model: str) -> float:
    """One model's value of a Triton counter (summed over its versions; 0 when absent)."""
    return sum(value for labels, value in samples.get(metric, {}).items() if ("model", model) in labels)
