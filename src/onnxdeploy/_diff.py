"""Structural diff of two ONNX models: nodes, inputs/outputs, initializers (values compared one at a time), opsets.

Nodes are matched by name (or, for unnamed nodes, by op type and first output); nodes left over on both sides are
paired by structure: the same op, attributes and tensors under another name is *renamed*, the same op writing the
same tensors from other inputs is *changed*. A node is *changed* when its op, domain, attributes or connections
(input/output tensor names) differ. Initializer values are compared tensor by
tensor in chunks of memory-mapped data, so models larger than memory can be compared.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from onnxdeploy._build import format_type
from onnxdeploy._io import ModelLike

if TYPE_CHECKING:
    import onnx_ir as ir

_CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class Change:
    """One difference: ``kind`` is added, removed or changed; ``before``/``after`` describe the two sides."""

    section: str  # node, input, output, initializer, opset
    name: str
    kind: str
    before: str = ""
    after: str = ""
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ModelDiff:
    """All differences between model A and model B."""

    a: str
    b: str
    changes: list[Change]
    counts: dict[str, int] = field(default_factory=dict)  # nodes/initializers in A and B

    @property
    def identical(self) -> bool:
        return not self.changes

    def section(self, name: str) -> list[Change]:
        return [c for c in self.changes if c.section == name]

    def summary(self) -> str:
        if self.identical:
            return "models are identical (graph structure, inputs/outputs, initializers, opsets)"
        parts = []
        for section in ("node", "input", "output", "initializer", "opset"):
            items = self.section(section)
            if items:
                kinds = {k: sum(1 for c in items if c.kind == k) for k in ("added", "removed", "renamed", "changed")}
                parts.append(f"{section}s: " + ", ".join(f"{n} {k}" for k, n in kinds.items() if n))
        return "; ".join(parts)

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "identical": self.identical, "summary": self.summary(),
                "counts": self.counts, "changes": [c.to_dict() for c in self.changes]}


def _label(model: ModelLike) -> str:
    import os

    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def _node_keys(graph: "ir.Graph") -> dict[str, "ir.Node"]:
    from collections import Counter

    counts = Counter(n.name for n in graph)
    unique = {name for name, count in counts.items() if name and count == 1}
    keys: dict[str, ir.Node] = {}
    for i, node in enumerate(graph):
        if node.name in unique:
            key = node.name
        else:
            first = node.outputs[0].name if node.outputs else str(i)
            key = f"<{node.op_type} -> {first}>"
        keys[key] = node
    return keys


def _attr_repr(attr: "ir.Attr") -> str:
    value = attr.value
    if hasattr(value, "numpy"):
        arr = value.numpy()
        return f"tensor{list(arr.shape)}:{arr.dtype}:{hash(arr.tobytes())}"
    if hasattr(value, "name") and hasattr(value, "__iter__") and not isinstance(value, (str, list, tuple)):
        return f"graph {value.name}"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def _node_details(a: "ir.Node", b: "ir.Node") -> list[str]:
    details = []
    if (a.domain, a.op_type) != (b.domain, b.op_type):
        details.append(f"op {a.op_type} -> {b.op_type}")
    for key in sorted(set(a.attributes) | set(b.attributes)):
        x, y = a.attributes.get(key), b.attributes.get(key)
        rx = _attr_repr(x) if x is not None else None
        ry = _attr_repr(y) if y is not None else None
        if rx != ry:
            details.append(f"attribute {key}: {rx if rx is not None else '(none)'} -> {ry if ry is not None else '(none)'}")
    ins_a = [v.name if v is not None else "" for v in a.inputs]
    ins_b = [v.name if v is not None else "" for v in b.inputs]
    if ins_a != ins_b:
        details.append(f"inputs {ins_a} -> {ins_b}")
    outs_a, outs_b = [v.name for v in a.outputs], [v.name for v in b.outputs]
    if outs_a != outs_b:
        details.append(f"outputs {outs_a} -> {outs_b}")
    return details


def _signature(node: "ir.Node", *, with_inputs: bool = True) -> tuple:
    attrs = tuple(sorted((k, _attr_repr(a)) for k, a in node.attributes.items()))
    ins = tuple(v.name if v is not None else "" for v in node.inputs) if with_inputs else ()
    return node.domain, node.op_type, attrs, ins, tuple(v.name for v in node.outputs)


def _unmatched_nodes(removed: dict[str, "ir.Node"], added: dict[str, "ir.Node"]) -> list[Change]:
    """Nodes only in A or only in B. A pair that is the same node under another name is *renamed*: the same op,
    attributes and tensors; or *changed* when only its inputs differ but it still writes the same tensors."""
    changes: list[Change] = []
    for with_inputs in (True, False):
        by_signature: dict[tuple, list[str]] = {}
        for key, node in added.items():
            by_signature.setdefault(_signature(node, with_inputs=with_inputs), []).append(key)
        for key in list(removed):
            node = removed[key]
            keys = by_signature.get(_signature(node, with_inputs=with_inputs))
            if not keys or not node.outputs:  # a node without outputs has no identity to match
                continue
            other_key = keys.pop(0)
            other = added.pop(other_key)
            del removed[key]
            details = [f"name {node.name or '(none)'} -> {other.name or '(none)'}", *_node_details(node, other)]
            kind = "renamed" if with_inputs else "changed"
            changes.append(Change("node", f"{key} -> {other_key}", kind, _node_str(node), _node_str(other),
                                  details))
    changes += [Change("node", key, "removed", before=_node_str(node)) for key, node in removed.items()]
    changes += [Change("node", key, "added", after=_node_str(node)) for key, node in added.items()]
    return changes


def _node_str(node: "ir.Node") -> str:
    ins = ", ".join(v.name if v is not None else "" for v in node.inputs)
    outs = ", ".join(v.name for v in node.outputs)
    return f"{node.op_type}({ins}) -> {outs}"


def _io_changes(section: str, a: list, b: list) -> list[Change]:
    da = {v.name: v for v in a}
    db = {v.name: v for v in b}
    changes = []
    for name in da:
        if name not in db:
            changes.append(Change(section, name, "removed", before=format_type(da[name])))
        elif format_type(da[name]) != format_type(db[name]):
            changes.append(Change(section, name, "changed", format_type(da[name]), format_type(db[name])))
    for name in db:
        if name not in da:
            changes.append(Change(section, name, "added", after=format_type(db[name])))
    # a removed and an added tensor at the same position with the same type: a rename
    removed = {list(da).index(c.name): c for c in changes if c.kind == "removed"}
    added = {list(db).index(c.name): c for c in changes if c.kind == "added"}
    for pos in sorted(set(removed) & set(added)):
        r, a = removed[pos], added[pos]
        if r.before == a.after:
            changes.remove(r)
            changes[changes.index(a)] = Change(section, f"{r.name} -> {a.name}", "renamed", r.before, a.after)
    if not changes and list(da) != list(db):
        changes.append(Change(section, "(order)", "changed", ", ".join(da), ", ".join(db)))
    return changes


def tensors_equal(x, y) -> bool:
    """Whether two ir tensors hold the same bytes; chunked over memory-mapped data, one tensor at a time."""
    import onnx_ir as ir

    if x is None or y is None:
        return x is y
    if x.dtype != y.dtype or tuple(x.shape) != tuple(y.shape):
        return False
    if isinstance(x, ir.ExternalTensor) and isinstance(y, ir.ExternalTensor):
        if (x.path == y.path and x.offset == y.offset and x.length == y.length):
            return True
    try:
        ax, ay = x.numpy(), y.numpy()
    except Exception:  # dtypes numpy cannot view: compare raw bytes
        return x.tobytes() == y.tobytes()
    ax = np.ascontiguousarray(ax).reshape(-1).view(np.uint8)
    ay = np.ascontiguousarray(ay).reshape(-1).view(np.uint8)
    if ax.size != ay.size:
        return False
    for start in range(0, ax.size, _CHUNK_BYTES):
        if not np.array_equal(ax[start:start + _CHUNK_BYTES], ay[start:start + _CHUNK_BYTES]):
            return False
    return True


def _init_str(value: "ir.Value") -> str:
    tensor = value.const_value
    if tensor is None:
        return format_type(value)
    from onnxdeploy._build import dtype_name

    return f"{dtype_name(tensor.dtype)}[{'x'.join(str(d) for d in tensor.shape) or 'scalar'}]"


def diff(a: ModelLike, b: ModelLike, *, compare_values: bool = True) -> ModelDiff:
    """Compare models ``a`` and ``b`` (paths, ModelProtos or ``ir.Model``)."""
    from onnxdeploy import _io as io

    ma, mb = io.as_model(a), io.as_model(b)
    ga, gb = ma.graph, mb.graph
    changes: list[Change] = []
    for domain in sorted(set(ma.opset_imports) | set(mb.opset_imports)):
        va, vb = ma.opset_imports.get(domain), mb.opset_imports.get(domain)
        if va != vb:
            kind = "added" if va is None else "removed" if vb is None else "changed"
            changes.append(Change("opset", domain or "ai.onnx", kind, str(va or ""), str(vb or "")))
    inits_a, inits_b = set(ga.initializers), set(gb.initializers)
    changes += _io_changes("input", [v for v in ga.inputs if v.name not in inits_a],
                           [v for v in gb.inputs if v.name not in inits_b])
    changes += _io_changes("output", list(ga.outputs), list(gb.outputs))
    na, nb = _node_keys(ga), _node_keys(gb)
    for key, node in na.items():
        if key in nb:
            details = _node_details(node, nb[key])
            if details:
                changes.append(Change("node", key, "changed", _node_str(node), _node_str(nb[key]), details))
    changes += _unmatched_nodes({k: n for k, n in na.items() if k not in nb},
                                {k: n for k, n in nb.items() if k not in na})
    for name, value in ga.initializers.items():
        if name not in gb.initializers:
            changes.append(Change("initializer", name, "removed", before=_init_str(value)))
            continue
        other = gb.initializers[name]
        sa, sb = _init_str(value), _init_str(other)
        if sa != sb:
            changes.append(Change("initializer", name, "changed", sa, sb, ["dtype/shape changed"]))
        elif compare_values and not tensors_equal(value.const_value, other.const_value):
            changes.append(Change("initializer", name, "changed", sa, sb, ["values changed"]))
    for name, value in gb.initializers.items():
        if name not in ga.initializers:
            changes.append(Change("initializer", name, "added", after=_init_str(value)))
    counts = {"nodes_a": len(ga), "nodes_b": len(gb), "initializers_a": len(ga.initializers),
              "initializers_b": len(gb.initializers)}
    return ModelDiff(_label(a), _label(b), changes, counts)
