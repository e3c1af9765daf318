"""The model behind the server: one engine session (onnxruntime or OpenVINO), the request checks of ``onnxdeploy run``
(name, dtype, shape, each refused with one line), a dynamic batcher and latency statistics.

Nothing here knows HTTP or gRPC: :mod:`onnxdeploy.serving._server` turns a request into arrays, calls
:meth:`Engine.check` and :meth:`Engine.infer` (or :meth:`Batcher.submit`), and turns :class:`BadRequest` into a 400.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from onnxdeploy.errors import UserInputError

# Open Inference Protocol v2 datatypes <-> numpy
V2_DTYPES = {"BOOL": "bool", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64"}
NUMPY_TO_V2 = {v: k for k, v in V2_DTYPES.items()}


INLINE_BELOW_S = 0.0005  # an engine call faster than this runs on the event loop: a thread hop costs more


class BadRequest(ValueError):
    """A request the model cannot take (unknown input, wrong dtype or shape, malformed body): one line, a 400."""


@dataclass
class TensorSpec:
    """One declared input or output: its v2 datatype and dims (-1 where dynamic)."""

    name: str
    datatype: str
    shape: list[int]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(V2_DTYPES[self.datatype])

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


def v2_datatype(dtype) -> str:
    name = np.dtype(dtype).name
    if name not in NUMPY_TO_V2:
        raise UserInputError(f"dtype {name} has no Open Inference Protocol datatype")
    return NUMPY_TO_V2[name]


def _onnx_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    from onnxdeploy import input_specs, output_specs

    def spec(s) -> TensorSpec:
        return TensorSpec(s.name, v2_datatype(s.dtype), [d if isinstance(d, int) and d >= 0 else -1 for d in s.shape])

    return [spec(s) for s in input_specs(str(path))], [spec(s) for s in output_specs(str(path))]


def _openvino_specs(compiled) -> tuple[list[TensorSpec], list[TensorSpec]]:
    def spec(port) -> TensorSpec:
        dims = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
        return TensorSpec(port.get_any_name(), v2_datatype(port.get_element_type().to_dtype()), dims)

    return [spec(p) for p in compiled.inputs], [spec(p) for p in compiled.outputs]


class Engine:
    """One model on one engine: ``infer(feeds) -> outputs``, thread-safe (onnxruntime and OpenVINO run concurrent
    calls; OpenVINO through one infer request per thread)."""

    def __init__(self, path: str | os.PathLike, *, backend: str = "onnxruntime", threads: int | None = None):
        self.path = Path(path)
        self.backend = backend
        if backend == "onnxruntime":
            from onnxdeploy import create_session

            session = create_session(str(self.path), threads=threads)
            self.inputs, self.outputs = _onnx_specs(self.path)
            names = [o.name for o in session.get_outputs()]
            self._run: Callable = lambda feeds: dict(zip(names, session.run(None, dict(feeds))))
        elif backend == "openvino":
            self._run = self._openvino(threads)
        else:
            raise UserInputError(f"unknown serving backend {backend!r}", hint="use onnxruntime or openvino")

    def _openvino(self, threads: int | None) -> Callable:
        from onnxdeploy.targets.openvino import compile_artifact

        # an IR runs at the precision and settings it was built and verified with; an .onnx at f32, as verified
        compiled = compile_artifact(self.path, threads=threads,
                                    hint=None if str(self.path).endswith(".xml") else "f32")
        self.inputs, self.outputs = _openvino_specs(compiled)
        local = threading.local()

        def run(feeds):
            if not hasattr(local, "request"):
                local.request = compiled.create_infer_request()
            result = local.request.infer({p: feeds[p.get_any_name()] for p in compiled.inputs})
            return {p.get_any_name(): np.array(result[p]) for p in compiled.outputs}

        return run

    @property
    def batchable(self) -> bool:
        """True when every input and output has a dynamic first dim (requests can be stacked along it)."""
        return all(s.shape and s.shape[0] == -1 for s in [*self.inputs, *self.outputs])

    def check(self, feeds: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`BadRequest` naming the first input that does not match the model's declaration."""
        from onnxdeploy import did_you_mean

        declared = {s.name: s for s in self.inputs}
        for name, array in feeds.items():
            if name not in declared:
                raise BadRequest(f"unknown input {name!r}; " + (did_you_mean(name, list(declared), what="inputs")
                                                                 or f"the model takes {', '.join(declared)}"))
        for spec in self.inputs:
            if spec.name not in feeds:
                raise BadRequest(f"input {spec.name!r} is missing; the model takes {', '.join(declared)}")
            array = feeds[spec.name]
            if array.dtype != spec.dtype:
                raise BadRequest(f"input {spec.name!r} is {v2_datatype(array.dtype)}, the model takes {spec.datatype}")
            if len(array.shape) != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape)):
                raise BadRequest(f"input {spec.name!r} has shape {list(array.shape)}, the model takes {spec.shape} "
                                 "(-1: any size)")

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(feeds)


class Stats:
    """Request counts and latencies (bounded window) of one model, in Triton's statistics shape plus percentiles."""

    def __init__(self, window: int = 20000):
        self.success = 0
        self.failure = 0
        self.success_ns = 0
        self.compute_ns = 0
        self.executions = 0
        self.batch_rows: collections.Counter = collections.Counter()
        self.latencies: collections.deque = collections.deque(maxlen=window)
        self._lock = threading.Lock()

    def record(self, seconds: float, ok: bool) -> None:
        with self._lock:
            if ok:
                self.success += 1
                self.success_ns += int(seconds * 1e9)
                self.latencies.append(seconds)
            else:
                self.failure += 1

    def record_execution(self, rows: int, seconds: float) -> None:
        with self._lock:
            self.executions += 1
            self.compute_ns += int(seconds * 1e9)
            self.batch_rows[rows] += 1

    def to_dict(self, name: str) -> dict:
        with self._lock:
            lat = np.array(self.latencies) * 1e3 if self.latencies else None
            pct = {f"p{q}_ms": (round(float(np.percentile(lat, q)), 4) if lat is not None else None)
                   for q in (50, 90, 99)}
            return {"model_stats": [{
                "name": name, "version": "1", "inference_count": self.success, "execution_count": self.executions,
                "inference_stats": {"success": {"count": self.success, "ns": self.success_ns},
                                    "fail": {"count": self.failure, "ns": 0},
                                    "compute_infer": {"count": self.executions, "ns": self.compute_ns}},
                "batch_stats": [{"batch_size": rows, "compute_infer": {"count": n}}
                                for rows, n in sorted(self.batch_rows.items())],
                "latency": {**pct, "window": len(self.latencies)},
            }]}


NOT_BATCHABLE = ("--max-batch needs a model whose inputs and outputs all have a dynamic first dim",
                 "export with a dynamic batch dim (--dynamic input:0=batch), or drop --max-batch")


def check_batchable(path: str | os.PathLike) -> None:
    """Refuse dynamic batching for an ONNX model whose inputs or outputs have a fixed first dim."""
    ins, outs = _onnx_specs(Path(path))
    if not all(s.shape and s.shape[0] == -1 for s in [*ins, *outs]):
        raise UserInputError(NOT_BATCHABLE[0], hint=NOT_BATCHABLE[1])


class Batcher:
    """Dynamic batching: requests that arrive while the engine is busy are stacked along the first dim (up to
    ``max_batch`` rows, same trailing shapes and dtypes) and run as one call; each gets its own rows back.

    No timer: a lone request runs at once, so batching costs nothing at concurrency 1 (Triton's
    ``max_queue_delay_microseconds: 0``); under load the queue fills while the previous batch runs."""

    def __init__(self, engine: Engine, max_batch: int, stats: Stats, executor=None):
        if not engine.batchable:
            raise UserInputError(NOT_BATCHABLE[0], hint=NOT_BATCHABLE[1])
        self.engine, self.max_batch, self.stats, self.executor = engine, max_batch, stats, executor
        self.pending: collections.deque = collections.deque()
        self.running = False
        self.call_s: float | None = None  # moving average of one engine call

    def _timed(self, feeds):
        t0 = time.perf_counter()
        outputs = self.engine.infer(feeds)
        return outputs, time.perf_counter() - t0

    async def submit(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((dict(feeds), future))
        if not self.running:
            self.running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _take(self) -> list:
        first_feeds, _ = self.pending[0]
        key = {k: (v.shape[1:], v.dtype) for k, v in first_feeds.items()}
        batch, rows, keep = [], 0, collections.deque()
        while self.pending:
            feeds, future = self.pending.popleft()
            n = next(iter(feeds.values())).shape[0]
            fits = {k: (v.shape[1:], v.dtype) for k, v in feeds.items()} == key and rows + n <= self.max_batch
            if fits or not batch:
                batch.append((feeds, future, n))
                rows += n
            else:
                keep.append((feeds, future))
        self.pending.extendleft(reversed(keep))
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.pending:
                batch = self._take()
                names = list(batch[0][0])
                feeds = {k: (np.concatenate([b[0][k] for b in batch]) if len(batch) > 1 else batch[0][0][k])
                         for k in names}
                try:
                    if self.call_s is not None and self.call_s < INLINE_BELOW_S:
                        outputs, elapsed = self._timed(feeds)  # a thread hop would cost more than the call
                    else:
                        outputs, elapsed = await loop.run_in_executor(self.executor, self._timed, feeds)
                except Exception as err:  # noqa: BLE001 - every waiting request gets the engine's error
                    for _, future, _ in batch:
                        if not future.done():
                            future.set_exception(err)
                    continue
                self.call_s = elapsed if self.call_s is None else 0.9 * self.call_s + 0.1 * elapsed
                self.stats.record_execution(sum(n for _, _, n in batch), elapsed)
                offset = 0
                for _, future, n in batch:
                    if not future.done():
                        future.set_result({k: v[offset:offset + n] for k, v in outputs.items()})
                    offset += n
        finally:
            self.running = False
