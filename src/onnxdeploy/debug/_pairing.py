"""Which tensor of B is which tensor of A: by name, then by structure and value where a rewrite changed the graph.

Candidates come from the same name; then, for A's remaining tensors, the graph output at the same position, the
same producer node name and output index, or the same op at the same occurrence. Each candidate's producers are then
compared (op, attributes, inputs through the pairing, weight values): a name can survive a rewrite with another
meaning (after a Conv+BatchNormalization fusion the fused Conv's output may carry the pre-BN name, with other
weights). Such a pair is settled by value once both sides are captured: kept when the values agree; moved to the
tensor of A whose values B's tensor holds (same shape, within tolerance); kept as a divergence only when the values
are still plausibly the same quantity (cosine >= 0.99, or a relative L2 error under 0.1 where the reference is
constant); otherwise shown as unmatched, never as a divergence.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import numpy as np

from onnxdeploy.debug._graph import op_name
from onnxdeploy._numerics import TensorDiff, diff_tensor

if TYPE_CHECKING:
    import onnx

SAME_QUANTITY_COSINE = 0.99  # a changed producer whose values are this close is a divergence, not another tensor
MAX_VALUE_CANDIDATES = 256  # A's tensors of the same shape tried for one B tensor, nearest in topological order


@dataclass
class Candidate:
    """A proposed pair; ``changed`` says how B's producer differs from A's ("" when the structure is the same)."""

    a: str
    b: str
    how: str
    changed: str = ""


@dataclass
class Settled:
    """A pair after the value check (``diff`` computed), or an unmatched tensor of A (``b`` None, ``reason``)."""

    a: str
    b: str | None
    how: str
    diff: TensorDiff | None = None
    note: str = ""
    reason: str = ""


class _Graph:
    """Producers, initializers and inputs of a main graph."""

    def __init__(self, proto: "onnx.ModelProto", base_dir: str | None) -> None:
        self.proto = proto
        self.base_dir = base_dir
        graph = proto.graph
        self.inits = {t.name: t for t in graph.initializer}
        self.inputs = [v.name for v in graph.input if v.name not in self.inits]
        self.producer: dict[str, tuple["onnx.NodeProto", int]] = {}
        self.names: list[str] = []
        self.by_node: dict[tuple[str, int], str] = {}
        self.by_pos: dict[tuple[str, int, int], str] = {}
        self.op_count: Counter = Counter()
        for node in graph.node:
            op = op_name(node)
            k = self.op_count[op]
            self.op_count[op] += 1
            for i, name in enumerate(node.output):
                if not name:
                    continue
                self.producer[name] = (node, i)
                self.names.append(name)
                if node.name:
                    self.by_node[(node.name, i)] = name
                self.by_pos[(op, k, i)] = name
        self.node_key = {v: k for k, v in self.by_node.items()}
        self.pos_key = {v: k for k, v in self.by_pos.items()}

    def tensor(self, name: str):
        """The initializer as an onnx_ir tensor (external data not read until compared)."""
        import onnx_ir as ir

        return ir.serde.deserialize_tensor(self.inits[name], self.base_dir or "")


def base_dir_of(model: object) -> str | None:
    import os

    return str(Path(model).resolve().parent) if isinstance(model, (str, os.PathLike)) else None


def candidate_pairs(model_a: "onnx.ModelProto", model_b: "onnx.ModelProto", *, base_a: str | None = None,
                    base_b: str | None = None) -> tuple[list[Candidate], dict[str, str]]:
    """Candidates in A's topological order, each with its structural change, and A's tensors without one (why)."""
    ga, gb = _Graph(model_a, base_a), _Graph(model_b, base_b)
    names_b = set(gb.names)
    used_b: set[str] = set()
    chosen: dict[str, Candidate] = {}
    for name in ga.names:  # exact names first, so a guess never takes a name another tensor carries
        if name in names_b:
            chosen[name] = Candidate(name, name, "name")
            used_b.add(name)
    out_b = {}
    if len(model_a.graph.output) == len(model_b.graph.output):
        out_b = {a.name: b.name for a, b in zip(model_a.graph.output, model_b.graph.output)}

    def free(name_b: str | None) -> bool:
        return name_b is not None and name_b in names_b and name_b not in used_b

    unmatched: dict[str, str] = {}
    for name in ga.names:
        if name in chosen:
            continue
        pos = ga.pos_key.get(name)
        if free(out_b.get(name)):
            chosen[name] = Candidate(name, out_b[name], "output")
        elif name in ga.node_key and free(gb.by_node.get(ga.node_key[name])):
            chosen[name] = Candidate(name, gb.by_node[ga.node_key[name]], "node")
        elif pos is not None and ga.op_count[pos[0]] == gb.op_count.get(pos[0]) and free(gb.by_pos.get(pos)):
            chosen[name] = Candidate(name, gb.by_pos[pos], "position")
        else:
            unmatched[name] = "no tensor of B with this name, node name, or op and position"
            continue
        used_b.add(chosen[name].b)
    inputs_b = dict(zip(ga.inputs, gb.inputs)) if len(ga.inputs) == len(gb.inputs) else {}
    inputs_b.update({n: n for n in ga.inputs if n in gb.inputs})
    pair_of = {c.a: c.b for c in chosen.values()}
    for cand in chosen.values():
        cand.changed = _producer_change(ga, gb, cand.a, cand.b, pair_of, inputs_b)
    order = {n: k for k, n in enumerate(ga.names)}
    return sorted(chosen.values(), key=lambda c: order[c.a]), unmatched


def _producer_change(ga: _Graph, gb: _Graph, a: str, b: str, pair_of: Mapping[str, str],
                     inputs_b: Mapping[str, str]) -> str:
    node_a, out_a = ga.producer[a]
    node_b, out_b = gb.producer[b]
    op_a, op_b = op_name(node_a), op_name(node_b)
    if op_a != op_b:
        return f"{op_a} -> {op_b}"
    if out_a != out_b:
        return f"{op_a} output {out_a} -> {out_b}"
    attrs_a = sorted((x.name, x.SerializeToString(deterministic=True)) for x in node_a.attribute)
    attrs_b = sorted((x.name, x.SerializeToString(deterministic=True)) for x in node_b.attribute)
    if attrs_a != attrs_b:
        return f"{op_a} attributes"
    inputs_a, inputs_b_ = list(node_a.input), list(node_b.input)
    if len(inputs_a) != len(inputs_b_):
        return f"{op_a} inputs"
    for ia, ib in zip(inputs_a, inputs_b_):
        if not ia and not ib:
            continue
        if ia in ga.inits:
            if ib not in gb.inits or not _same_weight(ga, gb, ia, ib):
                return f"{op_a} weights ({ia})"
        elif ia in ga.producer:
            if pair_of.get(ia) != ib:
                return f"{op_a} input {ia!r}"
        elif inputs_b.get(ia) != ib:
            return f"{op_a} input {ia!r}"
    return ""


def _same_weight(ga: _Graph, gb: _Graph, a: str, b: str) -> bool:
    from onnxdeploy._diff import tensors_equal

    ta, tb = ga.inits[a], gb.inits[b]
    if ta.data_type != tb.data_type or list(ta.dims) != list(tb.dims):
        return False
    try:
        return tensors_equal(ga.tensor(a), gb.tensor(b))
    except Exception:  # unreadable here (e.g. external data of an in-memory model): let the values decide
        return False


def settle(candidates: list[Candidate], unmatched: Mapping[str, str], values_a: Mapping[str, np.ndarray],
           values_b: Mapping[str, np.ndarray], order_a: list[str], *, atol: float, rtol: float) -> list[Settled]:
    """Compare each candidate's values; re-pair or drop those whose producer changed (see the module's docstring).

    Returns one entry per tensor of A in ``order_a`` that was a candidate or is listed in ``unmatched``."""
    position = {n: k for k, n in enumerate(order_a)}
    settled: dict[str, Settled] = {}
    for cand in candidates:
        if cand.a not in values_a or cand.b not in values_b:
            continue
        ref, got = values_a[cand.a], values_b[cand.b]
        if np.shape(ref) != np.shape(got) and not cand.changed:
            cand.changed = f"shape {np.shape(ref)} -> {np.shape(got)}"
        diff = diff_tensor(cand.a, ref, got, atol=atol, rtol=rtol)
        if not cand.changed or diff.passed:
            note = f"producer changed ({cand.changed}); values agree" if cand.changed else ""
            settled[cand.a] = Settled(cand.a, cand.b, cand.how, diff, note)
    confirmed = set(settled)
    for cand in candidates:
        if cand.a in settled or cand.a not in values_a or cand.b not in values_b:
            continue
        got = values_b[cand.b]
        twin = _value_twin(got, values_a, position, position.get(cand.a, 0), confirmed, atol=atol, rtol=rtol)
        if twin is not None:
            name, diff = twin
            settled[name] = Settled(name, cand.b, "value", diff,
                                    f"{cand.b!r} in B is computed differently ({cand.changed}); its values are those "
                                    f"of {name!r}")
            confirmed.add(name)
            if cand.a not in settled:
                settled[cand.a] = Settled(cand.a, None, "", reason=f"{cand.b!r} in B is computed differently "
                                          f"({cand.changed}) and holds the values of {name!r}")
            continue
        diff = diff_tensor(cand.a, values_a[cand.a], got, atol=atol, rtol=rtol)
        if _same_quantity(values_a[cand.a], got, diff):
            settled[cand.a] = Settled(cand.a, cand.b, cand.how, diff, f"producer changed ({cand.changed})")
        else:
            settled[cand.a] = Settled(cand.a, None, "", reason=f"{cand.b!r} in B is computed differently "
                                      f"({cand.changed}) and no tensor of A holds its values")
    for name, reason in unmatched.items():
        if name not in settled and name in position:
            settled[name] = Settled(name, None, "", reason=reason)
    return sorted(settled.values(), key=lambda s: position.get(s.a, len(position)))


def _same_quantity(ref: np.ndarray, got: np.ndarray, diff: TensorDiff) -> bool:
    """Whether two differing tensors are plausibly the same quantity computed with an error: cosine >= 0.99, or (a
    constant reference, where cosine says nothing) a relative L2 error under 0.1."""
    if np.shape(ref) != np.shape(got) or np.asarray(ref).dtype.kind not in "biuf" or np.asarray(got).dtype.kind \
            not in "biuf":
        return False
    if np.isfinite(diff.cosine):
        return diff.cosine >= SAME_QUANTITY_COSINE
    r = np.asarray(ref, np.float64)
    g = np.asarray(got, np.float64)
    scale = float(np.linalg.norm(r))
    err = float(np.linalg.norm(g - r))
    return bool(np.isfinite(err)) and err <= 0.1 * scale if scale > 0 else err == 0.0


def _value_twin(got: np.ndarray, values_a: Mapping[str, np.ndarray], position: Mapping[str, int], near: int,
                taken: set[str], *, atol: float, rtol: float) -> tuple[str, TensorDiff] | None:
    """The tensor of A (not already paired) with the same shape whose values ``got`` holds within tolerance."""
    shape = np.shape(got)
    names = [n for n, v in values_a.items() if n not in taken and np.shape(v) == shape and n in position]
    names.sort(key=lambda n: abs(position[n] - near))
    best = None
    for name in names[:MAX_VALUE_CANDIDATES]:
        diff = diff_tensor(name, values_a[name], got, atol=atol, rtol=rtol)
        if diff.passed and (best is None or diff.max_abs < best[1].max_abs):
            best = (name, diff)
    return best
