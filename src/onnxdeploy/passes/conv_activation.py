"""Fuse an activation into the Conv or Gemm before it, as onnxruntime's FusedConv / FusedGemm contrib ops."""

from __future__ import annotations

import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, const_array, counted, float_attr, single_consumer

MS_DOMAIN = "com.microsoft"

# activation op -> function(node) returning the activation_params list, or None when it cannot be fused
_CONV_ACTIVATIONS = {
    "Relu": lambda n: [],
    "Sigmoid": lambda n: [],
    "Tanh": lambda n: [],
    "LeakyRelu": lambda n: [float_attr(n, "alpha", 0.01)],
    "HardSigmoid": lambda n: [float_attr(n, "alpha", 0.2), float_attr(n, "beta", 0.5)],
}
_GEMM_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh", "LeakyRelu"}


def _clip_params(node: ir.Node) -> list[float] | None:
    if len(node.inputs) < 3 or node.inputs[1] is None or node.inputs[2] is None:
        return None  # onnxruntime's fused Clip needs both bounds
    low, high = const_array(node.inputs[1]), const_array(node.inputs[2])
    if low is None or high is None or low.size != 1 or high.size != 1:
        return None
    return [float(low.reshape(-1)[0]), float(high.reshape(-1)[0])]


class FuseConvActivationPass(ir.passes.InPlacePass):
    """Rewrite ``Act(Conv(...))`` into ``com.microsoft.FusedConv`` and ``Act(Gemm(...))`` into ``FusedGemm``.

    For ``--for-runtime onnxruntime`` only: the fused ops are onnxruntime contrib ops (CPU, float32).

    Rules:
    - Conv + Relu, Sigmoid, Tanh, LeakyRelu(alpha), HardSigmoid(alpha, beta), Clip(constant min and max)
      -> FusedConv(activation=..., activation_params=[...]).
    - Gemm + Relu, Sigmoid, Tanh, LeakyRelu(alpha) -> FusedGemm(activation=..., activation_alpha=...).
    - The Conv/Gemm output feeds only the activation, its dtype is float32, and it is in the default domain.
    - Does not fire on other activations (e.g. Gelu, Silu as Sigmoid*x), other dtypes, or shared outputs.
    """

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        for graph in model.graphs():
            for node in list(graph):
                if node.op_type in ("Conv", "Gemm") and node.domain in ("", "ai.onnx") and self._fuse(graph, node):
                    count += 1
        if count:
            model.opset_imports.setdefault(MS_DOMAIN, 1)
        return counted(model, count)

    def _fuse(self, graph: ir.Graph, node: ir.Node) -> bool:
        out = node.outputs[0]
        act = single_consumer(out)
        if act is None or act.domain not in ("", "ai.onnx") or out.dtype != ir.DataType.FLOAT:
            return False
        if node.op_type == "Conv":
            if act.op_type == "Clip":
                params = _clip_params(act)
            elif act.op_type in _CONV_ACTIVATIONS:
                params = _CONV_ACTIVATIONS[act.op_type](act)
            else:
                return False
            if params is None:
                return False
            attrs = [a for a in node.attributes.values()]
            attrs.append(ir.AttrString("activation", act.op_type))
            if params:
                attrs.append(ir.AttrFloat32s("activation_params", params))
            fused = ir.Node(MS_DOMAIN, "FusedConv", list(node.inputs), attributes=attrs, name=node.name)
        else:
            if act.op_type not in _GEMM_ACTIVATIONS:
                return False
            attrs = [a for a in node.attributes.values()]
            attrs.append(ir.AttrString("activation", act.op_type))
            if act.op_type == "LeakyRelu":
                attrs.append(ir.AttrFloat32("activation_alpha", float_attr(act, "alpha", 0.01)))
            fused = ir.Node(MS_DOMAIN, "FusedGemm", list(node.inputs), attributes=attrs, name=node.name)
        ir.convenience.replace_nodes_and_values(graph, act, [node, act], [fused], [act.outputs[0]], [fused.outputs[0]])
        return True
