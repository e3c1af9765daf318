"""Capture intermediate tensors: expose them as outputs of an in-memory copy and run ONE onnxruntime session.

The model is serialized once; each session gets those bytes followed by a tiny ``ModelProto`` holding only the
extra graph outputs (and Casts). Protobuf merges a repeated embedded message, so onnxruntime parses the model with
the outputs appended, and the weights are never copied through Python objects again.

With a memory budget the tensors are split into batches of bounded estimated size (shape inference with the real
input shapes), one session and run per batch, and each batch is written to the .npz before the next is computed.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

import numpy as np

from onnxdeploy import _io as io
from onnxdeploy.debug._budget import batches as _batches
from onnxdeploy.debug._budget import parse_size
from onnxdeploy.debug._graph import ValueSite, main_values, nested_reason, nested_values, unknown_name_error
from onnxdeploy.debug._npz import NpzWriter, storable
from onnxdeploy._run import Inputs

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir


ALL = "all"
Selection = Union[None, str, Sequence[str]]

# onnxruntime cannot hand these to numpy: fetch them through a lossless Cast, then view them with ml_dtypes
_CAST = {
    "tensor(bfloat16)": (1, "bfloat16"),
    "tensor(float8e4m3fn)": (1, "float8_e4m3fn"),
    "tensor(float8e4m3fnuz)": (1, "float8_e4m3fnuz"),
    "tensor(float8e5m2)": (1, "float8_e5m2"),
    "tensor(float8e5m2fnuz)": (1, "float8_e5m2fnuz"),
    "tensor(float4e2m1)": (1, "float4_e2m1fn"),
    "tensor(int4)": (3, "int4"),
    "tensor(uint4)": (2, "uint4"),
}
_CAST_SUFFIX = "__onnxdeploy_probe"


@dataclass
class TensorInfo:
    """One captured tensor: where it comes from and what it holds."""

    name: str
    node: str | None
    op: str | None
    shape: tuple[int, ...]
    dtype: str
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    nonfinite: int = 0
    run: int = 0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["shape"] = list(self.shape)
        return d


@dataclass
class SkippedTensor:
    name: str
    reason: str

    def to_dict(self) -> dict:
        return {"name": self.name, "reason": self.reason}


@dataclass
class ProbeResult(Mapping):
    """Captured tensors by name (a read-only dict), plus per-tensor facts and what could not be captured."""

    tensors: dict[str, np.ndarray]
    infos: list[TensorInfo]
    skipped: list[SkippedTensor] = field(default_factory=list)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    runs: int = 1
    seconds: float = 0.0
    path: Path | None = None
    max_memory: int | None = None

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.tensors[name]
        except KeyError:
            raise unknown_name_error(name, self.tensors, what="captured tensor") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.tensors)

    def __len__(self) -> int:
        return len(self.tensors)

    def info(self, name: str) -> TensorInfo:
        for i in self.infos:
            if i.name == name:
                return i
        raise unknown_name_error(name, [i.name for i in self.infos], what="captured tensor")

    def to_dict(self) -> dict:
        return {
            "runs": self.runs,
            "seconds": self.seconds,
            "path": str(self.path) if self.path else None,
            "max_memory": self.max_memory,
            "tensors": [i.to_dict() for i in self.infos],
            "skipped": [s.to_dict() for s in self.skipped],
        }


def select(model: "onnx.ModelProto", tensors: Selection) -> tuple[list[str], list[SkippedTensor], dict[str, ValueSite]]:
    """Resolve the requested names: (capturable names in topological order, skipped ones, all main-graph sites)."""
    sites = main_values(model)
    nested = nested_values(model)
    skipped: list[SkippedTensor] = []
    if tensors is None or tensors == ALL:
        names = [s.name for s in sites.values() if s.kind == "node"]
        skipped = [SkippedTensor(n.name, nested_reason(n)) for n in nested.values()]
        return names, skipped, sites
    if isinstance(tensors, str):
        tensors = [tensors]
    wanted: list[str] = []
    for name in tensors:
        if name in sites:
            wanted.append(name)
        elif name in nested:
            skipped.append(SkippedTensor(name, nested_reason(nested[name])))
        else:
            raise unknown_name_error(name, [*sites, *nested])
    order = {name: (site.index, i) for i, (name, site) in enumerate(sites.items())}
    names = sorted(dict.fromkeys(wanted), key=lambda n: order[n])
    return names, skipped, sites


def probe(
    model: io.ModelLike,
    *,
    tensors: Selection = None,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    input_files: Mapping[str, str | os.PathLike] | None = None,
    npz: str | os.PathLike | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    providers: Sequence[str] | None = None,
    optimization_level: str | None = None,
    max_memory: int | str | None = None,
    out: str | os.PathLike | None = None,
    keep: bool | None = None,
) -> ProbeResult:
    """Capture intermediate tensors of ``model`` (all node outputs by default, or the names in ``tensors``).

    ``inputs`` (an :class:`~onnxdeploy._run.Inputs`, or arrays by name) says what to feed; the older keywords
    ``input_files``, ``npz``, ``dims``, ``shapes``, ``seed`` still work and are folded into it. One session computes all of them; with
    ``max_memory`` (bytes or "2GB") they are captured in several runs whose tensors fit the budget. ``out`` writes
    an .npz (incrementally, renamed into place at the end). ``keep`` (default: unless ``max_memory`` and ``out``
    are both given) keeps the arrays in the result, which is a read-only dict of them.
    """
    from onnxdeploy._run import prepare_inputs

    start = time.perf_counter()
    budget = parse_size(max_memory)
    if keep is None:
        keep = not (budget and out is not None)
    source = _Source(model)
    names, skipped, sites = select(source.proto, tensors)
    given = Inputs.merge(inputs, files=input_files, npz=npz, dims=dims, shapes=shapes, seed=seed)
    feeds = prepare_inputs(source.proto, inputs=given)
    direct = [n for n in names if sites[n].kind != "node"]
    names = [n for n in names if sites[n].kind == "node"]
    batches = _batches(source.proto, feeds, names, budget) if budget else [names]

    result = ProbeResult({}, [], skipped, feeds, runs=0, path=Path(out) if out else None, max_memory=budget)
    writer = NpzWriter(out) if out is not None else None
    try:
        for name in direct:  # graph inputs and initializers: no run needed
            value = feeds[name] if sites[name].kind == "input" else source.initializer(name)
            _record(result, sites[name], value, 0, writer, keep)
        for batch in batches:
            if not batch:
                continue
            result.runs += 1
            captured, batch_skipped = _capture(source, batch, feeds, providers, optimization_level)
            result.skipped.extend(batch_skipped)
            for name in batch:
                if name in captured:
                    _record(result, sites[name], captured.pop(name), result.runs, writer, keep)
            del captured
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    result.seconds = time.perf_counter() - start
    return result


def _record(result: ProbeResult, site: ValueSite, value: Any, run: int, writer: NpzWriter | None, keep: bool) -> None:
    array = np.asarray(value)
    info = TensorInfo(site.name, site.node, site.op, tuple(array.shape), str(array.dtype), run=run)
    _fill_stats(info, array)
    result.infos.append(info)
    if writer is not None:
        writer.write(site.name, array)
    if keep:
        result.tensors[site.name] = array


def _fill_stats(info: TensorInfo, array: np.ndarray) -> None:
    if array.size == 0:
        return
    if array.dtype.kind == "b":
        array = array.view(np.uint8)
    elif array.dtype.kind not in "iuf":
        if array.dtype.kind in "OUSc":
            return
        array = storable(array)
    total = float(array.sum(dtype=np.float64))
    if array.dtype.kind == "f" and not math.isfinite(total):  # NaN or Inf somewhere: stats of the finite values
        finite = np.isfinite(array)
        info.nonfinite = int(array.size - np.count_nonzero(finite))
        array = array[finite]
        if array.size == 0:
            return
        total = float(array.sum(dtype=np.float64))
    info.min = float(array.min())
    info.max = float(array.max())
    info.mean = total / array.size


class _Source:
    """A model read once, for many sessions.

    Its large embedded weights are lifted out of the proto into numpy arrays handed to onnxruntime as in-memory
    external initializers, so each session parses a graph of a few hundred KB instead of copying every weight
    again; the extra outputs are appended as a tiny serialized delta (protobuf merges repeated fields).
    """

    MIN_LIFTED_BYTES = 1024

    def __init__(self, model: io.ModelLike) -> None:
        import onnx

        self.base_dir: str | None = None
        if isinstance(model, (str, os.PathLike)):
            self.proto = _read_once(Path(model))
            self.base_dir = str(Path(model).resolve().parent)
        elif isinstance(model, onnx.ModelProto):
            self.proto = onnx.ModelProto()
            self.proto.CopyFrom(model)  # the lifting below must not touch the caller's proto
        else:
            import onnx_ir as ir

            if not isinstance(model, ir.Model):
                io.as_model(model)  # raises the usual error for anything else
            self.proto = ir.serde.serialize_model(model)
            for graph in model.graphs():
                for value in graph.initializers.values():
                    if isinstance(value.const_value, ir.ExternalTensor):
                        self.base_dir = str(value.const_value.base_dir)
        self.weights: dict[str, np.ndarray] = self._lift_weights()
        self._ort_weights: list | None = None
        self.data = self.proto.SerializeToString()

    def _lift_weights(self) -> dict[str, np.ndarray]:
        import sys

        import onnx
        from onnx import helper

        lifted: dict[str, np.ndarray] = {}
        if sys.byteorder != "little":
            return lifted
        for init in self.proto.graph.initializer:
            if init.data_location == onnx.TensorProto.EXTERNAL or len(init.raw_data) < self.MIN_LIFTED_BYTES:
                continue
            try:
                dtype = np.dtype(helper.tensor_dtype_to_np_dtype(init.data_type))
            except (KeyError, ValueError, TypeError):
                continue
            if dtype.kind not in "biuf" or type(dtype).__module__.startswith("ml_dtypes"):
                continue
            raw = init.raw_data
            if len(raw) != math.prod(init.dims) * dtype.itemsize:
                continue  # malformed: let onnxruntime report it
            lifted[init.name] = np.frombuffer(raw, dtype=dtype).reshape(tuple(init.dims))
            init.ClearField("raw_data")
            init.data_location = onnx.TensorProto.EXTERNAL
            for key, value in (("location", "onnxdeploy-in-memory"), ("offset", "0"), ("length", str(len(raw)))):
                entry = init.external_data.add()
                entry.key, entry.value = key, value
        return lifted

    def initializer(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        if name in self.weights:
            return self.weights[name]
        init = next(t for t in self.proto.graph.initializer if t.name == name)
        return numpy_helper.to_array(init, base_dir=self.base_dir or "")

    def external_initializers(self) -> tuple[list[str], list]:
        import onnxruntime as ort

        if self._ort_weights is None:
            self._ort_weights = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.weights.values()]
        return list(self.weights), self._ort_weights

    def session(self, names: Sequence[str], cast: Mapping[str, int], providers, optimization_level):
        """A session on the model with ``names`` as extra outputs (through a Cast for those in ``cast``).

        Returns the session and {fetched output name: tensor name}."""
        import onnx
        from onnx import helper

        from onnxdeploy._bounds import check_loops

        check_loops(self.proto)  # a Loop that would run for ever is refused before onnxruntime starts it
        existing = {o.name for o in self.proto.graph.output}
        delta = onnx.ModelProto()
        fetch: dict[str, str] = {}
        for name in names:
            if name in cast:
                fetched = name + _CAST_SUFFIX
                delta.graph.node.append(helper.make_node("Cast", [name], [fetched], name=fetched, to=cast[name]))
            else:
                fetched = name
            if fetched not in existing:
                delta.graph.output.append(onnx.ValueInfoProto(name=fetched))
            fetch[fetched] = name
        return _ort_session(self.data + delta.SerializeToString(), self.base_dir, providers, optimization_level,
                            self.external_initializers() if self.weights else None), fetch


def _read_once(path: Path) -> "onnx.ModelProto":
    """The file parsed from one read; any problem is reported by :func:`io.load_proto`."""
    import onnx

    io.check_model_path(path)  # a FIFO, /dev/zero, a folder: refused before any byte is read
    try:
        data = path.read_bytes()
        proto = onnx.load_model_from_string(data)
        ok = proto.ir_version > 0 and proto.HasField("graph")
    except Exception:  # unreadable or not ONNX: let load_proto raise its one-line error
        ok = False
    if not ok:
        io.load_proto(path)
        raise AssertionError("unreachable: load_proto accepted what onnx could not parse")
    io.check_utf8_names(proto, path)
    io.check_external_data(proto, path.parent)
    return proto


def _ort_session(data: bytes, base_dir: str | None, providers, optimization_level, initializers=None):
    import onnxruntime as ort

    from onnxdeploy._run import resolve_providers, session_error

    ort.set_default_logger_severity(3)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if optimization_level:
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization_level]
    if base_dir:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", base_dir)
    if initializers:
        options.add_external_initializers(*initializers)
    provider_list = resolve_providers(providers)
    try:
        return ort.InferenceSession(data, sess_options=options, providers=provider_list)
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/NotImplemented types
        raise session_error(err) from err


def _run(session, feeds: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Run and return numpy views of onnxruntime's own output buffers (``run`` would copy every output)."""
    import onnxruntime as ort

    from onnxdeploy._run import run_session, session_error

    try:
        ort_feeds = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in feeds.items()}
    except Exception:  # an input type OrtValue cannot wrap: the plain path copies, but works
        return run_session(session, feeds, names)
    try:
        values = session.run_with_ort_values(names, ort_feeds)
    except Exception as err:
        raise session_error(err) from err
    return {name: value.numpy() for name, value in zip(names, values)}


def _capture(
    source: _Source, names: list[str], feeds: Mapping[str, np.ndarray], providers, optimization_level
) -> tuple[dict[str, np.ndarray], list[SkippedTensor]]:
    """One session exposing ``names`` as outputs, one run; types numpy cannot hold are fetched through a Cast."""
    session, fetch = source.session(names, {}, providers, optimization_level)
    types = {o.name: o.type for o in session.get_outputs()}
    cast = {fetch[f]: _CAST[t][0] for f, t in types.items() if f in fetch and t in _CAST}
    skipped = [SkippedTensor(fetch[f], f"a {t} value; only tensors are captured")
               for f, t in types.items() if f in fetch and not t.startswith("tensor(")]
    elem = {fetch[f]: _CAST[t][1] for f, t in types.items() if f in fetch and t in _CAST}
    if cast or skipped:
        gone = {s.name for s in skipped}
        del session
        session, fetch = source.session([n for n in names if n not in gone], cast, providers, optimization_level)
    outputs = _run(session, feeds, list(fetch))
    del session
    captured: dict[str, np.ndarray] = {}
    for fetched, name in fetch.items():
        value = outputs.pop(fetched)
        if name in elem:
            import ml_dtypes

            value = np.asarray(value).astype(getattr(ml_dtypes, elem[name]))
        captured[name] = value
    return captured, skipped
