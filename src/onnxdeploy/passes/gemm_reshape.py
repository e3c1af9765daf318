"""Turn ``Reshape -> Gemm -> Reshape`` (a linear layer on a flattened 3-D input) back into MatMul + Add."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxdeploy.passes._util import (
    CountedResult,
    add_initializer,
    const_array,
    counted,
    float_attr,
    int_attr,
    single_consumer,
)


def _dims(value: ir.Value) -> list | None:
    if value.shape is None:
        return None
    return [d if isinstance(d, int) else getattr(d, "value", None) for d in value.shape]


class ReshapeGemmToMatMulPass(ir.passes.InPlacePass):
    """Rewrite ``Reshape(Gemm(Reshape(x, [-1, K]), W, b), [..., N])`` into ``Add(MatMul(x, W), b)``.

    Exporters flatten a (batch, sequence, K) activation to 2-D for Gemm (GPT-2's Conv1D, ``addmm``) and reshape the
    result back; MatMul broadcasts over the leading dims, so both Reshapes go, and onnxruntime's own fusions (and
    the onnxscript attention fusions, which otherwise mis-handle the 2-D Reshape) see the plain pattern.

    Rules:
    - The first Reshape's target is a constant ``[-1 or M, K]``, x has rank >= 3, and its output feeds only the
      Gemm. x's leading dims equal the final Reshape's leading dims; its trailing dims are static with product K
      (one trailing dim: no Reshape is left; several, e.g. attention's (B, S, H, D): one ``Reshape(x, [0, 0, K])``).
    - Gemm has ``transA=0``, ``alpha=1``; W is a rank-2 constant (``transB=1`` is applied to a new initializer);
      the bias, if any, is a constant of shape (), (1,), (N,) or (1, N), scaled by ``beta``.
    - The Gemm output feeds only a Reshape whose output has x's leading dims (same ints or same symbolic names)
      followed by N.
    - Does not fire otherwise (e.g. a Reshape that changes the leading dims, a non-constant weight).
    """

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        for graph in model.graphs():
            for node in list(graph):
                if node.op_type == "Gemm" and node.domain in ("", "ai.onnx") and self._rewrite(graph, node):
                    count += 1
        return counted(model, count)

    def _rewrite(self, graph: ir.Graph, gemm: ir.Node) -> bool:
        if int_attr(gemm, "transA", 0) != 0 or float_attr(gemm, "alpha", 1.0) != 1.0:
            return False
        a = gemm.inputs[0]
        first = a.producer() if a is not None else None
        if first is None or first.op_type != "Reshape" or single_consumer(a) is not gemm:
            return False
        x = first.inputs[0]
        x_dims = _dims(x) if x is not None else None
        target = const_array(first.inputs[1]) if len(first.inputs) > 1 else None
        if x_dims is None or len(x_dims) < 3 or target is None or target.shape != (2,):
            return False
        k = int(target[1])
        weight = const_array(gemm.inputs[1])
        if weight is None or weight.ndim != 2:
            return False
        if int_attr(gemm, "transB", 0):
            weight = weight.T
        if weight.shape[0] != k:
            return False
        n = weight.shape[1]
        bias = None
        if len(gemm.inputs) > 2 and gemm.inputs[2] is not None:
            bias = const_array(gemm.inputs[2])
            if bias is None or tuple(bias.shape) not in {(), (1,), (n,), (1, n)}:
                return False
            bias = (bias.reshape(-1) * float_attr(gemm, "beta", 1.0)).astype(bias.dtype)
        second = single_consumer(gemm.outputs[0])
        if second is None or second.op_type != "Reshape" or second.domain not in ("", "ai.onnx"):
            return False
        out_dims = _dims(second.outputs[0])
        if out_dims is None or None in out_dims or len(out_dims) < 2 or out_dims[-1] != n:
            return False
        lead, trail = x_dims[: len(out_dims) - 1], x_dims[len(out_dims) - 1:]
        if lead != out_dims[:-1] or not trail or not all(isinstance(d, int) for d in trail) or np.prod(trail) != k:
            return False
        w_value = gemm.inputs[1]
        if int_attr(gemm, "transB", 0):
            w_value = add_initializer(graph, f"{w_value.name or 'w'}_t", np.ascontiguousarray(weight))
        new_nodes = []
        if len(trail) > 1:  # (B, S, H, D) -> (B, S, H*D): keep the leading dims, merge the trailing ones
            shape = add_initializer(graph, f"{first.name or 'reshape'}_shape3d",
                                    np.array([0] * len(lead) + [k], np.int64))
            flat = ir.Node("", "Reshape", [x, shape], name=first.name)
            new_nodes.append(flat)
            x = flat.outputs[0]
        matmul = ir.Node("", "MatMul", [x, w_value], name=gemm.name)
        new_nodes.append(matmul)
        result = matmul.outputs[0]
        if bias is not None:
            b_value = add_initializer(graph, f"{gemm.inputs[2].name or 'bias'}_1d", bias)
            add = ir.Node("", "Add", [result, b_value], name=f"{gemm.name}_bias")
            new_nodes.append(add)
            result = add.outputs[0]
        ir.convenience.replace_nodes_and_values(
            graph, second, [first, gemm, second], new_nodes, [second.outputs[0]], [result]
        )
        return True
