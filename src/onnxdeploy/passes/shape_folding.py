"""Partial shape folding: shape arithmetic over the static dims of tensors whose other dims are symbolic.

onnxscript's constant folder tracks shape values (``Shape``, ``Gather``, ``Concat``, ``Add``, ``Size``) but folds one
only when the whole input shape is static, and has no rule for ``Slice``, ``Unsqueeze``, ``Sub``/``Mul``/``Div``,
``Equal``/``Where`` or ``ConstantOfShape`` of shape values; its rule registry is module-global (registering ours
would change the torch exporter's optimizer in the same process). This pass does the abstract interpretation over
every 1-D / scalar integer value of the main graph and rewrites what it proves, exactly for every size of the
symbolic dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, counted, int_attr

MAX_ELEMENTS = 64  # a shape value longer than this is not tracked (shape vectors are short)
_INT_TYPES = {ir.DataType.INT64, ir.DataType.INT32, ir.DataType.INT16, ir.DataType.INT8, ir.DataType.UINT64,
              ir.DataType.UINT32, ir.DataType.UINT16, ir.DataType.UINT8, ir.DataType.BOOL}
_MIN_SHAPE_START_END_OPSET = 15  # Shape(start=, end=)


@dataclass(frozen=True, eq=False)
class Dim:
    """A symbolic dim: ``name`` (the model's symbol, None when unnamed) and where it can be read again
    (``source``: dim ``index`` of tensor ``value``). Two dims are equal when they are one object or share a name."""

    name: str | None
    value: ir.Value | None = None
    index: int = 0

    def same(self, other) -> bool:
        return isinstance(other, Dim) and (other is self or (self.name is not None and self.name == other.name)
                                           or (self.value is not None and self.value is other.value
                                               and self.index == other.index))


# A shape value: the elements of a 1-D (or scalar) integer tensor: int (known), Dim (a symbolic dim) or None.
Elements = list


@dataclass
class _Known:
    elements: Elements
    scalar: bool = False

    @property
    def static(self) -> bool:
        return all(isinstance(e, int) for e in self.elements)


def _const(value: ir.Value | None) -> _Known | None:
    if value is None or value.const_value is None:
        return None
    tensor = value.const_value
    if tensor.dtype not in _INT_TYPES or tensor.size > MAX_ELEMENTS or len(tensor.shape) > 1:
        return None
    try:
        array = tensor.numpy()
    except Exception:  # noqa: BLE001 - an unreadable constant is simply not known
        return None
    return _Known([int(x) for x in np.asarray(array).reshape(-1)], scalar=array.ndim == 0)


class _Analysis:
    """The shape values of a graph's integer values, evaluated node by node in graph order."""

    def __init__(self) -> None:
        self.known: dict[ir.Value, _Known] = {}

    def get(self, value: ir.Value | None) -> _Known | None:
        if value is None:
            return None
        return self.known.get(value) or _const(value)

    def evaluate(self, node: ir.Node) -> None:
        if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
            return
        evaluator = getattr(self, f"_{node.op_type.lower()}", None)
        if evaluator is None:
            return
        try:
            result = evaluator(node)
        except (ValueError, TypeError, IndexError, ZeroDivisionError, OverflowError):
            return
        if result is not None and len(result.elements) <= MAX_ELEMENTS:
            self.known[node.outputs[0]] = result

    # -- producers of shape values

    def _shape(self, node: ir.Node) -> _Known | None:
        data = node.inputs[0]
        if data is None or data.shape is None:
            return None
        rank = len(data.shape)
        start, end = int_attr(node, "start", 0), int_attr(node, "end", rank)
        start, end = (max(0, min(rank, i + rank if i < 0 else i)) for i in (start, end))
        out = []
        for i in range(start, end):
            d = data.shape[i]
            out.append(d if isinstance(d, int) else Dim(d.value if isinstance(d.value, str) else None, data, i))
        return _Known(out)

    def _size(self, node: ir.Node) -> _Known | None:
        data = node.inputs[0]
        if data is None or data.shape is None or not data.shape.is_static():
            return None
        return _Known([int(np.prod([int(d) for d in data.shape], dtype=np.int64))], scalar=True)

    def _constantofshape(self, node: ir.Node) -> _Known | None:
        shape = self.get(node.inputs[0])
        if shape is None or not shape.static or len(shape.elements) != 1 or shape.elements[0] > MAX_ELEMENTS:
            return None
        attr = node.attributes.get("value")
        fill = 0
        if attr is not None:
            tensor = attr.as_tensor()
            if tensor.dtype not in _INT_TYPES:
                return None
            fill = int(tensor.numpy().reshape(-1)[0])
        return _Known([fill] * shape.elements[0])

    # -- element moves

    def _identity(self, node: ir.Node) -> _Known | None:
        return self.get(node.inputs[0])

    def _cast(self, node: ir.Node) -> _Known | None:
        to = int_attr(node, "to", 0)
        if ir.DataType(to) not in _INT_TYPES or ir.DataType(to) == ir.DataType.BOOL:
            return None
        return self.get(node.inputs[0])

    def _gather(self, node: ir.Node) -> _Known | None:
        data, indices = self.get(node.inputs[0]), _const(node.inputs[1])
        if data is None or data.scalar or indices is None or int_attr(node, "axis", 0) != 0:
            return None
        n = len(data.elements)
        return _Known([data.elements[i + n if i < 0 else i] for i in indices.elements], scalar=indices.scalar)

    def _slice(self, node: ir.Node) -> _Known | None:
        data = self.get(node.inputs[0])
        if data is None or data.scalar:
            return None
        args = [_const(node.inputs[i]) if i < len(node.inputs) and node.inputs[i] is not None else None
                for i in range(1, 5)]
        starts, ends, axes, steps = args
        if starts is None or ends is None or len(starts.elements) != 1 or len(ends.elements) != 1:
            return None
        if axes is not None and axes.elements[0] not in (0, -1):
            return None
        step = steps.elements[0] if steps is not None else 1
        if step == 0:
            return None
        return _Known([data.elements[i] for i in _slice_indices(len(data.elements), starts.elements[0],
                                                                 ends.elements[0], step)])

    def _concat(self, node: ir.Node) -> _Known | None:
        if int_attr(node, "axis", 0) not in (0, -1):
            return None
        out: Elements = []
        for value in node.inputs:
            part = self.get(value)
            if part is None:
                length = _static_length(value)
                if length is None:
                    return None
                out += [None] * length
            else:
                out += part.elements
        return _Known(out)

    def _unsqueeze(self, node: ir.Node) -> _Known | None:
        data = self.get(node.inputs[0])
        if data is None or not data.scalar:
            return None
        return _Known(list(data.elements))

    def _squeeze(self, node: ir.Node) -> _Known | None:
        data = self.get(node.inputs[0])
        if data is None or data.scalar or len(data.elements) != 1:
            return None
        return _Known(list(data.elements), scalar=True)

    def _reshape(self, node: ir.Node) -> _Known | None:
        data, shape = self.get(node.inputs[0]), _const(node.inputs[1])
        if data is None or shape is None or len(shape.elements) > 1:
            return None
        return _Known(list(data.elements), scalar=not shape.elements)

    # -- arithmetic and selection

    def _binary(self, node: ir.Node, op) -> _Known | None:
        if node.outputs[0].dtype not in _INT_TYPES:
            return None
        a, b = self.get(node.inputs[0]), self.get(node.inputs[1])
        if a is None or b is None:
            return None
        pairs = _broadcast(a.elements, b.elements)
        if pairs is None:
            return None
        return _Known([op(x, y) for x, y in pairs], scalar=a.scalar and b.scalar)

    def _add(self, node):
        return self._binary(node, lambda x, y: _arith(x, y, lambda p, q: p + q, right_unit=0, left_unit=0))

    def _sub(self, node):
        return self._binary(node, lambda x, y: _arith(x, y, lambda p, q: p - q, right_unit=0))

    def _mul(self, node):
        return self._binary(node, lambda x, y: _arith(x, y, lambda p, q: p * q, right_unit=1, left_unit=1))

    def _div(self, node):
        return self._binary(node, lambda x, y: _arith(x, y, _int_div, right_unit=1))

    def _equal(self, node: ir.Node) -> _Known | None:
        a, b = self.get(node.inputs[0]), self.get(node.inputs[1])
        if a is None or b is None:
            return None
        pairs = _broadcast(a.elements, b.elements)
        return None if pairs is None else _Known([_equal(x, y) for x, y in pairs], scalar=a.scalar and b.scalar)

    def _where(self, node: ir.Node) -> _Known | None:
        cond, x, y = (self.get(v) for v in node.inputs)
        if cond is None or x is None or y is None:
            return None
        n = max(len(cond.elements), len(x.elements), len(y.elements))
        if any(len(k.elements) not in (1, n) for k in (cond, x, y)):
            return None
        pick = [cond.elements[i % len(cond.elements)] for i in range(n)]
        return _Known([None if not isinstance(c, int) else (x.elements[i % len(x.elements)] if c
                                                           else y.elements[i % len(y.elements)])
                       for i, c in enumerate(pick)], scalar=cond.scalar and x.scalar and y.scalar)


def _static_length(value: ir.Value | None) -> int | None:
    if value is None or value.shape is None or len(value.shape) != 1 or not isinstance(value.shape[0], int):
        return None
    return value.shape[0] if value.shape[0] <= MAX_ELEMENTS else None


def _slice_indices(n: int, start: int, end: int, step: int) -> range:
    """ONNX Slice's indices along a dim of size ``n`` (negative indices, clamping and INT64 limits included)."""
    start = start + n if start < 0 else start
    end = end + n if end < 0 else end
    if step > 0:
        start, end = max(0, min(n, start)), max(0, min(n, end))
    else:
        start, end = max(-1, min(n - 1, start)), max(-1, min(n - 1, end))
    return range(start, end, step)


def _broadcast(a: Elements, b: Elements) -> list[tuple] | None:
    if len(a) == len(b):
        return list(zip(a, b))
    if len(a) == 1:
        return [(a[0], y) for y in b]
    if len(b) == 1:
        return [(x, b[0]) for x in a]
    return None


def _arith(x, y, op, *, right_unit: int | None = None, left_unit: int | None = None):
    if isinstance(x, int) and isinstance(y, int):
        return op(x, y)
    if isinstance(x, Dim) and y == right_unit:
        return x
    if isinstance(y, Dim) and x == left_unit:
        return y
    return None


def _int_div(p: int, q: int) -> int:
    if q == 0:
        raise ZeroDivisionError
    return int(np.trunc(p / q)) if abs(p) < 2**52 else (abs(p) // abs(q)) * (1 if (p < 0) == (q < 0) else -1)


def _equal(x, y):
    if isinstance(x, int) and isinstance(y, int):
        return int(x == y)
    if isinstance(x, Dim) and isinstance(y, Dim) and x.same(y):
        return 1
    for d, k in ((x, y), (y, x)):  # a dim is never negative
        if isinstance(d, Dim) and isinstance(k, int) and k < 0:
            return 0
    return None


def _new_constant(graph: ir.Graph, like: ir.Value, elements: list[int], scalar: bool) -> ir.Value:
    from onnxdeploy.passes._util import add_initializer

    array = np.array(elements, dtype=like.dtype.numpy())
    return add_initializer(graph, f"{like.name or 'shape'}_folded", array.reshape(()) if scalar else array)


class FoldPartialShapesPass(ir.passes.InPlacePass):
    """Fold shape computations that read only static dims of tensors whose other dims are symbolic.

    Shape values (the elements of 1-D or scalar integer tensors: known ints, symbolic dims, unknown) are tracked
    through ``Shape`` (with ``start``/``end``), ``Size``, ``Gather``/``Slice`` of shapes, ``Concat``, ``Unsqueeze``/
    ``Squeeze``/``Reshape`` to 1-D or scalar, ``Cast`` to an integer type, ``Add``/``Sub``/``Mul``/``Div``,
    ``Equal`` (a dim is never negative; a dim equals itself), ``Where`` and ``ConstantOfShape`` of shape values.

    Rules (each counted in the result's details):
    - ``constants``: a value all of whose elements are known becomes an initializer (e.g. ``Slice(Shape(x), 1)`` of
      ``x: [N, 197, 768]`` is ``[197, 768]``).
    - ``concats``: a ``Concat`` of shape pieces keeps only its symbolic parts: each run of known elements becomes one
      constant, a piece mixing known and symbolic dims is replaced by ``Shape(t, start, end)`` reads of the symbolic
      dims (opset >= 15), a wholly symbolic or unknown piece stays as it is.
    - ``reshape_targets``: in a ``Reshape`` target (``allowzero=0``), a symbolic dim equal to the input's dim at the
      same position becomes ``0`` (copy), and a single remaining unknown dim becomes ``-1``: the target is constant.
    - ``expand_targets``: in an ``Expand`` target, a symbolic dim equal to the input's dim at the same (right-aligned)
      position becomes ``1``: the target is constant when nothing else is symbolic.
    Only the main graph is rewritten. Orphaned nodes are removed.
    """

    def call(self, model: ir.Model) -> CountedResult:
        graph = model.graph
        analysis = _Analysis()
        opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 1))
        counts = {"constants": 0, "concats": 0, "reshape_targets": 0, "expand_targets": 0}
        for node in list(graph):
            if node.graph is not graph:  # removed meanwhile
                continue
            analysis.evaluate(node)
            if node.op_type == "Concat" and _default(node):
                counts["concats"] += _rebuild_concat(graph, node, analysis, opset)
            elif node.op_type == "Reshape" and _default(node):
                counts["reshape_targets"] += _fold_reshape_target(graph, node, analysis)
            elif node.op_type == "Expand" and _default(node):
                counts["expand_targets"] += _fold_expand_target(graph, node, analysis)
            counts["constants"] += _fold_known_outputs(graph, node, analysis)
        total = sum(counts.values())
        if total:
            _remove_orphans(graph)
        return counted(model, total, **{k: v for k, v in counts.items() if v})


def _default(node: ir.Node) -> bool:
    return node.domain in ("", "ai.onnx")


def _fold_known_outputs(graph: ir.Graph, node: ir.Node, analysis: _Analysis) -> int:
    """Rule ``constants``."""
    if node.op_type == "Constant" or not _default(node) or len(node.outputs) != 1:
        return 0
    out = node.outputs[0]
    known = analysis.known.get(out)
    if known is None or not known.static or out.is_graph_output() or out.dtype not in _INT_TYPES:
        return 0
    if not any(True for _ in out.uses()):
        return 0
    new = _new_constant(graph, out, known.elements, known.scalar)
    analysis.known[new] = known
    ir.convenience.replace_all_uses_with(out, new)
    return 1


def _rebuild_concat(graph: ir.Graph, node: ir.Node, analysis: _Analysis, opset: int) -> int:
    """Rule ``concats``."""
    out = node.outputs[0]
    known = analysis.known.get(out)
    if (known is None or known.static or out.dtype not in _INT_TYPES or out.is_graph_output()
            or (out.shape is not None and len(out.shape) != 1)):
        return 0
    reads_dims = out.dtype == ir.DataType.INT64 and opset >= _MIN_SHAPE_START_END_OPSET  # Shape() is INT64
    pieces: list = []  # ("const", [ints]) | ("dim", value, start, end) | ("keep", value)
    changed = False
    for value in node.inputs:
        part = analysis.get(value)
        if part is not None and part.static:
            _append_const(pieces, part.elements)
            changed |= not _is_const(value)
        elif (part is not None and not part.scalar and any(isinstance(e, int) for e in part.elements)
              and all(isinstance(e, int) or (isinstance(e, Dim) and e.value is not None) for e in part.elements)
              and reads_dims):
            for e in part.elements:
                if isinstance(e, int):
                    _append_const(pieces, [e])
                elif pieces and pieces[-1][0] == "dim" and pieces[-1][1] is e.value and pieces[-1][3] == e.index:
                    pieces[-1] = ("dim", e.value, pieces[-1][2], e.index + 1)
                else:
                    pieces.append(("dim", e.value, e.index, e.index + 1))
            changed = True
        else:
            pieces.append(("keep", value))
    if not changed and len(pieces) == len(node.inputs):
        return 0
    inputs = []
    for piece in pieces:
        if piece[0] == "const":
            inputs.append(_new_constant(graph, out, piece[1], False))
        elif piece[0] == "dim":
            shape = ir.node("Shape", [piece[1]], attributes={"start": piece[2], "end": piece[3]})
            shape.outputs[0].dtype = ir.DataType.INT64
            shape.outputs[0].shape = ir.Shape([piece[3] - piece[2]])
            graph.insert_before(node, shape)
            inputs.append(shape.outputs[0])
        else:
            inputs.append(piece[1])
    concat = ir.node("Concat", inputs, attributes={"axis": 0})
    concat.outputs[0].dtype, concat.outputs[0].shape = out.dtype, out.shape
    graph.insert_before(node, concat)
    analysis.known[concat.outputs[0]] = known
    ir.convenience.replace_all_uses_with(out, concat.outputs[0])
    return 1


def _append_const(pieces: list, elements: list[int]) -> None:
    if pieces and pieces[-1][0] == "const":
        pieces[-1] = ("const", pieces[-1][1] + list(elements))
    else:
        pieces.append(("const", list(elements)))


def _is_const(value: ir.Value | None) -> bool:
    return value is not None and value.const_value is not None


def _fold_reshape_target(graph: ir.Graph, node: ir.Node, analysis: _Analysis) -> int:
    """Rule ``reshape_targets``."""
    if len(node.inputs) != 2 or _is_const(node.inputs[1]) or int_attr(node, "allowzero", 0) != 0:
        return 0
    data, target = node.inputs[0], analysis.get(node.inputs[1])
    if target is None or target.scalar or target.static or node.inputs[1].dtype != ir.DataType.INT64:
        return 0
    dims = list(target.elements)
    in_shape = data.shape if data is not None else None
    for i, e in enumerate(dims):
        if isinstance(e, Dim) and in_shape is not None and i < len(in_shape) and _same_dim(e, data, i):
            dims[i] = 0
    unknown = [i for i, e in enumerate(dims) if not isinstance(e, int)]
    if len(unknown) > 1 or (unknown and -1 in dims):
        return 0
    for i in unknown:
        dims[i] = -1
    node.replace_input_with(1, _new_constant(graph, node.inputs[1], dims, False))
    return 1


def _fold_expand_target(graph: ir.Graph, node: ir.Node, analysis: _Analysis) -> int:
    """Rule ``expand_targets``."""
    if len(node.inputs) != 2 or _is_const(node.inputs[1]) or node.inputs[1].dtype != ir.DataType.INT64:
        return 0
    data, target = node.inputs[0], analysis.get(node.inputs[1])
    if target is None or target.scalar or target.static or data is None or data.shape is None:
        return 0
    dims, rank = list(target.elements), len(data.shape)
    offset = len(dims) - rank
    for i, e in enumerate(dims):
        if isinstance(e, Dim) and 0 <= i - offset < rank and _same_dim(e, data, i - offset):
            dims[i] = 1
    if not all(isinstance(e, int) for e in dims):
        return 0
    node.replace_input_with(1, _new_constant(graph, node.inputs[1], dims, False))
    return 1


def _same_dim(dim: Dim, data: ir.Value, index: int) -> bool:
    if dim.value is data and dim.index == index:
        return True
    d = data.shape[index]
    return isinstance(d, ir.SymbolicDim) and isinstance(d.value, str) and dim.name == d.value


def _remove_orphans(graph: ir.Graph) -> None:
    """Remove nodes none of whose outputs is used (sweeping backwards, so chains go at once)."""
    for node in reversed(list(graph)):
        if node.domain in ("", "ai.onnx") and all(not o.is_graph_output() and not any(True for _ in o.uses())
                                                   for o in node.outputs):
            graph.remove(node, safe=True)
