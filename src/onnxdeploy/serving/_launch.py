"""Start and stop the server process: :func:`start_server` runs :mod:`onnxdeploy.serving._server` in a child that
dies with us (:func:`onnxdeploy._proc.start_child`), waits for ``/v2/health/ready`` and returns a handle."""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from onnxdeploy.errors import OnnxDeployError, UserInputError

DEFAULT_HTTP_PORT = 8000  # Triton's ports: a tritonclient pointed at localhost:8000/8001 finds us
DEFAULT_GRPC_PORT = 8001
BACKENDS = ("onnxruntime", "openvino")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class ServedArtifact:
    """What to serve: the artefact, its engine and the model name clients use."""

    path: Path
    backend: str
    name: str

    def to_dict(self) -> dict:
        return {"path": str(self.path), "backend": self.backend, "name": self.name}


def _model_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._-")
    return name or "model"


def _in_folder(folder: Path) -> Path | None:
    """The artefact of a deploy output folder (``deploy.json``'s final artefact) or of a Triton repository."""
    report = folder / "deploy.json"
    if report.exists():
        try:
            final = json.loads(report.read_text()).get("final_artifact")
        except ValueError:
            final = None
        if final:
            path = Path(final) if Path(final).is_absolute() or Path(final).exists() else folder / Path(final).name
            if path.is_dir():
                return _in_folder(path)
            if path.exists():
                return path
    found = sorted(folder.glob("*/1/model.onnx")) + sorted(folder.glob("*/1/model.xml"))
    if found:
        return found[0]
    onnx_files = sorted(folder.glob("*.onnx"))
    return onnx_files[-1] if len(onnx_files) == 1 else None


def resolve_model(model: str | os.PathLike, *, backend: str | None = None, name: str | None = None) -> ServedArtifact:
    """The artefact to serve for a model file (``.onnx``, OpenVINO ``.xml``), a ``deploy`` output folder or a Triton
    repository written by ``convert --target triton``."""
    path = Path(model)
    if not path.exists():
        raise UserInputError(f"{path}: no such file or folder")
    if path.is_dir():
        found = _in_folder(path)
        if found is None:
            raise UserInputError(f"{path}: no model to serve in this folder",
                                 hint="give an .onnx or .xml file, a `deploy` output folder (with deploy.json) or a "
                                      "Triton repository (NAME/1/model.onnx)")
        default_name = found.parent.parent.name if found.parent.name == "1" else path.resolve().name
        path = found
    else:
        default_name = path.stem
    if path.suffix not in (".onnx", ".xml"):
        raise UserInputError(f"{path}: cannot serve a {path.suffix or 'suffix-less'} file",
                             hint="serve an .onnx model or an OpenVINO .xml")
    engine = backend or ("openvino" if path.suffix == ".xml" else "onnxruntime")
    if engine not in BACKENDS:
        from onnxdeploy._suggest import did_you_mean

        raise UserInputError(f"unknown backend {engine!r}", hint=did_you_mean(engine, BACKENDS, what="backends"))
    if engine == "onnxruntime" and path.suffix == ".xml":
        raise UserInputError(f"{path}: onnxruntime cannot run an OpenVINO IR", hint="use --backend openvino")
    return ServedArtifact(path, engine, _model_name(name or default_name))


@dataclass
class Server:
    """A running server process: its PID, addresses and log; ``stop()`` ends it (and everything it started)."""

    pid: int
    host: str
    http_port: int
    grpc_port: int | None
    model: ServedArtifact
    max_batch: int
    log: str
    _proc: object = field(default=None, repr=False)
    _own_log: bool = field(default=False, repr=False)  # a temporary log of ours: removed by stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.http_port}"

    @property
    def grpc_url(self) -> str | None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return None if self.grpc_port is None else f"{host}:{self.grpc_port}"

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(Path(self.log).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll ``/v2/health/ready`` until the model answers; raise with the server's last log lines if it died."""
        deadline = time.monotonic() + timeout
        url = f"http://{self.url}/v2/health/ready"
        while time.monotonic() < deadline:
            if not self.alive():
                self._own_log = False  # kept: the hint names it
                self.stop()
                raise OnnxDeployError(f"the server exited before it was ready: {self.log_tail(1) or 'no output'}",
                                      hint=f"its log: {self.log}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self._own_log = False  # kept: the hint names it
        self.stop()
        raise OnnxDeployError(f"the server was not ready within {timeout:g} s", hint=f"its log: {self.log}")

    def stop(self) -> int | None:
        from onnxdeploy._proc import stop_child

        code = stop_child(self._proc, grace=3.0) if self._proc is not None else None
        if self._own_log:
            Path(self.log).unlink(missing_ok=True)
        return code

    def to_dict(self) -> dict:
        return {"pid": self.pid, "http": f"http://{self.url}", "grpc": self.grpc_url, "model": self.model.to_dict(),
                "max_batch": self.max_batch, "log": self.log}

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def check_host(host: str, *, allow_remote: bool = True) -> None:
    if host not in LOOPBACK and not allow_remote:
        raise UserInputError(f"{host} is not a loopback address", hint="pass --allow-remote to reach another host")


def start_server(
    model: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int | None = DEFAULT_HTTP_PORT,
    grpc_port: int | None = DEFAULT_GRPC_PORT,
    backend: str | None = None,
    max_batch: int = 0,
    name: str | None = None,
    threads: int | None = None,
    grpc: bool = True,
    ready_timeout: float = 120.0,
    log: str | os.PathLike | None = None,
) -> Server:
    """Serve ``model`` (file, deploy folder or Triton repository) on the Open Inference Protocol v2 in a child
    process bound to ``host``; returns once ``/v2/health/ready`` answers. ``port=0``/``grpc_port=0``: free ports.
    ``max_batch`` > 1 batches concurrent requests along the first dim."""
    from onnxdeploy._proc import start_child

    served = resolve_model(model, backend=backend, name=name)
    if max_batch < 0:
        raise UserInputError(f"--max-batch must be 0 (off) or a positive number, got {max_batch}")
    if max_batch > 1 and served.path.suffix == ".onnx":
        from onnxdeploy.serving._engine import check_batchable

        check_batchable(served.path)
    if served.backend == "openvino":
        from onnxdeploy.errors import require

        require("openvino", extra="openvino", purpose="serving on OpenVINO")
    http = port or free_port(host)
    grpc_at = (grpc_port or free_port(host)) if grpc else None
    for p in (http, grpc_at):
        if p is not None and not 0 < p < 65536:
            raise UserInputError(f"port {p} is out of range (1-65535)")
    if grpc_at == http:
        raise UserInputError(f"the HTTP and gRPC ports are both {http}", hint="give --grpc-port another port")
    config = {"model": str(served.path.resolve()), "name": served.name, "backend": served.backend, "host": host,
              "http_port": http, "grpc_port": grpc_at, "max_batch": max_batch, "threads": threads}
    own_log = log is None
    if log is None:
        handle, log = tempfile.mkstemp(prefix=f"onnxdeploy-serve-{served.name}-", suffix=".log")
        os.close(handle)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as sink:
        proc = start_child([sys.executable, "-m", "onnxdeploy.serving._server", json.dumps(config)], env=env,
                           stdout=sink, stderr=sink)
    server = Server(proc.pid, host, http, grpc_at, served, max_batch, str(log), proc, own_log)
    server.wait_ready(ready_timeout)
    return server
