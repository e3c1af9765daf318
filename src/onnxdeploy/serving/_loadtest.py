"""``loadtest``: drive an Open Inference Protocol v2 server (ours, Triton, KServe) with tritonclient at a fixed
concurrency, for a bounded number of requests or seconds, and report latency percentiles, throughput and errors.

Like perf_analyzer, each of ``concurrency`` workers keeps one request in flight (closed loop) with its own client;
latency is measured by us around each call (``time.perf_counter``), after a warm-up that is not counted.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from onnxdeploy.errors import UserInputError, require

MAX_REQUESTS = 1_000_000
MAX_DURATION_S = 3600.0
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadTestReport:
    """What a load test measured (milliseconds, requests per second)."""

    url: str
    model: str
    protocol: str
    concurrency: int
    requests: int
    errors: int
    seconds: float
    throughput: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    inputs: dict = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}

    def summary(self) -> str:
        return (f"{self.requests} requests in {self.seconds:.2f} s at concurrency {self.concurrency}: "
                f"{self.throughput:.1f}/s, p50 {self.p50_ms or 0:.2f} ms, p90 {self.p90_ms or 0:.2f} ms, "
                f"p99 {self.p99_ms or 0:.2f} ms, {self.errors} errors")


def split_url(url: str, protocol: str) -> tuple[str, str]:
    """``(host, "host:port")`` of ``url`` (``http://h:p``, ``h:p`` or ``grpc://h:p``)."""
    text = url if "://" in url else f"{protocol}://{url}"
    parts = urllib.parse.urlsplit(text)
    if not parts.hostname:
        raise UserInputError(f"{url}: not a server address", hint="give HOST:PORT, e.g. 127.0.0.1:8000")
    try:
        port = parts.port or (8001 if protocol == "grpc" else 8000)
    except ValueError as err:
        raise UserInputError(f"{url}: the port is not a number in 1-65535") from err
    host = parts.hostname
    return host, f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _client(protocol: str, address: str, timeout: float):
    if protocol == "http":
        module = require("tritonclient.http", extra="serve", purpose="loadtest over HTTP")
        return module, module.InferenceServerClient(address, connection_timeout=timeout, network_timeout=timeout)
    module = require("tritonclient.grpc", extra="serve", purpose="loadtest over gRPC")
    return module, module.InferenceServerClient(address)


def _metadata(module, client, protocol: str, model: str, address: str) -> list[dict]:
    from tritonclient.utils import InferenceServerException

    try:
        meta = client.get_model_metadata(model, as_json=True) if protocol == "grpc" else \
            client.get_model_metadata(model)
    except InferenceServerException as err:
        raise UserInputError(f"{address}: model {model!r} is not served there: {err.message().splitlines()[0]}",
                             hint="`curl http://HOST:PORT/v2/models/NAME` lists a model's metadata") from err
    except Exception as err:  # noqa: BLE001 - connection refused, DNS, ... from two client libraries
        raise UserInputError(f"{address}: no server answers ({type(err).__name__}: {str(err).splitlines()[0]})",
                             hint="start one with `onnxdeploy serve MODEL`") from err
    return [{"name": i["name"], "datatype": i["datatype"], "shape": [int(d) for d in i["shape"]]}
            for i in meta["inputs"]]


def synthesize(inputs: list[dict], dims: Mapping[int, int] | None = None, seed: int = 0,
               batch: int = 1) -> dict[str, np.ndarray]:
    """Random arrays matching v2 metadata: dynamic dims (-1) become ``batch`` at position 0 and 1 elsewhere."""
    from onnxdeploy.serving._engine import V2_DTYPES

    rng = np.random.default_rng(seed)
    out = {}
    for spec in inputs:
        if spec["datatype"] not in V2_DTYPES:
            raise UserInputError(f"input {spec['name']!r} is {spec['datatype']}: loadtest sends numeric tensors only")
        shape = [d if d >= 0 else (batch if i == 0 else 1) for i, d in enumerate(spec["shape"])]
        dtype = np.dtype(V2_DTYPES[spec["datatype"]])
        if dtype.kind == "f":
            out[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            out[spec["name"]] = rng.integers(0, 2, shape).astype(bool)
        else:
            out[spec["name"]] = rng.integers(0, 4, shape).astype(dtype)
    return out


def loadtest(
    url: str,
    model: str,
    *,
    concurrency: int = 1,
    requests: int | None = None,
    duration: float | None = None,
    protocol: str = "http",
    binary: bool = True,
    feeds: Mapping[str, np.ndarray] | None = None,
    batch: int = 1,
    seed: int = 0,
    warmup: int = 2,
    timeout: float = 60.0,
    allow_remote: bool = False,
) -> LoadTestReport:
    """Send ``requests`` inferences (default 100), or as many as fit in ``duration`` seconds, to ``model`` at ``url``
    from ``concurrency`` closed-loop workers; inputs are ``feeds`` or random arrays from the model's metadata.
    Only loopback addresses unless ``allow_remote``."""
    if protocol not in ("http", "grpc"):
        raise UserInputError(f"--protocol must be http or grpc, got {protocol!r}")
    if requests is not None and duration is not None:
        raise UserInputError("give --requests or --duration, not both")
    if not 1 <= concurrency <= 1024:
        raise UserInputError(f"--concurrency must be 1-1024, got {concurrency}")
    if requests is not None and not 1 <= requests <= MAX_REQUESTS:
        raise UserInputError(f"--requests must be 1-{MAX_REQUESTS}, got {requests}")
    if duration is not None and not 0 < duration <= MAX_DURATION_S:
        raise UserInputError(f"--duration must be in (0, {MAX_DURATION_S:g}] seconds, got {duration}")
    if requests is None and duration is None:
        requests = 100
    host, address = split_url(url, protocol)
    if host not in LOOPBACK and not allow_remote:
        raise UserInputError(f"{host} is not a loopback address: loadtest sends load only to this machine by default",
                             hint="pass --allow-remote to load-test another host you own")
    module, probe = _client(protocol, address, timeout)
    specs = _metadata(module, probe, protocol, model, address)
    data = dict(feeds) if feeds is not None else synthesize(specs, seed=seed, batch=batch)
    run = _Run(module, protocol, address, model, data, binary, timeout, requests, duration)
    run.go(concurrency, warmup)
    lat = np.array(run.latencies) * 1e3
    pct = {q: (float(np.percentile(lat, q)) if lat.size else None) for q in (50, 90, 99)}
    return LoadTestReport(
        url=address, model=model, protocol=protocol, concurrency=concurrency, requests=run.done, errors=run.errors,
        seconds=run.seconds, throughput=(lat.size / run.seconds) if run.seconds else 0.0, p50_ms=pct[50],
        p90_ms=pct[90], p99_ms=pct[99], mean_ms=float(lat.mean()) if lat.size else None,
        max_ms=float(lat.max()) if lat.size else None,
        inputs={k: [list(v.shape), str(v.dtype)] for k, v in data.items()}, error_samples=run.samples)


class _Run:
    """The workers of one load test and what they counted (a lock around the counters)."""

    def __init__(self, module, protocol, address, model, data, binary, timeout, requests, duration):
        self.module, self.protocol, self.address, self.model = module, protocol, address, model
        self.data, self.binary, self.timeout = data, binary, timeout
        self.requests, self.duration = requests, duration
        self.latencies: list[float] = []
        self.errors = 0
        self.done = 0
        self.issued = 0
        self.samples: list[str] = []
        self.seconds = 0.0
        self.lock = threading.Lock()

    def _request(self):
        m = self.module
        inputs = []
        for name, array in self.data.items():
            tensor = m.InferInput(name, list(array.shape), m.np_to_triton_dtype(array.dtype))
            if self.protocol == "http":
                tensor.set_data_from_numpy(array, binary_data=self.binary)
            else:
                tensor.set_data_from_numpy(array)
            inputs.append(tensor)
        return inputs

    def _take(self, deadline: float) -> bool:
        with self.lock:
            if self.requests is not None:
                if self.issued >= self.requests:
                    return False
                self.issued += 1
                return True
            return time.perf_counter() < deadline

    def worker(self, warmup: int, deadline_box: list) -> None:
        _, client = _client(self.protocol, self.address, self.timeout)
        inputs = self._request()
        kwargs = {"client_timeout": self.timeout} if self.protocol == "grpc" else {"timeout": int(self.timeout)}
        for _ in range(warmup):
            try:
                client.infer(self.model, inputs, **kwargs)
            except Exception:  # noqa: BLE001 - counted in the measured requests
                break
        self.barrier.wait()
        while self._take(deadline_box[0]):
            start = time.perf_counter()
            try:
                client.infer(self.model, inputs, **kwargs)
                ok, why = True, None
            except Exception as err:  # noqa: BLE001 - an error is a result of the load test
                ok, why = False, f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            elapsed = time.perf_counter() - start
            with self.lock:
                self.done += 1
                if ok:
                    self.latencies.append(elapsed)
                else:
                    self.errors += 1
                    if why not in self.samples and len(self.samples) < 3:
                        self.samples.append(why)
        close = getattr(client, "close", None)
        if close:
            close()

    def go(self, concurrency: int, warmup: int) -> None:
        self.barrier = threading.Barrier(concurrency + 1)
        box = [float("inf")]
        threads = [threading.Thread(target=self.worker, args=(warmup, box), daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        self.barrier.wait()
        start = time.perf_counter()
        box[0] = start + self.duration if self.duration is not None else float("inf")
        for t in threads:
            t.join()
        self.seconds = time.perf_counter() - start
