"""Graph facts the debug verbs share, read from the ModelProto (a probe needs no onnx_ir): every node output in
topological order, its producer, and the values inside control-flow bodies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from onnxdeploy.errors import UserInputError

if TYPE_CHECKING:
    import onnx


@dataclass(frozen=True)
class ValueSite:
    """Where a main-graph value comes from: its producer node (None for graph inputs and initializers)."""

    name: str
    index: int  # position in topological order (graph inputs and initializers: -1)
    node: str | None  # producer node name ("" when the node is unnamed)
    op: str | None  # producer op type (domain-qualified when not the default domain)
    output_index: int
    kind: str  # "node", "input", "initializer"


@dataclass(frozen=True)
class NestedValue:
    """A value defined inside an If/Loop/Scan body: onnxruntime cannot return it as a model output."""

    name: str
    parent_node: str
    parent_op: str
    attribute: str


def op_name(node: "onnx.NodeProto") -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def main_values(model: "onnx.ModelProto") -> dict[str, ValueSite]:
    """Graph inputs, initializers, then every named node output of the main graph, in topological order."""
    graph = model.graph
    sites: dict[str, ValueSite] = {}
    for value in graph.input:
        sites[value.name] = ValueSite(value.name, -1, None, None, 0, "input")
    for init in graph.initializer:
        sites[init.name] = ValueSite(init.name, -1, None, None, 0, "initializer")
    position = 0
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name:
                sites[name] = ValueSite(name, position, node.name, op_name(node), i, "node")
                position += 1
    return sites


def nested_values(model: "onnx.ModelProto") -> dict[str, NestedValue]:
    """Every value defined inside a control-flow body (any depth), with the main-graph node that owns the body."""
    found: dict[str, NestedValue] = {}

    def walk(graph: "onnx.GraphProto", owner: "onnx.NodeProto", attribute: str) -> None:
        names = [v.name for v in graph.input] + [o for node in graph.node for o in node.output]
        for name in names:
            if name:
                found.setdefault(name, NestedValue(name, owner.name, op_name(owner), attribute))
        for node in graph.node:
            for attr_name, sub in subgraphs(node):
                walk(sub, owner, f"{attribute}/{attr_name}")

    for node in model.graph.node:
        for attr_name, sub in subgraphs(node):
            walk(sub, node, attr_name)
    return found


def subgraphs(node: "onnx.NodeProto") -> Iterable[tuple[str, "onnx.GraphProto"]]:
    for attr in node.attribute:
        if attr.type == 5:  # AttributeProto.GRAPH
            yield attr.name, attr.g
        elif attr.type == 10:  # AttributeProto.GRAPHS
            for k, sub in enumerate(attr.graphs):
                yield f"{attr.name}[{k}]", sub


def outer_refs(node: "onnx.NodeProto") -> set[str]:
    """Names a node's subgraphs read from the enclosing scope."""
    refs: set[str] = set()
    for _, g in subgraphs(node):
        defined = {v.name for v in g.input} | {t.name for t in g.initializer}
        for n in g.node:
            refs.update(i for i in n.input if i and i not in defined)
            refs.update(outer_refs(n) - defined)
            defined.update(n.output)
        refs.update(o.name for o in g.output if o.name not in defined)
    return refs


def nested_reason(nested: NestedValue) -> str:
    return (
        f"defined inside the {nested.attribute!r} body of {nested.parent_op} node {nested.parent_node!r}: onnxruntime "
        f"returns only main-graph values (capture the {nested.parent_op} node's outputs instead)"
    )


def unknown_name_error(name: str, known: Iterable[str], *, what: str = "tensor") -> UserInputError:
    """The closest names by the project's one matcher (:func:`onnxdeploy._suggest.close_names`), quoted (tensor
    names may hold spaces and commas); with nothing close, where to list them all (a model may have thousands)."""
    from onnxdeploy._suggest import close_names

    known = list(known)
    close = close_names(name, known)
    if close:
        hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
    else:
        hint = f"`onnxdeploy probe MODEL --all` lists all {len(known)} {what}s"
    return UserInputError(f"the model has no {what} named {name!r}", hint=hint)
