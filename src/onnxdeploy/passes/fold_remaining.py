"""Evaluate the nodes whose inputs are all constants that the onnxscript folder left in place."""

from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, add_initializer, const_array, counted

logger = logging.getLogger(__name__)

# never materialized: they keep quantization info or are not deterministic
SMALL_CONSTANT_OF_SHAPE = 1024  # a ConstantOfShape is folded only up to this many elements (pads, shape vectors)
_KEEP = {"Constant", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
         "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial", "Bernoulli"}


MAX_FOLD_LOOP_TRIPS = 1000  # a Loop is never evaluated by folding; this is the bound should that change
_GENERATORS = {"ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Upsample", "Pad", "OneHot", "EyeLike",
               "Col2Im", "ConvTranspose", "DepthToSpace", "NonZero", "Compress", "Einsum", "MatMul", "Gemm"}


def _array(value) -> np.ndarray | None:
    if value is None:
        return None
    const = value.const_value
    if const is None:
        producer = value.producer()
        if producer is not None and producer.op_type == "Constant" and "value" in producer.attributes:
            const = producer.attributes["value"].value
    if const is None:
        return None
    try:
        return np.asarray(const.numpy())
    except Exception:  # noqa: BLE001 - an unreadable constant is simply not known
        return None


def _static_shape(value) -> list[int] | None:
    if value is None:
        return None
    if value.shape is None or not value.shape.is_static():
        const = value.const_value
        return None if const is None or const.shape is None else [int(d) for d in const.shape]
    return [int(d) for d in value.shape]


def _prod(dims) -> int:
    total = 1
    for d in dims:
        total *= max(int(d), 0)
    return total


def predicted_elements(node: ir.Node) -> int | None:
    """The element count of the largest output ``node`` would produce, from its declared output shapes or, for ops
    that make large tensors from small inputs (ConstantOfShape, Expand, Tile, Range, ...), from its constant inputs;
    None when unknown. Computed with Python ints: never overflows, never allocates."""
    sizes = [_prod(shape) for shape in (_static_shape(o) for o in node.outputs) if shape is not None]
    if sizes and len(sizes) == len(node.outputs):
        return max(sizes)
    op, ins = node.op_type, list(node.inputs)
    try:
        if op == "ConstantOfShape" and ins:
            shape = _array(ins[0])
            return None if shape is None else _prod(shape.reshape(-1).tolist())
        if op == "Expand" and len(ins) == 2:
            data, shape = _static_shape(ins[0]), _array(ins[1])
            if data is None or shape is None:
                return None
            target = [int(d) for d in shape.reshape(-1).tolist()]
            rank = max(len(data), len(target))
            data = [1] * (rank - len(data)) + data
            target = [1] * (rank - len(target)) + target
            return _prod(max(a, b) for a, b in zip(data, target))
        if op == "Tile" and len(ins) == 2:
            data, repeats = _static_shape(ins[0]), _array(ins[1])
            if data is None or repeats is None:
                return None
            return _prod(data) * _prod(repeats.reshape(-1).tolist())
        if op == "MatMul" and len(ins) == 2:
            a, b = _static_shape(ins[0]), _static_shape(ins[1])
            if a is None or b is None or not a or not b:
                return None
            a2, b2 = (a if len(a) > 1 else [1] + a), (b if len(b) > 1 else b + [1])
            batch_a, batch_b = a2[:-2], b2[:-2]
            rank = max(len(batch_a), len(batch_b))
            batch_a = [1] * (rank - len(batch_a)) + batch_a
            batch_b = [1] * (rank - len(batch_b)) + batch_b
            return _prod(max(x, y) for x, y in zip(batch_a, batch_b)) * a2[-2] * b2[-1]
        if op == "Gemm" and len(ins) >= 2:
            a, b = _static_shape(ins[0]), _static_shape(ins[1])
            if a is None or b is None or len(a) != 2 or len(b) != 2:
                return None
            ta = node.attributes.get("transA")
            tb = node.attributes.get("transB")
            m = a[1] if ta is not None and ta.value else a[0]
            n = b[0] if tb is not None and tb.value else b[1]
            return m * n
        if op == "Range" and len(ins) == 3:
            start, limit, delta = (_array(v) for v in ins)
            if start is None or limit is None or delta is None:
                return None
            start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in (start, limit, delta))
            if delta == 0 or not all(np.isfinite([start, limit, delta])):
                return None
            return max(int(np.ceil((limit - start) / delta)), 0)
    except (ValueError, TypeError, OverflowError, IndexError):
        return None
    return None


def _is_control_flow(node: ir.Node) -> bool:
    return any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values())


# ops whose output holds exactly their data input's elements: folding one whose input nothing else reads adds nothing
_SIZE_PRESERVING = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity"}


def _frees_its_input(node: ir.Node) -> bool:
    """A layout op (Transpose of a weight, ...) whose data input is a constant only it reads: the folded result
    replaces that constant (onnxscript's folder stores it only when the net size does not grow)."""
    if node.op_type not in _SIZE_PRESERVING or node.domain not in ("", "ai.onnx") or not node.inputs:
        return False
    data = node.inputs[0]
    return (data is not None and data.const_value is not None and not data.is_graph_output()
            and len(data.uses()) == 1)


def fold_guard(limit_elements: int):
    """A ``should_fold`` for onnxscript's ``FoldConstantsPass``: never evaluate control flow (Loop, If, Scan: a Loop
    with a huge or unknown trip count would run for ever), never produce a tensor of more than ``limit_elements``
    elements (unless it replaces the only reader's input: the Transpose of a weight in a dynamo export without its
    optimizer), and never evaluate a tensor-generating op whose output size is unknown. None: the folder's own rules."""

    def should_fold(node: ir.Node) -> bool | None:
        if _is_control_flow(node):
            return False
        size = predicted_elements(node)
        if size is not None and size > limit_elements and not _frees_its_input(node):
            return False
        if size is None and node.op_type in _GENERATORS and node.domain in ("", "ai.onnx"):
            return False
        return None

    return should_fold


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

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        opset = model.opset_imports.get("", 17)
        for graph in model.graphs():
            for node in list(graph):
                if self._fold(graph, node, opset):
                    count += 1
        return counted(model, count)

    def _fold(self, graph: ir.Graph, node: ir.Node, opset: int) -> bool:
        if node.domain not in ("", "ai.onnx") or node.op_type in _KEEP or not node.inputs:
            return False
        if _is_control_flow(node):  # never evaluate a Loop (its trip count may be huge or unknown), If or Scan
            return False
        if any(o.is_graph_output() for o in node.outputs):
            return False
        limit = self.limit_elements if node.op_type != "ConstantOfShape" else min(
            self.limit_elements, SMALL_CONSTANT_OF_SHAPE)
        if any(_known_size(o) > limit for o in node.outputs):  # would be discarded: don't evaluate (or copy) it
            return False
        predicted = predicted_elements(node)
        if (predicted is not None and predicted > limit) or (predicted is None and node.op_type in _GENERATORS):
            return False  # never allocate a tensor above the limit to throw it away
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
