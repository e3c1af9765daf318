"""Reduce a disagreement between two models to the smallest subgraph whose output still disagrees.

The first tensor beyond tolerance (from :func:`compare`) is the subgraph's output. Its inputs are cut at tensors that
still agree: bisecting over those agreeing tensors (in topological order), the smallest cut that keeps the
disagreement wins. Both sides are fed the reference model's values at the cut, so the repro is self-contained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from onnxdeploy import _io as io
from onnxdeploy.debug._compare import compare_onnx
from onnxdeploy.debug._graph import outer_refs
from onnxdeploy.debug._npz import NpzWriter
from onnxdeploy.debug._result import TensorMatch
from onnxdeploy.errors import UnsupportedError, UserInputError
from onnxdeploy._numerics import TensorDiff, diff_tensor
from onnxdeploy._run import Inputs

if TYPE_CHECKING:
    import onnx



@dataclass
class ReduceResult:
    """The saved repro: model(s), inputs, and the disagreement it reproduces."""

    path: Path
    path_b: Path | None
    inputs_path: Path
    output: str
    first: TensorMatch
    diff: TensorDiff
    nodes: int
    original_nodes: int
    ops: list[str]
    inputs: list[str]
    trials: int
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.nodes} of {self.original_nodes} nodes ({', '.join(self.ops)}) reproduce the mismatch of "
                f"{self.output!r}: max abs {self.diff.max_abs:.3g}, max rel {self.diff.max_rel:.3g}")

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "path_b": str(self.path_b) if self.path_b else None,
            "inputs_path": str(self.inputs_path),
            "output": self.output,
            "first_divergence": self.first.to_dict(),
            "repro": self.diff.to_dict(),
            "nodes": self.nodes,
            "original_nodes": self.original_nodes,
            "ops": self.ops,
            "inputs": self.inputs,
            "trials": self.trials,
            "notes": self.notes,
            "summary": self.summary(),
        }


class _Index:
    """Producers, initializers and inputs of a ModelProto's main graph."""

    def __init__(self, proto: "onnx.ModelProto") -> None:
        g = proto.graph
        self.proto = proto
        self.producer = {out: i for i, node in enumerate(g.node) for out in node.output if out}
        self.inits = {t.name: t for t in g.initializer}
        self.inputs = {v.name for v in g.input if v.name not in self.inits}

    def cone(self, target: str, stops: set[str]) -> tuple[list[int], list[str], list[str]]:
        """Nodes computing ``target`` back to ``stops``/graph inputs: (node indices, boundary names, initializers)."""
        nodes: set[int] = set()
        boundary: list[str] = []
        inits: list[str] = []
        seen: set[str] = set()
        stack = [target]
        while stack:
            name = stack.pop()
            if not name or name in seen:
                continue
            seen.add(name)
            if name != target and name in stops:
                boundary.append(name)
            elif name in self.producer:
                i = self.producer[name]
                if i not in nodes:
                    nodes.add(i)
                    node = self.proto.graph.node[i]
                    stack.extend(node.input)
                    stack.extend(outer_refs(node))
            elif name in self.inits:
                inits.append(name)
            else:
                boundary.append(name)
        return sorted(nodes), boundary, inits


def _value_info(name: str, array: np.ndarray):
    from onnx import TensorProto, helper

    array = np.asarray(array)
    elem = TensorProto.STRING if array.dtype.kind in "OUS" else helper.np_dtype_to_tensor_dtype(array.dtype)
    return helper.make_tensor_value_info(name, elem, list(array.shape))


def _submodel(index: _Index, nodes, boundary, inits, output: str, values: Mapping[str, np.ndarray],
              out_value: np.ndarray, rename: Mapping[str, str] | None = None,
              casts: Mapping[str, np.dtype] | None = None) -> "onnx.ModelProto":
    """The model of ``nodes``; boundary tensor ``n`` is fed as ``rename[n]``, through a Cast to ``casts[n]`` when
    the other model's value has another dtype (e.g. an fp16 model compared with its fp32 original)."""
    import onnx
    from onnx import helper

    rename = dict(rename or {})
    casts = dict(casts or {})
    src = index.proto
    cast_out = {n: n if rename[n] != n else f"{n}__repro_cast" for n in casts}
    new_nodes = [
        helper.make_node("Cast", [rename[n]], [cast_out[n]], name=f"repro_cast_{n}",
                         to=helper.np_dtype_to_tensor_dtype(dt))
        for n, dt in casts.items()
    ]
    for i in nodes:
        node = onnx.NodeProto()
        node.CopyFrom(src.graph.node[i])
        for k, name in enumerate(node.input):
            if name in cast_out:
                node.input[k] = cast_out[name]
            elif name in rename:
                node.input[k] = rename[name]
        new_nodes.append(node)
    graph = helper.make_graph(
        new_nodes, "repro",
        [_value_info(rename.get(n, n), values[rename.get(n, n)]) for n in boundary],
        [_value_info(output, out_value)],
        [index.inits[n] for n in inits])
    model = helper.make_model(graph, opset_imports=list(src.opset_import), ir_version=src.ir_version,
                              producer_name="onnxdeploy reduce")
    model.functions.extend(src.functions)
    return model


def _smallest(trial, n: int, name: str):
    """Bisect the number of agreeing tensors cut off before the divergence: the smallest subgraph that still
    disagrees. Returns (the trial's result, trials run)."""
    trials = 1
    best = trial(0)
    if best is not None:
        return best, trials
    lo, hi = 0, n
    best = trial(hi)
    trials += 1
    if best is None:
        raise UnsupportedError(
            f"the mismatch of {name!r} does not reproduce in an extracted subgraph",
            hint="the difference may depend on graph-level optimizations; try --opt-level disable on both sides")
    while hi - lo > 1:
        mid = (lo + hi) // 2
        found = trial(mid)
        trials += 1
        if found is None:
            lo = mid
        else:
            hi, best = mid, found
    return best, trials


def _write_repro(sub_a, sub_b, values, out: Path, path_b: Path | None, inputs_path: Path) -> None:
    """Write the repro models and their inputs; on a failure, nothing is left behind."""
    written: list[Path] = []
    try:
        written.append(io.save(sub_a, out))
        if path_b is not None:
            written.append(io.save(sub_b, path_b))
        with NpzWriter(inputs_path) as writer:
            for name, value in values.items():
                writer.write(name, value)
        written.append(inputs_path)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise


def reduce(
    a: io.ModelLike,
    b: io.ModelLike | None = None,
    out: str | os.PathLike = "repro.onnx",
    *,
    inputs: "Inputs | Mapping[str, np.ndarray] | None" = None,
    input_files: Mapping[str, str | os.PathLike] | None = None,
    npz: str | os.PathLike | None = None,
    dims: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence] | None = None,
    seed: int = 0,
    providers: Sequence[str] | None = None,
    providers_b: Sequence[str] | None = None,
    optimization_level: str | None = None,
    optimization_level_b: str | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ReduceResult:
    """Save the smallest subgraph of ``a`` (and of ``b``, as ``<out>.b.onnx``) whose output still disagrees, with
    its inputs as ``<out>.npz``. Without ``b``: ``a`` on ``providers`` vs ``providers_b``/``optimization_level_b``.

    ``inputs`` (an :class:`~onnxdeploy._run.Inputs`, or arrays by name) says what to feed; the older keywords
    ``input_files``, ``npz``, ``dims``, ``shapes``, ``seed`` still work and are folded into it."""
    from onnxdeploy._run import create_session, run_session

    out = Path(out)
    same = b is None
    path_b = None if same else out.with_name(out.stem + ".b.onnx")
    inputs_path = out.with_suffix(".npz")
    for path in (out, path_b, inputs_path):  # refused before the models run, not after
        if path is not None:
            io.check_output_path(path)
    given = Inputs.merge(inputs, files=input_files, npz=npz, dims=dims, shapes=shapes, seed=seed)
    result, probe_a, probe_b = compare_onnx(
        a, b, inputs=given, providers=providers, providers_b=providers_b, optimization_level=optimization_level,
        optimization_level_b=optimization_level_b, atol=atol, rtol=rtol)
    if result.passed:
        raise UserInputError(f"the models agree within tolerance ({result.summary()}); nothing to reduce",
                             hint="tighten --atol/--rtol to reduce a smaller difference")
    first = result.first_divergence
    if first is None:
        raise UnsupportedError(
            f"the outputs differ only when the models run unmodified: {result.summary()}",
            hint="with every tensor exposed the runtime fuses differently; compare with --opt-level disable on both "
                 "sides, or reduce with --opt-level-b to find the rewrite")
    index_a = _Index(io.as_proto(a, load_weights=True))
    index_b = index_a if same else _Index(io.as_proto(b, load_weights=True))
    feeds_a, feeds_b = probe_a.inputs, probe_b.inputs  # as compare fed them (B's under B's input names)
    b_to_a = {m.other: m.name for m in result.matches}
    b_to_a.update({nb: na for na, nb in zip(feeds_a, feeds_b)} if not same else {})
    agree = [m for m in result.matches if m.passed]
    position = {m.name: k for k, m in enumerate(result.matches)}
    candidates = [m for m in agree if position[m.name] < position[first.name]]

    def value_a(name: str) -> np.ndarray:
        return probe_a.tensors[name] if name in probe_a.tensors else feeds_a[name]

    def value_b(name: str) -> np.ndarray | None:
        return probe_b.tensors.get(name, feeds_b.get(name))

    def trial(k: int):
        stops = candidates[k:]
        nodes_a, bound_a, inits_a = index_a.cone(first.name, {m.name for m in stops})
        nodes_b, bound_b, inits_b = index_b.cone(first.other, {m.other for m in stops})
        if any(n not in probe_a.tensors and n not in feeds_a for n in bound_a) or \
                any(n not in b_to_a and n not in feeds_b for n in bound_b):
            return None
        names = list(dict.fromkeys([*bound_a, *(b_to_a.get(n, n) for n in bound_b)]))
        values = {n: value_a(n) for n in names}
        rename = {n: b_to_a[n] for n in bound_b if n in b_to_a}
        casts = {n: value_b(n).dtype for n in rename if value_b(n) is not None
                 and value_b(n).dtype != values[rename[n]].dtype}
        sub_a = _submodel(index_a, nodes_a, names, inits_a, first.name, values, probe_a.tensors[first.name])
        sub_b = _submodel(index_b, nodes_b, [b for b in bound_b], inits_b, first.other, values,
                          probe_b.tensors[first.other], rename, casts)
        extra = [n for n in names if n not in {rename.get(x, x) for x in bound_b}]
        sub_b.graph.input.extend(_value_info(n, values[n]) for n in extra)  # same inputs on both sides
        got_a = run_session(create_session(sub_a, providers=providers, optimization_level=optimization_level),
                            values)[first.name]
        got_b = run_session(create_session(sub_b, providers=providers_b or providers,
                                           optimization_level=optimization_level_b or optimization_level),
                            values)[first.other]
        diff = diff_tensor(first.name, got_a, got_b, atol=atol, rtol=rtol)
        return (sub_a, sub_b, values, diff, len(nodes_a)) if not diff.passed else None

    best, trials = _smallest(trial, len(candidates), first.name)
    sub_a, sub_b, values, diff, n_nodes = best
    import onnx

    for sub in (sub_a, sub_b):
        try:
            onnx.checker.check_model(sub)
        except onnx.checker.ValidationError as err:  # the repro still runs; say why a checker may complain
            raise UnsupportedError(f"the extracted subgraph does not pass the ONNX checker: {err}") from err
    _write_repro(sub_a, sub_b, values, out, path_b, inputs_path)
    ops = list(dict.fromkeys(n.op_type for n in sub_a.graph.node))
    return ReduceResult(out, path_b, inputs_path, first.name, first, diff, n_nodes, len(index_a.proto.graph.node),
                        ops, list(values), trials)
