"""Limits on the work a model can make us do, checked before the work starts (one place for them).

- Subgraph nesting: If/Loop/Scan bodies nested deeper than :data:`MAX_SUBGRAPH_DEPTH` are refused before any
  tool recurses into them (OpenVINO's frontend and onnxruntime's quantizer take exponential time on deep nests).
- Loops that would run :data:`MAX_LOOP_ITERATIONS` or more iterations for certain (a constant trip count and a
  condition the body passes through unchanged) are refused before onnxruntime runs them (verification would hang).
- Constant folding (:mod:`onnxdeploy.passes.fold_remaining`) never evaluates control flow and never produces a
  tensor above its size limit; see :func:`onnxdeploy.passes.fold_remaining.fold_guard`.

The walks here are iterative (no Python recursion) and linear in the number of nodes.
"""

from __future__ import annotations

from typing import Iterator

from onnxdeploy.errors import UnsupportedError

MAX_SUBGRAPH_DEPTH = 16
MAX_LOOP_ITERATIONS = 10_000_000
NODE_SHAPE_INFERENCE_LIMIT = 20_000  # above it, constant folding skips its per-node ONNX shape inference


def _proto_subgraphs(node) -> Iterator:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def _ir_subgraphs(node) -> Iterator:
    import onnx_ir as ir

    for attr in node.attributes.values():
        if attr.value is None:  # a reference attribute (in a function body)
            continue
        if attr.type == ir.AttributeType.GRAPH:
            yield attr.value
        elif attr.type == ir.AttributeType.GRAPHS:
            yield from attr.value


def _graphs_with_depth(model) -> Iterator[tuple[object, int, bool]]:
    """``(graph, depth, is_proto)`` for the main graph (depth 0), every function body and every nested subgraph."""
    import onnx

    is_proto = isinstance(model, onnx.ModelProto)
    if is_proto:
        roots = [model.graph, *model.functions]
    else:
        roots = [model.graph, *model.functions.values()]
    stack = [(g, 0) for g in roots]
    while stack:
        graph, depth = stack.pop()
        yield graph, depth, is_proto
        nodes = graph.node if is_proto else graph
        for node in nodes:
            for sub in (_proto_subgraphs(node) if is_proto else _ir_subgraphs(node)):
                if depth + 1 > MAX_SUBGRAPH_DEPTH:
                    yield sub, depth + 1, is_proto
                    return
                stack.append((sub, depth + 1))


def subgraph_depth(model) -> int:
    """The deepest nesting of subgraphs (0: no control flow), counted up to MAX_SUBGRAPH_DEPTH + 1."""
    return max((d for _, d, _ in _graphs_with_depth(model)), default=0)


def check_subgraph_depth(model, *, what: str = "the model") -> None:
    """Refuse a model (onnx.ModelProto or onnx_ir.Model) whose subgraphs nest deeper than MAX_SUBGRAPH_DEPTH."""
    depth = subgraph_depth(model)
    if depth > MAX_SUBGRAPH_DEPTH:
        raise UnsupportedError(
            f"{what} nests If/Loop/Scan bodies more than {MAX_SUBGRAPH_DEPTH} levels deep",
            hint="flatten the control flow (real models nest a few levels); tools take exponential time on deep nests")


def _scalar(tensor) -> int | None:
    from onnx import numpy_helper

    try:
        return int(numpy_helper.to_array(tensor).reshape(-1)[0])
    except (ValueError, TypeError, IndexError):
        return None


def _const_int(graph, name: str) -> int | None:
    """The integer value of ``name`` when it is a scalar initializer or Constant output of the GraphProto ``graph``."""
    if not name:
        return None
    for init in graph.initializer:
        if init.name == name and list(init.dims) in ([], [1]):
            return _scalar(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    return _scalar(attr.t)
    return None


def _cond_passes_through(body) -> bool:
    """The GraphProto body's condition output is its condition input, directly or through Identity nodes."""
    if len(body.input) < 2 or len(body.output) < 1:
        return False
    cond_in, name = body.input[1].name, body.output[0].name
    producers = {o: n for n in body.node for o in n.output}
    seen = 0
    while name != cond_in and name in producers and seen < 100:
        node = producers[name]
        if node.op_type != "Identity":
            return False
        name, seen = node.input[0], seen + 1
    return name == cond_in


def long_loops(model) -> list[tuple[str, int]]:
    """``(node name, trip count)`` of the main-graph Loops that run at least MAX_LOOP_ITERATIONS iterations for
    certain (proto models; the check is linear in the node count)."""
    import onnx

    if not isinstance(model, onnx.ModelProto):
        return _long_loops_ir(model)
    found = []
    graph = model.graph
    loops = [n for n in graph.node if n.op_type == "Loop" and n.domain in ("", "ai.onnx")]
    for node in loops:
        trips = _const_int(graph, node.input[0] if node.input else "")
        if trips is None or trips < MAX_LOOP_ITERATIONS:
            continue
        body = next((a.g for a in node.attribute if a.name == "body"), None)
        if body is not None and _cond_passes_through(body):
            found.append((node.name or node.output[0] if node.output else "Loop", trips))
    return found


def check_loops(model, *, what: str = "the model") -> None:
    """Refuse to run a model with a Loop that would run MAX_LOOP_ITERATIONS or more iterations for certain."""
    loops = long_loops(model)
    if loops:
        name, trips = loops[0]
        raise UnsupportedError(
            f"{what}: Loop {name!r} runs {trips} iterations (its condition never changes): running it would not end",
            hint=f"loops of {MAX_LOOP_ITERATIONS} or more fixed iterations are not run; optimize, edit and legalize "
                 "take --no-verify to skip running the model")


def _long_loops_ir(model) -> list[tuple[str, int]]:
    import numpy as np

    found = []
    graph = getattr(model, "graph", None)
    if graph is None:
        return found
    for node in graph:
        if node.op_type != "Loop" or node.domain not in ("", "ai.onnx") or not node.inputs or node.inputs[0] is None:
            continue
        const = node.inputs[0].const_value
        producer = node.inputs[0].producer()
        if const is None and producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
            const = producer.attributes["value"].value
        if const is None or const.size != 1:
            continue
        try:
            trips = int(np.asarray(const.numpy()).reshape(-1)[0])
        except (ValueError, TypeError):
            continue
        body = node.attributes.get("body")
        if trips < MAX_LOOP_ITERATIONS or body is None:
            continue
        body = body.value
        if len(body.inputs) < 2 or not body.outputs:
            continue
        value, seen = body.outputs[0], 0
        while value is not body.inputs[1] and value.producer() is not None and seen < 100:
            producer = value.producer()
            if producer.op_type != "Identity" or not producer.inputs:
                break
            value, seen = producer.inputs[0], seen + 1
        if value is body.inputs[1]:
            found.append((node.name or (node.outputs[0].name if node.outputs else "Loop"), trips))
    return found


def all_graphs(model) -> list:
    """The main graph, function bodies and every nested subgraph of an ``onnx_ir.Model``: ``model.graphs()`` in one
    pass that looks only at attributes (``model.graphs()`` builds a generator per node: ~50x slower on 100k nodes)."""
    import onnx_ir as ir

    graph_types = (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
    out = []
    stack = [model.graph, *model.functions.values()]
    while stack:
        graph = stack.pop()
        out.append(graph)
        for node in graph:
            attributes = node.attributes
            if not attributes:
                continue
            for attr in attributes.values():
                if attr.type in graph_types and attr.value is not None:  # None: a reference attribute
                    if attr.type == ir.AttributeType.GRAPH:
                        stack.append(attr.value)
                    else:
                        stack.extend(attr.value)
    return out


def node_count(model) -> int:
    """Nodes of an ``onnx_ir.Model``, subgraphs and functions included (linear, no per-node generators)."""
    return sum(len(graph) for graph in all_graphs(model))
