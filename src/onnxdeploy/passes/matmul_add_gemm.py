"""Turn a 2-D MatMul with a constant weight into Gemm: a bias Add folded in, a transposed weight read as transB."""

from __future__ import annotations

import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, const_array, counted, single_consumer

_FLOATS = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}


def _transposed_weight(value: ir.Value | None) -> ir.Value | None:
    """W when ``value`` is ``Transpose(W, perm=[1, 0])`` of a rank-2 constant W, else None."""
    node = None if value is None else value.producer()
    if node is None or node.op_type != "Transpose" or node.domain not in ("", "ai.onnx"):
        return None
    perm = node.attributes.get("perm")
    weight = node.inputs[0]
    array = const_array(weight)
    if array is None or array.ndim != 2 or (perm is not None and list(perm.as_ints()) != [1, 0]):
        return None
    return weight


class MatMulAddToGemmPass(ir.passes.InPlacePass):
    """Rewrite ``Add(MatMul(A, B), C)`` (either Add operand order) into ``Gemm(A, B, C)``, and
    ``MatMul(A, Transpose(W))`` into ``Gemm(A, W, transB=1)``.

    Rules:
    1. A has rank 2 and B is a rank-2 constant (a weight), so the MatMul is a plain matrix product.
    2. C is a constant that Gemm can broadcast unidirectionally to the (M, N) result: shape (), (N,), (1, N),
       (M, 1) or (M, N), with M and N read from the static shapes.
    3. B given as ``Transpose(W, perm=[1, 0])`` of a rank-2 constant W becomes ``W`` with ``transB=1``, with or
       without a bias: onnxruntime would otherwise fold the Transpose into a second copy of W when it loads the
       model (GPT-2's LM head shares the 154 MB token embedding: the copy doubles it) or, unfolded, compute it on
       every run. The Transpose stays while something else reads it.
    4. A MatMul with neither a bias Add nor a transposed weight is left alone (nothing to gain).
    5. Does not fire for batched (rank-3+) MatMul, for a non-constant or wrongly shaped bias (e.g. (1, M, N),
       which would change the output rank), or when the MatMul result is used elsewhere; floating-point only.
    """

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        for graph in model.graphs():
            for node in list(graph):
                if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and self._fuse(graph, node):
                    count += 1
        return counted(model, count)

    def _fuse(self, graph: ir.Graph, matmul: ir.Node) -> bool:
        a, b = matmul.inputs[0], matmul.inputs[1]
        if a is None or a.shape is None or a.shape.rank() != 2 or a.dtype not in _FLOATS:
            return False
        transposed = _transposed_weight(b)
        weight = const_array(transposed if transposed is not None else b)
        if weight is None or weight.ndim != 2:
            return False
        n = weight.shape[0] if transposed is not None else weight.shape[1]
        bias = self._bias(matmul, a, n)
        if bias is None and transposed is None:
            return False
        inputs = [a, transposed if transposed is not None else b] + ([bias[1]] if bias else [])
        attributes = [ir.AttrInt64("transB", 1)] if transposed is not None else []
        gemm = ir.Node("", "Gemm", inputs, attributes=attributes, name=matmul.name)
        last = bias[0] if bias else matmul
        old_nodes = [matmul, bias[0]] if bias else [matmul]
        ir.convenience.replace_nodes_and_values(graph, last, old_nodes, [gemm], [last.outputs[0]], [gemm.outputs[0]])
        return True

    @staticmethod
    def _bias(matmul: ir.Node, a: ir.Value, n: int) -> tuple[ir.Node, ir.Value] | None:
        """The Add that adds a Gemm-broadcastable constant to the MatMul's result, and that constant."""
        add = single_consumer(matmul.outputs[0])
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
            return None
        other = add.inputs[1] if add.inputs[0] is matmul.outputs[0] else add.inputs[0]
        bias = const_array(other)
        if bias is None:
            return None
        m = a.shape[0] if isinstance(a.shape[0], int) else None
        ok_shapes = {(), (1,), (1, 1), (n,), (1, n)} | ({(m, 1), (m, n)} if m is not None else set())
        return (add, other) if tuple(bias.shape) in ok_shapes else None
