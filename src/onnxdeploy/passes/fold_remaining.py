"""Evaluate the nodes whose inputs are all constants that the onnxscript folder left in place."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from onnxdeploy.passes._util import add_initializer, const_array

logger = logging.getLogger(__name__)

# never materialized: they keep quantization info or are not deterministic
SMALL_CONSTANT_OF_SHAPE = 1024  # a ConstantOfShape is folded only up to this many elements (pads, shape vectors)
_KEEP = {"Constant", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
         "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


class FoldRemainingConstantsPass(ir.passes.InPlacePass):
    """Replace a default-domain node whose inputs are all constants by initializers holding its outputs.

    Rules:
    - Every input is a known constant (initializer, Constant node or folded value) and the node has at least one
      input, no subgraph attribute, and is not a (De)QuantizeLinear or a random op. A ConstantOfShape is folded
      only when tiny (at most 1024 elements: the pad and shape vectors of TorchScript exports), never into a
      weight-sized tensor.
    - The node is evaluated with onnxruntime (``onnx.reference`` as a fallback); each output is stored only if it has at most
      ``limit_elements`` elements (so a folded constant never bloats the file) and is not a graph output. A node
      whose declared output shape is already over the limit is not evaluated at all (e.g. the Transpose of a
      tied 150 MB embedding: evaluating it would copy the weight three times to throw the result away).
    - A node the reference evaluator cannot run is left as it is.
    """

    def __init__(self, limit_elements: int = 1 << 18) -> None:
        super().__init__()
        self.limit_elements = limit_elements

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        count = 0
        opset = model.opset_imports.get("", 17)
        for graph in model.graphs():
            for node in list(graph):
                if self._fold(graph, node, opset):
                    count += 1
        self.count = count
        return ir.passes.PassResult(model, modified=count > 0)

    def _fold(self, graph: ir.Graph, node: ir.Node, opset: int) -> bool:
        if node.domain not in ("", "ai.onnx") or node.op_type in _KEEP or not node.inputs:
            return False
        if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
            return False
        if any(o.is_graph_output() for o in node.outputs):
            return False
        limit = self.limit_elements if node.op_type != "ConstantOfShape" else min(
            self.limit_elements, SMALL_CONSTANT_OF_SHAPE)
        if any(_known_size(o) > limit for o in node.outputs):  # would be discarded: don't evaluate (or copy) it
            return False
        arrays = [None if v is None else const_array(v) for v in node.inputs]
        if any(a is None and v is not None for a, v in zip(arrays, node.inputs)):
            return False
        outputs = _evaluate(node, arrays, opset)
        if outputs is None or any(np.asarray(o).size > limit for o in outputs):
            return False
        for value, array in zip(node.outputs, outputs):
            array = np.asarray(array)
            new = add_initializer(graph, f"{value.name or node.op_type}_folded", array)
            ir.convenience.replace_all_uses_with(value, new)
        graph.remove(node, safe=True)
        return True


def _known_size(value: ir.Value) -> int:
    """Number of elements of ``value`` when its shape is static, else 0."""
    shape = value.shape
    if shape is None or not shape.is_static():
        return 0
    return int(np.prod([int(d) for d in shape], dtype=np.int64))


def _evaluate(node: ir.Node, arrays: list, opset: int) -> list[np.ndarray] | None:
    import onnx
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    names = [f"i{i}" if a is not None else "" for i, a in enumerate(arrays)]
    outs = [f"o{i}" for i in range(len(node.outputs))]
    proto = ir.serde.serialize_node(node)
    del proto.input[:]
    proto.input.extend(names)
    del proto.output[:]
    proto.output.extend(outs)
    graph = helper.make_graph(
        [proto], "fold", [],
        [helper.make_tensor_value_info(o, v.dtype.value if v.dtype is not None else 0, None)
         for o, v in zip(outs, node.outputs)],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in zip(names, arrays) if a is not None],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    try:  # onnxruntime first: onnx.reference has gaps (e.g. GatherElements on broadcast buffers)
        import onnxruntime as ort

        if any(v.dtype is None for v in node.outputs):
            raise ValueError("output dtype unknown")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return list(session.run(None, {}))
    except Exception:  # noqa: BLE001 - fall back to the reference evaluator
        logger.debug("onnxruntime cannot evaluate %s", node.op_type, exc_info=True)
    try:
        return list(ReferenceEvaluator(model).run(None, {}))
    except Exception:  # noqa: BLE001 - an op neither can run stays in the graph
        logger.debug("cannot evaluate %s", node.op_type, exc_info=True)
        return None
