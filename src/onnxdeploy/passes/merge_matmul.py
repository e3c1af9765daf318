"""Merge MatMuls that read the same input with different constant weights into one MatMul and a Split."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, add_initializer, const_array, counted


class MergeParallelMatMulPass(ir.passes.InPlacePass):
    """Rewrite ``MatMul(x, W1), ..., MatMul(x, Wn)`` into ``Split(MatMul(x, concat(W1..Wn, axis=1)), axis=-1)``.

    The query/key/value projections of attention read one input with n weights: one larger matrix product is
    as fast or faster and the graph is smaller.

    Rules:
    - At least two default-domain MatMuls share the same first input; each weight is a rank-2 constant with the
      same number of rows and dtype; the first input has a known rank >= 2; the opset is at least 13 (Split
      takes its sizes as an input).
    - Weights used by other nodes are left alone (the MatMul keeps its own node), so shared weights stay shared.
    - Does not fire on a single MatMul, on weights that are graph inputs, or on batched (rank-3) weights.
    """

    def call(self, model: ir.Model) -> CountedResult:
        count = 0
        if model.opset_imports.get("", 0) < 13:
            return counted(model, 0)
        for graph in model.graphs():
            groups: dict[int, list[tuple[ir.Node, np.ndarray]]] = defaultdict(list)
            for node in graph:
                if node.op_type != "MatMul" or node.domain not in ("", "ai.onnx") or node.inputs[0] is None:
                    continue
                x, w = node.inputs[0], node.inputs[1]
                if x.shape is None or x.shape.rank() < 2 or len(w.uses()) != 1:
                    continue
                weight = const_array(w)
                if weight is None or weight.ndim != 2:
                    continue
                groups[id(x)].append((node, weight))
            for members in groups.values():
                by_kind = defaultdict(list)
                for node, weight in members:
                    by_kind[(weight.shape[0], weight.dtype.str)].append((node, weight))
                for same in by_kind.values():
                    if len(same) >= 2:
                        self._merge(graph, same)
                        count += 1
        return counted(model, count)

    def _merge(self, graph: ir.Graph, members: list[tuple[ir.Node, np.ndarray]]) -> None:
        nodes = [n for n, _ in members]
        x = nodes[0].inputs[0]
        merged = np.concatenate([w for _, w in members], axis=1)
        w_value = add_initializer(graph, f"{nodes[0].inputs[1].name or 'w'}_merged", merged)
        sizes = add_initializer(graph, f"{w_value.name}_split", np.array([w.shape[1] for _, w in members], np.int64))
        matmul = ir.Node("", "MatMul", [x, w_value], name=f"{nodes[0].name}_merged")
        split = ir.Node("", "Split", [matmul.outputs[0], sizes], attributes=[ir.AttrInt64("axis", -1)],
                        num_outputs=len(nodes), name=f"{nodes[0].name}_split")
        # insert before the first member, so every consumer comes after
        order = {n: i for i, n in enumerate(graph)}
        first = min(nodes, key=order.__getitem__)
        graph.insert_before(first, [matmul, split])
        for node, out in zip(nodes, split.outputs):
            old = node.outputs[0]
            name, old.name = old.name, None
            out.name, out.shape, out.type = name, old.shape, old.type
            ir.convenience.replace_all_uses_with(old, out, replace_graph_outputs=True)
            graph.remove(node, safe=True)
