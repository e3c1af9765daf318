"""Turn a 2-D MatMul followed by a bias Add into one Gemm."""

from __future__ import annotations

import onnx_ir as ir

from onnxdeploy.passes._util import const_array, single_consumer

_FLOATS = {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}


class MatMulAddToGemmPass(ir.passes.InPlacePass):
    """Rewrite ``Add(MatMul(A, B), C)`` (either Add operand order) into ``Gemm(A, B, C)``.

    Rules:
    - A has rank 2 and B is a rank-2 constant (a weight), so the MatMul is a plain matrix product.
    - C is a constant that Gemm can broadcast unidirectionally to the (M, N) result: shape (), (N,), (1, N),
      (M, 1) or (M, N), with M and N read from the static shapes.
    - The MatMul output feeds only the Add; floating-point dtypes only.
    - Does not fire for batched (rank-3+) MatMul, for a non-constant or wrongly shaped bias (e.g. (1, M, N),
      which would change the output rank), or when the MatMul result is used elsewhere.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        count = 0
        for graph in model.graphs():
            for node in list(graph):
                if node.op_type == "MatMul" and node.domain in ("", "ai.onnx") and self._fuse(graph, node):
                    count += 1
        self.count = count
        return ir.passes.PassResult(model, modified=count > 0)

    def _fuse(self, graph: ir.Graph, matmul: ir.Node) -> bool:
        a, b = matmul.inputs[0], matmul.inputs[1]
        add = single_consumer(matmul.outputs[0])
        if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx"):
            return False
        if a is None or a.shape is None or a.shape.rank() != 2 or a.dtype not in _FLOATS:
            return False
        weight = const_array(b)
        if weight is None or weight.ndim != 2:
            return False
        other = add.inputs[1] if add.inputs[0] is matmul.outputs[0] else add.inputs[0]
        bias = const_array(other)
        if bias is None:
            return False
        m = a.shape[0] if isinstance(a.shape[0], int) else None
        n = weight.shape[1]
        ok_shapes = {(), (1,), (1, 1), (n,), (1, n)} | ({(m, 1), (m, n)} if m is not None else set())
        if tuple(bias.shape) not in ok_shapes:
            return False
        gemm = ir.Node("", "Gemm", [a, b, other], name=matmul.name)
        ir.convenience.replace_nodes_and_values(graph, add, [matmul, add], [gemm], [add.outputs[0]], [gemm.outputs[0]])
        return True
