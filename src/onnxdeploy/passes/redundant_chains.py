"""Remove Reshape/Transpose/Cast/Squeeze chains that compute their own input."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, const_array, counted, int_attr, static_shape

# (from, via): casting from -> via -> from is exact, so the pair is the identity
_LOSSLESS = {
    (ir.DataType.FLOAT16, ir.DataType.FLOAT),
    (ir.DataType.FLOAT16, ir.DataType.DOUBLE),
    (ir.DataType.BFLOAT16, ir.DataType.FLOAT),
    (ir.DataType.BFLOAT16, ir.DataType.DOUBLE),
    (ir.DataType.FLOAT, ir.DataType.DOUBLE),
    (ir.DataType.INT8, ir.DataType.INT16),
    (ir.DataType.INT8, ir.DataType.INT32),
    (ir.DataType.INT8, ir.DataType.INT64),
    (ir.DataType.INT16, ir.DataType.INT32),
    (ir.DataType.INT16, ir.DataType.INT64),
    (ir.DataType.INT32, ir.DataType.INT64),
    (ir.DataType.UINT8, ir.DataType.INT32),
    (ir.DataType.UINT8, ir.DataType.INT64),
    (ir.DataType.UINT16, ir.DataType.INT32),
    (ir.DataType.UINT16, ir.DataType.INT64),
    (ir.DataType.UINT32, ir.DataType.INT64),
    (ir.DataType.BOOL, ir.DataType.INT32),
    (ir.DataType.BOOL, ir.DataType.INT64),
    (ir.DataType.BOOL, ir.DataType.FLOAT),
}


def _axes(node: ir.Node) -> tuple[int, ...] | None:
    """Constant axes of Squeeze/Unsqueeze (input since opset 13, attribute before), non-negative only."""
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        arr = const_array(node.inputs[1])
        axes = None if arr is None else tuple(int(a) for a in arr.reshape(-1))
    else:
        attr = node.attributes.get("axes")
        axes = None if attr is None else tuple(attr.as_ints())
    if not axes or any(a < 0 for a in axes):
        return None
    return tuple(sorted(axes))


_NEUTRAL = {"Add": (0, True), "Sub": (0, False), "Mul": (1, True), "Div": (1, False)}


def _keeps_shape(x: ir.Value, const: np.ndarray) -> bool:
    if x.shape is None or const.ndim > x.shape.rank():
        return False
    dims = list(x.shape)[x.shape.rank() - const.ndim:]
    return all(c == 1 or (isinstance(d, int) and d == c) for c, d in zip(const.shape, dims))


def _neutral_source(node: ir.Node) -> ir.Value | None:
    neutral, commutative = _NEUTRAL[node.op_type]
    if len(node.inputs) != 2 or None in node.inputs:
        return None
    orders = [(0, 1), (1, 0)] if commutative else [(0, 1)]
    for xi, ci in orders:
        x, c = node.inputs[xi], node.inputs[ci]
        const = const_array(c)
        if const is None or x.dtype is None or c.dtype != x.dtype or const.size == 0:
            continue
        if np.all(const == neutral) and _keeps_shape(x, const):
            return x
    return None


class RemoveRedundantChainsPass(ir.passes.InPlacePass):
    """Bypass op pairs and no-op reshapes whose output equals their input.

    Rules (the later nodes become dead and are removed by dead-code elimination):
    - ``Unsqueeze(Squeeze(x, axes), axes)`` -> x and ``Squeeze(Unsqueeze(x, axes), axes)`` -> x, for the same
      constant non-negative axes.
    - ``Cast(Cast(x, to=B), to=A)`` -> x when x already has type A and A -> B is lossless (e.g. float16 ->
      float32 -> float16, int32 -> int64 -> int32).
    - ``Transpose(Transpose(x, p), q)`` -> x when the two permutations compose to the identity.
    - ``Reshape(x, shape)`` -> x when x's static shape already equals the constant target shape (no 0 or -1 needed).
    - ``Add(x, 0)``, ``Sub(x, 0)``, ``Mul(x, 1)``, ``Div(x, 1)`` (either operand order for Add/Mul) -> x when the
      constant is all zeros/ones, has x's dtype, and broadcasting it leaves x's shape unchanged (each of its dims
      is 1 or equals x's static dim) -- e.g. the zero biases of randomly initialized transformers.
    - A chain's final value that is a graph output is kept (graph outputs keep their names), and nothing fires
      when the axes, types, permutations or shapes are not known.
    """

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        for graph in model.graphs():
            for node in list(graph):
                if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
                    continue
                source = self._source(node)
                out = node.outputs[0]
                if source is None or out.is_graph_output():
                    continue
                ir.convenience.replace_all_uses_with(out, source)
                count += 1
        return counted(model, count)

    def _source(self, node: ir.Node) -> ir.Value | None:
        """The value this node's output equals, or None."""
        op = node.op_type
        first = node.inputs[0] if node.inputs else None
        if first is None:
            return None
        if op in _NEUTRAL:
            return _neutral_source(node)
        if op == "Reshape":
            target = const_array(node.inputs[1]) if len(node.inputs) > 1 else None
            shape = static_shape(first)
            if target is not None and shape is not None and tuple(int(t) for t in target.reshape(-1)) == shape:
                return first
            return None
        prev = first.producer()
        if prev is None or prev.domain not in ("", "ai.onnx") or not prev.inputs or prev.inputs[0] is None:
            return None
        x = prev.inputs[0]
        if {op, prev.op_type} == {"Squeeze", "Unsqueeze"} and op != prev.op_type:
            axes, prev_axes = _axes(node), _axes(prev)
            return x if axes is not None and axes == prev_axes else None
        if op == "Cast" and prev.op_type == "Cast":
            a, via = x.dtype, ir.DataType(int_attr(prev, "to", 0))
            return x if a is not None and int_attr(node, "to", -1) == a and (a, via) in _LOSSLESS else None
        if op == "Transpose" and prev.op_type == "Transpose":
            p, q = node.attributes.get("perm"), prev.attributes.get("perm")
            if p is None or q is None:
                return None
            inner, outer = list(q.as_ints()), list(p.as_ints())
            composed = [inner[i] for i in outer]
            return x if composed == list(range(len(composed))) else None
        return None
