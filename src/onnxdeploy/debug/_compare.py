"""Model vs model, tensor by tensor: match tensors (by name, producing node name, or op and position), capture both
sides with :func:`probe`, and name the first tensor in topological order beyond tolerance."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from onnxdeploy import io
from onnxdeploy.debug._graph import main_values, unknown_name_error
from onnxdeploy.debug._probe import ALL, Selection, probe
from onnxdeploy.errors import UserInputError
from onnxdeploy.numerics import TensorDiff, diff_tensor

if TYPE_CHECKING:
    import onnx


@dataclass
class TensorMatch:
    """One tensor of the reference (A) and its counterpart in the candidate (B), with their difference."""

    name: str  # A's tensor name (PyTorch vs ONNX: the module path)
    other: str  # B's tensor name
    node: str | None  # the node producing it (A's node; PyTorch vs ONNX: the ONNX node)
    op: str | None
    how: str  # how the pair was matched: name, node, position, output, name_scope, node_name
    diff: TensorDiff

    @property
    def passed(self) -> bool:
        return self.diff.passed

    def to_dict(self) -> dict:
        return {"name": self.name, "other": self.other, "node": self.node, "op": self.op, "how": self.how,
                **{k: v for k, v in self.diff.to_dict().items() if k != "name"}}


@dataclass
class CompareResult:
    """Every matched tensor's difference, in A's topological order, and the first beyond tolerance."""

    label_a: str
    label_b: str
    matches: list[TensorMatch]
    atol: float
    rtol: float
    kind: str = "onnx"  # "onnx" (model vs model) or "torch" (PyTorch module vs ONNX)
    unmatched: list[str] = field(default_factory=list)  # A's tensors with no counterpart in B
    seconds: float = 0.0
    inputs: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def passed(self) -> bool:
        return all(m.passed for m in self.matches)

    @property
    def first_divergence(self) -> TensorMatch | None:
        return next((m for m in self.matches if not m.passed), None)

    def failures(self) -> list[TensorMatch]:
        return [m for m in self.matches if not m.passed]

    def summary(self) -> str:
        what = "modules" if self.kind == "torch" else "tensors"
        first = self.first_divergence
        if first is None:
            worst = max((m.diff.max_abs for m in self.matches), default=0.0)
            return (f"{len(self.matches)} matched {what} agree (max abs {worst:.3g}; "
                    f"atol {self.atol:g}, rtol {self.rtol:g})")
        if self.kind == "torch":
            where = f"module {first.name!r} (ONNX tensor {first.other!r}"
        else:
            where = f"tensor {first.name!r} ({first.op} node {first.node!r}" if first.node else \
                f"tensor {first.name!r} (unnamed {first.op} node"
        return (f"{len(self.failures())} of {len(self.matches)} matched {what} differ; first divergence: {where}): "
                f"max abs {first.diff.max_abs:.3g}, max rel {first.diff.max_rel:.3g}, cosine {first.diff.cosine:.6f} "
                f"(atol {self.atol:g}, rtol {self.rtol:g})")

    def to_dict(self) -> dict:
        first = self.first_divergence
        return {
            "a": self.label_a,
            "b": self.label_b,
            "kind": self.kind,
            "passed": self.passed,
            "atol": self.atol,
            "rtol": self.rtol,
            "summary": self.summary(),
            "first_divergence": first.to_dict() if first else None,
            "seconds": self.seconds,
            "unmatched": self.unmatched,
            "tensors": [m.to_dict() for m in self.matches],
        }


def _label(model: io.ModelLike, default: str) -> str:
    return str(model) if isinstance(model, (str, os.PathLike)) else default


def compare(
    a: io.ModelLike,
    b: io.ModelLike | None = None,
    *,
    tensors: Selection = None,
    outputs_only: bool = False,
    inputs: Mapping[str, np.ndarray] | None = None,
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
    check: bool = False,
) -> CompareResult:
    """Compare ``b`` to the reference ``a`` tensor by tensor on the same inputs.

    ``a`` may be a PyTorch target (``pkg.mod:factory``, ``file.py:factory``) and ``b`` its ONNX export: then each
    module's output is compared to the ONNX tensor the exporter attributes to it. Without ``b``, ``a`` is compared
    with itself on ``providers_b`` / ``optimization_level_b``. ``tensors`` limits the comparison to some of A's
    tensors (default: all matched). ``check=True`` raises :class:`OutputsDisagree` beyond tolerance.
    """
    from onnxdeploy.torch_target import looks_like_target

    if isinstance(a, str) and looks_like_target(a) and not os.path.exists(a):
        from onnxdeploy.debug._torch import compare_torch

        if b is None:
            raise UserInputError("comparing a PyTorch target needs an ONNX model as the second argument",
                                 hint=f"onnxdeploy compare {a} model.onnx")
        if tensors not in (None, ALL) or outputs_only or providers_b or optimization_level_b:
            raise UserInputError("PyTorch vs ONNX compares every mapped module; --tensor, --outputs-only, "
                                 "--provider-b and --opt-level-b apply to two ONNX models")
        result = compare_torch(a, b, inputs=inputs, input_files=input_files, npz=npz, dims=dims, shapes=shapes,
                               seed=seed, providers=providers, atol=atol, rtol=rtol)
    else:
        result, _, _ = compare_onnx(
            a, b, tensors=tensors, outputs_only=outputs_only, inputs=inputs, input_files=input_files, npz=npz,
            dims=dims, shapes=shapes, seed=seed, providers=providers, providers_b=providers_b,
            optimization_level=optimization_level, optimization_level_b=optimization_level_b, atol=atol, rtol=rtol)
    if check and not result.passed:
        raise_disagreement(result)
    return result


def raise_disagreement(result: CompareResult) -> None:
    from onnxdeploy.errors import OutputsDisagree

    raise OutputsDisagree(result.summary(), hint="`onnxdeploy reduce A B -o repro.onnx` extracts the smallest "
                          "subgraph that still disagrees" if result.kind == "onnx" else None)


def compare_onnx(a, b, *, tensors=None, outputs_only=False, inputs=None, input_files=None, npz=None, dims=None,
                 shapes=None, seed=0, providers=None, providers_b=None, optimization_level=None,
                 optimization_level_b=None, atol=1e-4, rtol=1e-3):
    """:func:`compare` for two ONNX models; also returns both probes (the reduce step reuses the arrays)."""
    from onnxdeploy.run import input_specs, prepare_inputs

    start = time.perf_counter()
    if b is None:
        if not providers_b and not optimization_level_b:
            raise UserInputError("compare needs a second model, or a second provider or optimization level for the "
                                 "same model", hint="onnxdeploy compare a.onnx b.onnx, or "
                                 "onnxdeploy compare a.onnx --provider cpu --provider-b cuda")
        b = a
    label_a = _label(a, "A")
    label_b = _label(b, "B") if b is not a else f"{label_a} on {', '.join(providers_b or ['cpu'])}"
    model_a = io.as_proto(a)
    model_b = io.as_proto(b) if b is not a else model_a
    pairs = match_tensors(model_a, model_b)
    sites_a = main_values(model_a)
    outputs_a = [v.name for v in model_a.graph.output]
    if tensors not in (None, ALL):
        wanted = [tensors] if isinstance(tensors, str) else list(tensors)
        by_a = {p[0]: p for p in pairs}
        for name in wanted:
            if name not in sites_a:
                raise unknown_name_error(name, [s for s, v in sites_a.items() if v.kind == "node"])
            if name not in by_a:
                raise UserInputError(f"tensor {name!r} of {label_a} has no counterpart in {label_b}",
                                     hint="no tensor of the same name, node name, or op and position")
        pairs = [p for p in pairs if p[0] in set(wanted)]
    elif outputs_only:
        pairs = [p for p in pairs if p[0] in set(outputs_a)]
    if not pairs:
        raise UserInputError(
            f"cannot match any tensor of {label_b} to {label_a}",
            hint="the models share no tensor names, node names, op sequence or graph outputs; are they the same "
                 "network?")

    feeds_a = prepare_inputs(a, inputs=inputs, input_files=input_files, npz=npz, dims=dims, shapes=shapes, seed=seed)
    feeds_b = feeds_a if b is a else map_inputs(feeds_a, input_specs(a), input_specs(b), label_a, label_b)
    probe_a = probe(a, tensors=[p[0] for p in pairs], inputs=feeds_a, providers=providers,
                    optimization_level=optimization_level)
    probe_b = probe(b, tensors=list(dict.fromkeys(p[1] for p in pairs)), inputs=feeds_b,
                    providers=providers_b if providers_b else providers,
                    optimization_level=optimization_level_b or optimization_level)
    matches: list[TensorMatch] = []
    unmatched = []
    matched_a = set()
    for name_a, name_b, how in pairs:
        if name_a not in probe_a.tensors or name_b not in probe_b.tensors:
            unmatched.append(name_a)
            continue
        ref, got = probe_a.tensors[name_a], probe_b.tensors[name_b]
        if how in ("node", "position") and np.shape(ref) != np.shape(got):
            unmatched.append(name_a)  # a guessed pair whose shapes differ is not a pair
            continue
        site = sites_a[name_a]
        matches.append(TensorMatch(name_a, name_b, site.node, site.op, how,
                                   diff_tensor(name_a, ref, got, atol=atol, rtol=rtol)))
        matched_a.add(name_a)
    unmatched.extend(s.name for s in sites_a.values()
                     if s.kind == "node" and s.name not in matched_a and s.name not in unmatched
                     and tensors in (None, ALL) and not outputs_only)
    result = CompareResult(label_a, label_b, matches, atol, rtol, "onnx", unmatched,
                           time.perf_counter() - start, feeds_a)
    return result, probe_a, probe_b


def map_inputs(feeds: Mapping[str, np.ndarray], specs_a, specs_b, label_a: str, label_b: str) -> dict:
    """A's feeds under B's input names: by name, else by position when both have as many inputs."""
    names_a = [s.name for s in specs_a]
    names_b = [s.name for s in specs_b]
    if set(names_b) <= set(feeds):
        return {n: feeds[n] for n in names_b}
    if len(names_a) == len(names_b):
        return {nb: feeds[na] for na, nb in zip(names_a, names_b)}
    raise UserInputError(
        f"cannot feed {label_b} the inputs of {label_a}: inputs {names_b} vs {names_a}",
        hint="the models must take the same inputs (by name, or the same number in the same order)")


def match_tensors(model_a: "onnx.ModelProto", model_b: "onnx.ModelProto") -> list[tuple[str, str, str]]:
    """Pairs (A name, B name, how) in A's topological order: same name; else same producer node name and output
    index; else the same op at the same occurrence (only when both have as many of that op); graph outputs by
    position (only when both have as many)."""
    from onnxdeploy.debug._graph import op_name

    def table(model):
        by_name, by_node, by_pos = [], {}, {}
        seen: Counter = Counter()
        for node in model.graph.node:
            op = op_name(node)
            k = seen[op]
            seen[op] += 1
            for i, name in enumerate(node.output):
                if not name:
                    continue
                by_name.append(name)
                if node.name:
                    by_node[(node.name, i)] = name
                by_pos[(op, k, i)] = name
        return by_name, by_node, by_pos, seen

    names_a, nodes_a, pos_a, count_a = table(model_a)
    names_b, nodes_b, pos_b, count_b = table(model_b)
    names_b = set(names_b)
    node_key_a = {v: k for k, v in nodes_a.items()}
    pos_key_a = {v: k for k, v in pos_a.items()}
    out_b = {}
    if len(model_a.graph.output) == len(model_b.graph.output):
        out_b = {a.name: b.name for a, b in zip(model_a.graph.output, model_b.graph.output)}
    used_b: set[str] = set()
    pairs = []

    def free(name_b: str | None) -> bool:
        return name_b is not None and name_b not in used_b

    for name in names_a:
        if name in names_b and name not in used_b:
            pairs.append((name, name, "name"))
        elif name in out_b and free(out_b[name]) and out_b[name] in names_b:
            pairs.append((name, out_b[name], "output"))
        elif name in node_key_a and free(nodes_b.get(node_key_a[name])):
            pairs.append((name, nodes_b[node_key_a[name]], "node"))
        elif name in pos_key_a and count_a[pos_key_a[name][0]] == count_b.get(pos_key_a[name][0]) \
                and free(pos_b.get(pos_key_a[name])):
            pairs.append((name, pos_b[pos_key_a[name]], "position"))
        else:
            continue
        used_b.add(pairs[-1][1])
    return pairs
