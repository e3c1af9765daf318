"""Each of onnxdeploy's own passes on a small model built for it, with a pattern that must not fire."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common  # noqa: F401 - ir.passes.common
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy.passes import (
    CountedResult,
    FuseConvActivationPass,
    FuseConvBatchNormPass,
    MatMulAddToGemmPass,
    RemoveRedundantChainsPass,
)

RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def make(nodes, inputs, outputs, inits=(), opset=17) -> ir.Model:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto = onnx.shape_inference.infer_shapes(proto)
    return ir.serde.deserialize_model(proto)


def run(model: ir.Model, feeds: dict) -> list[np.ndarray]:
    proto = ir.serde.serialize_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(
        None, feeds)


def apply(pass_, model: ir.Model, feeds: dict, *, expect_modified: bool, check: bool = True):
    """Run ``pass_`` + dead-code removal on a copy; assert numerics equal, the model is valid, and the result carries
    the pass's count (an onnx-ir PassResult: rewrites > 0 exactly when it modified the model)."""
    before = run(model, feeds)
    work = model.clone()
    result = pass_(work)
    assert isinstance(result, CountedResult) and isinstance(result, ir.passes.PassResult)
    assert result.modified is expect_modified
    assert (result.rewrites > 0) is expect_modified and result.details["rewrites"] == result.rewrites
    assert not hasattr(pass_, "count")  # counts travel in the result, never in the pass object
    ir.passes.common.RemoveUnusedNodesPass()(work)
    after = run(work, feeds)
    for a, b in zip(before, after):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    if check:
        onnx.checker.check_model(ir.serde.serialize_model(work), full_check=True)
    return work


def ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def bn_inits(c=4):
    return {"s": randn(c) + 2, "b": randn(c), "m": randn(c), "v": np.abs(randn(c)) + 0.5}


# ---------------------------------------------------------------- Conv + BatchNormalization


def test_conv_bn_without_bias_folds():
    model = make(
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], epsilon=1e-3)],
        [("x", F, [1, 3, 8, 8])], [("y", F, None)], {"w": randn(4, 3, 3, 3), **bn_inits()},
    )
    work = apply(FuseConvBatchNormPass(), model, {"x": randn(1, 3, 8, 8)}, expect_modified=True)
    assert ops(work) == ["Conv"]
    assert len(list(work.graph)[0].inputs) == 3


def test_conv_bn_with_castlike_computed_zero_bias_folds():
    """The ResNet-50 dynamo optimize=False case: the bias is CastLike(0, x) expanded, not an initializer."""
    zero = helper.make_tensor("zero", F, [], [0.0])
    model = make(
        [helper.make_node("Constant", [], ["z"], value=zero),
         helper.make_node("CastLike", ["z", "x"], ["zc"]),
         helper.make_node("Expand", ["zc", "n"], ["bias"]),
         helper.make_node("Conv", ["x", "w", "bias"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])],
        [("x", F, [1, 3, 8, 8])], [("y", F, None)],
        {"w": randn(4, 3, 1, 1), "n": np.array([4], dtype=np.int64), **bn_inits()},
    )
    # fold the bias computation first (as the pipeline does), then our pass sees a constant bias
    import onnxscript.optimizer

    work = model.clone()
    onnxscript.optimizer.fold_constants(work)
    assert "BatchNormalization" in ops(work)
    work = apply(FuseConvBatchNormPass(), work, {"x": randn(1, 3, 8, 8)}, expect_modified=True)
    assert ops(work) == ["Conv"]


def test_conv_bn_shared_weight_stays_for_other_user():
    model = make(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"]),
         helper.make_node("Conv", ["x", "w"], ["y2"])],
        [("x", F, [1, 3, 4, 4])], [("y", F, None), ("y2", F, None)], {"w": randn(4, 3, 1, 1), **bn_inits()},
    )
    work = apply(FuseConvBatchNormPass(), model, {"x": randn(1, 3, 4, 4)}, expect_modified=True)
    assert ops(work) == ["Conv", "Conv"]
    assert "w" in work.graph.initializers  # still used, unchanged, by the second Conv


def test_conv_bn_does_not_fire_when_conv_output_is_shared():
    model = make(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"]),
         helper.make_node("Relu", ["c"], ["r"])],
        [("x", F, [1, 3, 4, 4])], [("y", F, None), ("r", F, None)], {"w": randn(4, 3, 1, 1), **bn_inits()},
    )
    work = apply(FuseConvBatchNormPass(), model, {"x": randn(1, 3, 4, 4)}, expect_modified=False)
    assert "BatchNormalization" in ops(work)


def test_conv_bn_does_not_fire_on_weight_from_graph_input():
    model = make(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"])],
        [("x", F, [1, 3, 4, 4]), ("w", F, [4, 3, 1, 1])], [("y", F, None)], bn_inits(),
    )
    apply(FuseConvBatchNormPass(), model, {"x": randn(1, 3, 4, 4), "w": randn(4, 3, 1, 1)}, expect_modified=False)


# ---------------------------------------------------------------- Conv/Gemm + activation


def test_conv_relu_and_gemm_sigmoid_fuse_to_contrib_ops():
    model = make(
        [helper.make_node("Conv", ["x", "w", "cb"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("Gemm", ["f", "gw", "gb"], ["g"]),
         helper.make_node("Sigmoid", ["g"], ["y"])],
        [("x", F, [1, 3, 4, 4])], [("y", F, None)],
        {"w": randn(2, 3, 3, 3), "cb": randn(2), "gw": randn(8, 5), "gb": randn(5)},
    )
    work = apply(FuseConvActivationPass(), model, {"x": randn(1, 3, 4, 4)}, expect_modified=True, check=False)
    assert ops(work) == ["FusedConv", "Flatten", "FusedGemm"]
    assert work.opset_imports["com.microsoft"] == 1


def test_conv_activation_does_not_fire_on_silu_or_shared_output():
    model = make(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Sigmoid", ["c"], ["s"]),
         helper.make_node("Mul", ["c", "s"], ["y"])],
        [("x", F, [1, 3, 4, 4])], [("y", F, None)], {"w": randn(2, 3, 1, 1)},
    )
    apply(FuseConvActivationPass(), model, {"x": randn(1, 3, 4, 4)}, expect_modified=False)


# ---------------------------------------------------------------- MatMul + Add -> Gemm


def test_matmul_add_becomes_gemm():
    model = make(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["bias", "m"], ["y"])],
        [("x", F, [3, 4])], [("y", F, None)], {"w": randn(4, 5), "bias": randn(5)},
    )
    work = apply(MatMulAddToGemmPass(), model, {"x": randn(3, 4)}, expect_modified=True)
    assert ops(work) == ["Gemm"]


@pytest.mark.parametrize(
    "x_shape, bias_shape",
    [([2, 3, 4], [5]),  # batched MatMul: Gemm is 2-D only
     ([3, 4], [1, 3, 5])],  # a bias that raises the output rank
)
def test_matmul_add_does_not_fire(x_shape, bias_shape):
    model = make(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "bias"], ["y"])],
        [("x", F, x_shape)], [("y", F, None)], {"w": randn(4, 5), "bias": randn(*bias_shape)},
    )
    work = apply(MatMulAddToGemmPass(), model, {"x": randn(*x_shape)}, expect_modified=False)
    assert ops(work) == ["MatMul", "Add"]


@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_of_a_transposed_weight_reads_it_with_trans_b(with_bias):
    """GPT-2's LM head: MatMul(x, Transpose(embedding)), the embedding also read by a Gather: it stays one tensor."""
    nodes = [helper.make_node("Transpose", ["table"], ["t"], perm=[1, 0]),
             helper.make_node("MatMul", ["x", "t"], ["m" if with_bias else "y"]),
             helper.make_node("Gather", ["table", "ids"], ["g"])]
    if with_bias:
        nodes.append(helper.make_node("Add", ["m", "bias"], ["y"]))
    model = make(nodes, [("x", F, [3, 4]), ("ids", TensorProto.INT64, [2])], [("y", F, None), ("g", F, None)],
                 {"table": randn(6, 4), "bias": randn(6)})
    work = apply(MatMulAddToGemmPass(), model, {"x": randn(3, 4), "ids": np.array([0, 5])}, expect_modified=True)
    assert sorted(ops(work)) == ["Gather", "Gemm"]
    gemm = next(n for n in work.graph if n.op_type == "Gemm")
    assert gemm.inputs[1].name == "table" and gemm.attributes["transB"].as_int() == 1
    assert len(gemm.inputs) == (3 if with_bias else 2)


def test_plain_matmul_and_a_non_swapping_transpose_stay():
    model = make([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", F, [3, 4])], [("y", F, None)],
                 {"w": randn(4, 5)})
    apply(MatMulAddToGemmPass(), model, {"x": randn(3, 4)}, expect_modified=False)
    model = make([helper.make_node("Transpose", ["w"], ["t"], perm=[0, 2, 1]),
                  helper.make_node("MatMul", ["x", "t"], ["y"])], [("x", F, [2, 3, 4])], [("y", F, None)],
                 {"w": randn(2, 5, 4)})
    apply(MatMulAddToGemmPass(), model, {"x": randn(2, 3, 4)}, expect_modified=False)


# ---------------------------------------------------------------- redundant chains


def test_redundant_chains_removed():
    model = make(
        [helper.make_node("Squeeze", ["x", "ax"], ["s"]), helper.make_node("Unsqueeze", ["s", "ax"], ["u"]),
         helper.make_node("Cast", ["u"], ["c1"], to=TensorProto.DOUBLE),
         helper.make_node("Cast", ["c1"], ["c2"], to=F),
         helper.make_node("Transpose", ["c2"], ["t1"], perm=[0, 2, 1]),
         helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 2, 1]),
         helper.make_node("Reshape", ["t2", "shape"], ["r"]),
         helper.make_node("Add", ["r", "zeros"], ["a"]),
         helper.make_node("Relu", ["a"], ["y"])],
        [("x", F, [1, 3, 4])], [("y", F, None)],
        {"ax": np.array([0], dtype=np.int64), "shape": np.array([1, 3, 4], dtype=np.int64),
         "zeros": np.zeros(4, np.float32)},
    )
    work = apply(RemoveRedundantChainsPass(), model, {"x": randn(1, 3, 4)}, expect_modified=True)
    assert ops(work) == ["Relu"]


def test_redundant_chains_keep_lossy_and_shape_changing_pairs():
    model = make(
        [helper.make_node("Cast", ["x"], ["c1"], to=TensorProto.FLOAT16),  # float32 -> float16 is lossy
         helper.make_node("Cast", ["c1"], ["c2"], to=F),
         helper.make_node("Transpose", ["c2"], ["t1"], perm=[0, 2, 1]),
         helper.make_node("Transpose", ["t1"], ["t2"], perm=[1, 0, 2]),  # does not compose to identity
         helper.make_node("Add", ["t2", "zeros"], ["y"])],  # zeros (2, 1, 3, 4) broadcast raises the rank
        [("x", F, [1, 3, 4])], [("y", F, None)], {"zeros": np.zeros((2, 1, 1, 1), np.float32)},
    )
    work = apply(RemoveRedundantChainsPass(), model, {"x": randn(1, 3, 4)}, expect_modified=False)
    assert ops(work) == ["Cast", "Cast", "Transpose", "Transpose", "Add"]


# ---------------------------------------------------------------- remaining constants


def test_fold_remaining_evaluates_all_constant_nodes_onnxscript_leaves():
    """GatherElements on a constant buffer: the onnxscript folder's reference evaluator fails on it."""
    from onnxdeploy.passes import FoldRemainingConstantsPass

    model = make(
        [helper.make_node("GatherElements", ["buf", "idx"], ["g"], axis=1),
         helper.make_node("Gather", ["table", "g"], ["e"]), helper.make_node("Add", ["x", "e"], ["y"])],
        [("x", F, [1, 4, 3])], [("y", F, None)],
        {"buf": np.arange(8, dtype=np.int64).reshape(1, 8), "idx": np.array([[0, 1, 2, 3]], np.int64),
         "table": randn(8, 3)},
    )
    work = apply(FoldRemainingConstantsPass(), model, {"x": randn(1, 4, 3)}, expect_modified=True)
    assert ops(work) == ["Add"]


def test_fold_remaining_respects_limit_and_keeps_constant_of_shape():
    from onnxdeploy.passes import FoldRemainingConstantsPass

    model = make(
        [helper.make_node("Tile", ["row", "reps"], ["t"]),
         helper.make_node("ConstantOfShape", ["shape"], ["z"], value=helper.make_tensor("v", F, [1], [0.0])),
         helper.make_node("Add", ["x", "t"], ["a"]), helper.make_node("Add", ["a", "z"], ["y"])],
        [("x", F, [64, 64])], [("y", F, None)],
        {"row": randn(1, 64), "reps": np.array([64, 1], np.int64), "shape": np.array([64, 64], np.int64)},
    )
    work = apply(FoldRemainingConstantsPass(limit_elements=1000), model, {"x": randn(64, 64)},
                 expect_modified=False)
    assert ops(work) == ["Tile", "ConstantOfShape", "Add", "Add"]


def test_fold_remaining_does_not_evaluate_an_output_declared_over_the_limit(monkeypatch):
    """The Transpose of a tied embedding (GPT-2's LM head): its declared shape is over the limit, so it is never
    evaluated (evaluating copied the 150 MB weight three times, only to throw the result away)."""
    from onnxdeploy.passes import FoldRemainingConstantsPass
    from onnxdeploy.passes import fold_remaining

    model = make(
        [helper.make_node("Transpose", ["emb"], ["t"], perm=[1, 0]), helper.make_node("MatMul", ["x", "t"], ["y"]),
         helper.make_node("Transpose", ["small"], ["s"], perm=[1, 0]), helper.make_node("MatMul", ["y", "s"], ["z"])],
        [("x", F, [2, 16])], [("z", F, None)], {"emb": randn(64, 16), "small": randn(3, 64)},
    )
    evaluated = []
    real = fold_remaining._evaluate

    def spy(node, arrays, opset):
        evaluated.append(node.op_type + str(arrays[0].shape))
        return real(node, arrays, opset)

    monkeypatch.setattr(fold_remaining, "_evaluate", spy)
    work = apply(FoldRemainingConstantsPass(limit_elements=500), model, {"x": randn(2, 16)}, expect_modified=True)
    assert evaluated == ["Transpose(3, 64)"]  # the small one folds; the 64x16 one (1024 > 500) is not evaluated
    assert ops(work) == ["Transpose", "MatMul", "MatMul"]


# ---------------------------------------------------------------- parallel MatMuls


def test_parallel_matmuls_merge_into_one_and_split():
    from onnxdeploy.passes import MergeParallelMatMulPass

    model = make(
        [helper.make_node("MatMul", ["x", "wq"], ["q"]), helper.make_node("MatMul", ["x", "wk"], ["k"]),
         helper.make_node("MatMul", ["x", "wv"], ["v"]), helper.make_node("Add", ["q", "k"], ["qk"]),
         helper.make_node("Mul", ["qk", "v"], ["y"])],
        [("x", F, [2, 5, 8])], [("y", F, None)], {"wq": randn(8, 4), "wk": randn(8, 4), "wv": randn(8, 4)},
    )
    work = apply(MergeParallelMatMulPass(), model, {"x": randn(2, 5, 8)}, expect_modified=True)
    assert ops(work) == ["MatMul", "Split", "Add", "Mul"]


def test_parallel_matmuls_with_shared_or_non_constant_weights_do_not_merge():
    from onnxdeploy.passes import MergeParallelMatMulPass

    model = make(
        [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["x", "w2"], ["b"]),
         helper.make_node("MatMul", ["b", "w"], ["c"]),  # w is shared with a MatMul of another input
         helper.make_node("MatMul", ["x", "wg"], ["d"]),  # wg is a graph input, not a constant
         helper.make_node("Add", ["a", "c"], ["y"])],
        [("x", F, [5, 4]), ("wg", F, [4, 4])], [("y", F, None), ("d", F, None)],
        {"w": randn(4, 4), "w2": randn(4, 4)},
    )
    work = apply(MergeParallelMatMulPass(), model, {"x": randn(5, 4), "wg": randn(4, 4)}, expect_modified=False)
    assert ops(work).count("MatMul") == 4


# ---------------------------------------------------------------- Reshape -> Gemm -> Reshape


def _reshape_gemm_model(out_shape, trans_b=0):
    w = randn(6, 4) if trans_b else randn(4, 6)
    return make(
        [helper.make_node("Reshape", ["x", "s1"], ["r"]),
         helper.make_node("Gemm", ["r", "w", "b"], ["g"], transB=trans_b),
         helper.make_node("Reshape", ["g", "s2"], ["y"])],
        [("x", F, [2, 3, 4])], [("y", F, None)],
        {"s1": np.array([-1, 4], np.int64), "w": w, "b": randn(6), "s2": np.array(out_shape, np.int64)},
    )


@pytest.mark.parametrize("trans_b", [0, 1])
def test_reshape_gemm_reshape_becomes_matmul_add(trans_b):
    from onnxdeploy.passes import ReshapeGemmToMatMulPass

    model = _reshape_gemm_model([2, 3, 6], trans_b)
    work = apply(ReshapeGemmToMatMulPass(), model, {"x": randn(2, 3, 4)}, expect_modified=True)
    assert ops(work) == ["MatMul", "Add"]


def test_reshape_gemm_reshape_that_changes_leading_dims_is_kept():
    from onnxdeploy.passes import ReshapeGemmToMatMulPass

    model = _reshape_gemm_model([3, 2, 6])
    work = apply(ReshapeGemmToMatMulPass(), model, {"x": randn(2, 3, 4)}, expect_modified=False)
    assert ops(work) == ["Reshape", "Gemm", "Reshape"]


def test_reshape_gemm_reshape_on_4d_attention_output_keeps_one_reshape():
    from onnxdeploy.passes import ReshapeGemmToMatMulPass

    model = make(
        [helper.make_node("Reshape", ["x", "s1"], ["r"]), helper.make_node("Gemm", ["r", "w", "b"], ["g"]),
         helper.make_node("Reshape", ["g", "s2"], ["y"])],
        [("x", F, [2, 3, 2, 2])], [("y", F, None)],
        {"s1": np.array([-1, 4], np.int64), "w": randn(4, 6), "b": randn(6), "s2": np.array([2, 3, 6], np.int64)},
    )
    work = apply(ReshapeGemmToMatMulPass(), model, {"x": randn(2, 3, 2, 2)}, expect_modified=True)
    assert ops(work) == ["Reshape", "MatMul", "Add"]


def _slices_and_convs_model() -> ir.Model:
    """Two Slices of one input (tried by the onnxscript SlicesSplit rule) beside a Conv + BatchNormalization."""
    return make(
        [helper.make_node("Slice", ["x", "s0", "e0", "ax"], ["a"]),
         helper.make_node("Slice", ["x", "s1", "e1", "ax"], ["a2"]),
         helper.make_node("Add", ["a", "a2"], ["y"]),
         helper.make_node("Conv", ["img", "w"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["z"])],
        [("x", F, [2, 8]), ("img", F, [1, 4, 5, 5])], [("y", F, [2, 4]), ("z", F, [1, 4, 3, 3])],
        {"s0": np.array([0]), "e0": np.array([4]), "s1": np.array([4]), "e1": np.array([8]), "ax": np.array([-1]),
         "w": randn(4, 4, 3, 3), **bn_inits()},
        opset=18,
    )


def test_indexed_rewrite_gives_the_onnxscript_optimizers_result():
    import onnxscript.optimizer

    from onnxdeploy.passes.rewrite import optimize_ir

    original = _slices_and_convs_model()
    ours, theirs = original.clone(), original.clone()
    optimize_ir(ours, input_size_limit=1 << 20, output_size_limit=1 << 20)
    onnxscript.optimizer.optimize(theirs, input_size_limit=1 << 20, output_size_limit=1 << 20)
    assert ops(ours) == ops(theirs) == ["Slice", "Slice", "Add", "Conv"]  # BatchNormalization folded
    feeds = {"x": randn(2, 8), "img": randn(1, 4, 5, 5)}
    for a, b in zip(run(ours, feeds), run(original, feeds)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_indexed_rewrite_never_tries_a_rule_whose_ops_are_absent(monkeypatch):
    from onnxscript.rewriter import _DEFAULT_REWRITE_RULES
    from onnxscript.rewriter.rules.common._basic_rules import slice_split_rule

    from onnxdeploy.passes.rewrite import IndexedRewritePass

    tried = []
    monkeypatch.setattr(slice_split_rule, "try_rewrite", lambda *a, **k: tried.append(a[2].op_type))
    model = make([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Slice", ["r", "s", "e"], ["y"])],
                 [("x", F, [2, 8])], [("y", F, None)], {"s": np.array([0]), "e": np.array([4])})
    IndexedRewritePass(_DEFAULT_REWRITE_RULES)(model)
    assert tried == ["Slice"]  # only on the Slice, never on the Relu
    tried.clear()
    no_slice = make([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2, 8])], [("y", F, [2, 8])])
    IndexedRewritePass(_DEFAULT_REWRITE_RULES)(no_slice)
    assert tried == []


# ---------------------------------------------------------------- results carry the counts


def _two_conv_bns() -> ir.Model:
    return make(
        [helper.make_node("Conv", ["x", "w"], ["c"]),
         helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"]),
         helper.make_node("Conv", ["x", "w2"], ["c2"]),
         helper.make_node("BatchNormalization", ["c2", "s", "b", "m", "v"], ["y2"])],
        [("x", F, [1, 3, 4, 4])], [("y", F, None), ("y2", F, None)],
        {"w": randn(4, 3, 1, 1), "w2": randn(4, 3, 1, 1), **bn_inits()},
    )


def test_each_run_returns_its_own_count_and_the_pass_manager_takes_the_result():
    pass_ = FuseConvBatchNormPass()
    first = pass_(_two_conv_bns())
    assert first.details == {"rewrites": 2} and first.modified
    again = pass_(first.model)  # nothing left to fold: the count is this run's, not a running total
    assert again.details == {"rewrites": 0} and not again.modified
    managed = ir.passes.PassManager([FuseConvBatchNormPass(), RemoveRedundantChainsPass()])(_two_conv_bns())
    assert managed.modified and ops(managed.model) == ["Conv", "Conv"]


def test_indexed_rewrite_result_counts_the_rules_that_fired():
    from onnxscript.rewriter import _DEFAULT_REWRITE_RULES

    from onnxdeploy.passes.rewrite import IndexedRewritePass

    model = make([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                  helper.make_node("Transpose", ["t"], ["y"], perm=[1, 0])], [("x", F, [2, 3])], [("y", F, [2, 3])])
    result = IndexedRewritePass(_DEFAULT_REWRITE_RULES)(model)
    assert isinstance(result, CountedResult) and result.rewrites >= 1 and result.modified
    nothing = IndexedRewritePass(_DEFAULT_REWRITE_RULES)(
        make([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [("y", F, [2])]))
    assert nothing.details == {"rewrites": 0} and not nothing.modified
