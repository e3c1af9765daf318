"""Graph facts the debug verbs share: every node output in topological order, its producer, and subgraph values."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from onnxdeploy.errors import UserInputError

if TYPE_CHECKING:
    import onnx_ir as ir


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


def op_name(node: "ir.Node") -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def main_values(model: "ir.Model") -> dict[str, ValueSite]:
    """Graph inputs, initializers, then every named node output of the main graph, in topological order."""
    graph = model.graph
    sites: dict[str, ValueSite] = {}
    for value in graph.inputs:
        sites[value.name] = ValueSite(value.name, -1, None, None, 0, "input")
    for name in graph.initializers:
        sites.setdefault(name, ValueSite(name, -1, None, None, 0, "initializer"))
    position = 0
    for node in graph:
        for i, value in enumerate(node.outputs):
            if value.name:
                sites[value.name] = ValueSite(value.name, position, node.name or "", op_name(node), i, "node")
                position += 1
    return sites


def nested_values(model: "ir.Model") -> dict[str, NestedValue]:
    """Every value defined inside a control-flow body (any depth), with the main-graph node that owns the body."""
    found: dict[str, NestedValue] = {}

    def walk(graph: "ir.Graph", owner: "ir.Node", attribute: str) -> None:
        for value in graph.inputs:
            if value.name:
                found.setdefault(value.name, NestedValue(value.name, owner.name or "", op_name(owner), attribute))
        for node in graph:
            for value in node.outputs:
                if value.name:
                    found.setdefault(value.name, NestedValue(value.name, owner.name or "", op_name(owner), attribute))
            for attr_name, sub in _subgraphs(node):
                walk(sub, owner, f"{attribute}/{attr_name}")

    for node in model.graph:
        for attr_name, sub in _subgraphs(node):
            walk(sub, node, attr_name)
    return found


def _subgraphs(node: "ir.Node") -> Iterable[tuple[str, "ir.Graph"]]:
    import onnx_ir as ir

    for name, attr in node.attributes.items():
        if attr.type == ir.AttributeType.GRAPH:
            yield name, attr.value
        elif attr.type == ir.AttributeType.GRAPHS:
            for k, sub in enumerate(attr.value):
                yield f"{name}[{k}]", sub


def nested_reason(nested: NestedValue) -> str:
    return (
        f"defined inside the {nested.attribute!r} body of {nested.parent_op} node {nested.parent_node!r}: onnxruntime "
        f"returns only main-graph values (capture the {nested.parent_op} node's outputs instead)"
    )


def unknown_name_error(name: str, known: Iterable[str], *, what: str = "tensor") -> UserInputError:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + ", ".join(repr(c) for c in close) + "?"
    else:
        hint = f"`onnxdeploy probe MODEL --all` lists all {len(known)} {what}s"
    return UserInputError(f"the model has no {what} named {name!r}", hint=hint)
