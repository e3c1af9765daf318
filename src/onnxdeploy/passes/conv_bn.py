"""Fold an inference BatchNormalization into the Conv that feeds it."""

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


class FuseConvBatchNormPass(ir.passes.InPlacePass):
    """Rewrite ``BatchNormalization(Conv(x, W[, B]))`` into ``Conv(x, W', B')``.

    Rules:
    - The BatchNormalization is in inference mode (``training_mode`` 0, one output) and its scale, bias, mean
      and variance are constants (initializers, Constant nodes or values the folder computed).
    - The Conv's weight is a constant; its bias is absent, a constant, or a constant *computed* by the graph
      (e.g. the ``CastLike(0, x)`` zero bias of a dynamo export with ``optimize=False``), read through
      ``ir.convenience.get_const_tensor``.
    - The Conv's output feeds only the BatchNormalization (and is not a graph output).
    - ``W' = W * s`` and ``B' = (B - mean) * s + beta`` with ``s = scale / sqrt(var + epsilon)``, computed in
      float64 and stored in W's dtype as new initializers, so a weight shared with another node stays intact
      for that node.

    Does not fire when any of those is not known to hold (a weight that is a graph input, a Conv output read
    elsewhere, BatchNormalization in training mode).
    """

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        for graph in model.graphs():
            for bn in list(graph):
                if bn.op_type == "BatchNormalization" and bn.domain in ("", "ai.onnx") and self._fold(graph, bn):
                    count += 1
        return counted(model, count)

    def _fold(self, graph: ir.Graph, bn: ir.Node) -> bool:
        if int_attr(bn, "training_mode", 0) != 0 or any(o.uses() or o.is_graph_output() for o in bn.outputs[1:]):
            return False
        conv = bn.inputs[0].producer() if bn.inputs[0] is not None else None
        if conv is None or conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx"):
            return False
        if single_consumer(conv.outputs[0]) is not bn or len(bn.inputs) < 5:
            return False
        params = [const_array(v) for v in bn.inputs[1:5]]
        weight = const_array(conv.inputs[1])
        if weight is None or any(p is None for p in params) or weight.dtype.kind != "f":
            return False
        channels = weight.shape[0]
        bias_value = conv.inputs[2] if len(conv.inputs) > 2 else None
        bias = np.zeros(channels) if bias_value is None else const_array(bias_value)
        if bias is None or bias.size not in (1, channels) or any(p.size != channels for p in params):
            return False
        scale, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
        s = scale / np.sqrt(var + float_attr(bn, "epsilon", 1e-5))
        new_w = (weight.astype(np.float64) * s.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(weight.dtype)
        new_b = ((np.broadcast_to(bias.astype(np.float64).reshape(-1), (channels,)) - mean) * s + beta).astype(
            weight.dtype
        )
        base = conv.inputs[1].name or conv.name or "conv"
        w_value = add_initializer(graph, f"{base}_bnfold", new_w)
        b_value = add_initializer(graph, f"{base}_bnfold_bias", new_b)
        new_conv = ir.Node(
            "",
            "Conv",
            [conv.inputs[0], w_value, b_value],
            attributes=list(conv.attributes.values()),
            name=conv.name,
        )
        ir.convenience.replace_nodes_and_values(
            graph, bn, [conv, bn], [new_conv], [bn.outputs[0]], [new_conv.outputs[0]]
        )
        return True
