"""The onnxscript rewriter's rules, applied only where they can match."""

from __future__ import annotations

from typing import Sequence

import onnx_ir as ir

from onnxdeploy.passes._util import CountedResult, counted


def _op_types(model: ir.Model) -> set[str]:
    types = {node.op_type for graph in model.graphs() for node in graph}
    for function in model.functions.values():
        types.update(node.op_type for node in function)
    return types


def _output_op_types(rule) -> list[str | None]:
    """The op type of each output node of the rule's pattern (None where it matches any op)."""
    nodes = rule._target_pattern.output_nodes  # noqa: SLF001 - the only place a rule exposes its pattern
    return [None if n.op_identifier() is None else n.op_identifier()[1] for n in nodes]


class _FirstOpGuard:
    """A rewrite rule that is only tried on nodes of its pattern's first output op type (the rule's own first
    check, made before its multi-output matcher scans the whole graph)."""

    def __init__(self, rule, op_type: str) -> None:
        self._rule, self._op_type = rule, op_type

    def __getattr__(self, name):
        return getattr(self._rule, name)

    def try_rewrite(self, model, graph_or_function, node, **kwargs):
        if node.op_type != self._op_type:
            return None
        return self._rule.try_rewrite(model, graph_or_function, node, **kwargs)


class IndexedRewritePass(ir.passes.InPlacePass):
    """Apply onnxscript rewrite rules like ``onnxscript.rewriter.RewritePass``, skipping the rules that cannot match.

    Rules:
    1. Before each application, a rule is dropped when an op type its pattern's output nodes require is absent from
       the model (main graph, subgraphs, functions).
    2. A rule is tried only on nodes of its pattern's first output op type (the first thing its matcher checks).
    3. Everything else is the onnxscript rule set unchanged. Why: a pattern with several output nodes (e.g.
       ``SlicesSplit``) scans the whole graph for every node it is tried on, O(nodes^2) per sweep: 0.4 s per
       sweep on an 1100-node MobileNetV2.
    4. A rule whose op type only appears through another rule's rewrite in the same sweep waits for the next
       iteration of the optimizer's loop.
    """

    def __init__(self, rules: Sequence) -> None:
        super().__init__()
        self.rules = tuple(rules)
        self._op_types = [_output_op_types(rule) for rule in self.rules]

    def call(self, model: ir.Model) -> CountedResult:
        from onnxscript.rewriter import pattern

        present = _op_types(model)
        rules = []
        for rule, op_types in zip(self.rules, self._op_types):
            if any(t is not None and t not in present for t in op_types):
                continue
            rules.append(rule if op_types[0] is None else _FirstOpGuard(rule, op_types[0]))
        count = pattern.RewriteRuleSet(rules).apply_to_model(model) if rules else 0
        return counted(model, count)


def optimize_ir(model: ir.Model, *, input_size_limit: int, output_size_limit: int,
                num_iterations: int = 2) -> None:
    """``onnxscript.optimizer.optimize_ir`` with its default rules applied by :class:`IndexedRewritePass`."""
    import onnx_ir.passes.common as common
    from onnxscript import rewriter
    from onnxscript.optimizer import _constant_folding

    from onnxdeploy._bounds import NODE_SHAPE_INFERENCE_LIMIT, node_count
    from onnxdeploy.passes.fold_remaining import fold_guard

    # per-node ONNX shape inference is ~70% of folding time: above the limit (100k-node graphs) it is skipped
    node_shapes = node_count(model) <= NODE_SHAPE_INFERENCE_LIMIT
    loop = ir.passes.PassManager(
        [
            _constant_folding.FoldConstantsPass(shape_inference=node_shapes, input_size_limit=input_size_limit,
                                                output_size_limit=output_size_limit,
                                                should_fold=fold_guard(output_size_limit)),
            IndexedRewritePass(rewriter._DEFAULT_REWRITE_RULES),  # noqa: SLF001 - the optimizer's own rule list
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),
            common.RemoveUnusedOpsetsPass(),
        ],
        steps=num_iterations,
        early_stop=True,
    )
    ir.passes.Sequential(
        common.InlinePass(),
        loop,
        common.RemoveUnusedNodesPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.LiftSubgraphInitializersToMainGraphPass(),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.OutputFixPass(),
        common.NameFixPass(),
    )(model)
