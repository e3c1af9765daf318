"""Partial shape folding (:class:`onnxdeploy.passes.FoldPartialShapesPass`, step ``fold-shapes``): shape arithmetic
over the static dims of tensors with a symbolic batch folds, the batch stays symbolic, results verify at two sizes."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import optimize
from onnxdeploy.passes import FoldPartialShapesPass

F, I64 = TensorProto.FLOAT, TensorProto.INT64
INT_MAX = np.iinfo(np.int64).max


def make(nodes, outputs, inits=(), x_shape=("N", 4, 6), opset=18) -> ir.Model:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", F, list(x_shape))],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    return ir.serde.deserialize_model(onnx.shape_inference.infer_shapes(proto))


def ops(model: ir.Model) -> Counter:
    return Counter(n.op_type for n in model.graph)


def optimized(model: ir.Model, **kwargs):
    """optimize() with its default verification: symbolic batch -> compared with the original at two sizes."""
    result = optimize(model, **kwargs)
    assert result.report.verified
    batches = {c.label for c in result.report.verification}
    assert len(result.report.verification) == 2, batches  # two shapes: the batch stayed symbolic
    assert result.model.graph.inputs[0].shape[0] == ir.SymbolicDim("N")
    return result


def step(result, name="fold-shapes"):
    return next(p for p in result.report.passes if p.name == name)


def test_shape_slice_concat_reshape_folds_to_a_constant_target():
    # x: [N, 4, 6]; Reshape(Transpose(x), Concat([-1], Shape(x)[1:])) -> the target is the constant [-1, 4, 6]
    model = make(
        [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
         helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Slice", ["s", "one", "big"], ["tail"]),
         helper.make_node("Concat", ["minus1", "tail"], ["target"], axis=0),
         helper.make_node("Reshape", ["t", "target"], ["r"]),
         helper.make_node("Add", ["r", "x"], ["y"])],
        [("y", F, ["N", 4, 6])], {"one": np.array([1]), "big": np.array([INT_MAX]), "minus1": np.array([-1])})
    result = optimized(model)
    assert ops(result.model) == Counter({"Transpose": 1, "Reshape": 1, "Add": 1})
    target = result.model.graph.node(1).inputs[1] if result.model.graph.node(1).op_type == "Reshape" else None
    reshape = next(n for n in result.model.graph if n.op_type == "Reshape")
    assert reshape.inputs[1].const_value.numpy().tolist() == [-1, 4, 6], target
    assert step(result).details["constants"] >= 1


def test_concat_of_gather_of_the_batch_and_constants_keeps_one_gather_and_one_constant():
    # ConstantOfShape(Concat(Gather(Shape(x), [0]), Gather(Shape(x), [1]) * Gather(Shape(x), [2]))) -> [N, 24]
    model = make(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "i0"], ["b"], axis=0),
         helper.make_node("Gather", ["s", "i1"], ["h"], axis=0),
         helper.make_node("Gather", ["s", "i2"], ["w"], axis=0),
         helper.make_node("Mul", ["h", "w"], ["hw"]),
         helper.make_node("Concat", ["b", "hw"], ["c"], axis=0),
         helper.make_node("ConstantOfShape", ["c"], ["y"],
                          value=numpy_helper.from_array(np.array([1.0], np.float32)))],
        [("y", F, ["N", 24])], {"i0": np.array([0]), "i1": np.array([1]), "i2": np.array([2])})
    result = optimized(model)
    assert ops(result.model) == Counter({"Shape": 1, "Gather": 1, "Concat": 1, "ConstantOfShape": 1})
    concat = next(n for n in result.model.graph if n.op_type == "Concat")
    assert [v.producer().op_type if v.producer() else "constant" for v in concat.inputs] == ["Gather", "constant"]
    assert concat.inputs[1].const_value.numpy().tolist() == [24]


def test_size_of_a_static_tensor_folds_while_the_symbolic_input_stays():
    model = make(
        [helper.make_node("ReduceSum", ["x", "axes0"], ["r"], keepdims=0),  # [4, 6]
         helper.make_node("Size", ["r"], ["n"]),
         helper.make_node("Unsqueeze", ["n", "axes0"], ["n1"]),
         helper.make_node("Concat", ["minus1", "n1"], ["target"], axis=0),
         helper.make_node("Reshape", ["x", "target"], ["y"])],
        [("y", F, ["N", 24])], {"axes0": np.array([0]), "minus1": np.array([-1])})
    result = optimized(model)
    assert ops(result.model) == Counter({"Reshape": 1})
    assert result.model.graph.outputs[0].shape[0] == ir.SymbolicDim("N")


def test_constant_of_shape_of_static_dims_folds():
    model = make(
        [helper.make_node("Shape", ["x"], ["s"], start=1),  # [4, 6]
         helper.make_node("ConstantOfShape", ["s"], ["z"],
                          value=numpy_helper.from_array(np.array([2.0], np.float32))),
         helper.make_node("Mul", ["x", "z"], ["y"])],
        [("y", F, ["N", 4, 6])])
    result = optimized(model)
    assert ops(result.model) == Counter({"Mul": 1})


def test_equal_where_of_shape_values_fold_and_the_batch_is_copied_in_a_reshape_target():
    # TorchScript's pattern: Where(Equal(shape, -1), ones, shape): a dim is never -1; Reshape copies the batch (0)
    model = make(
        [helper.make_node("Reshape", ["x", "flat"], ["x2"]),  # [N, 24]
         helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Equal", ["s", "minus1"], ["eq"]),
         helper.make_node("Where", ["eq", "ones", "s"], ["target"]),
         helper.make_node("Reshape", ["x2", "target"], ["y"])],
        [("y", F, ["N", 4, 6])], {"flat": np.array([0, 24]), "minus1": np.array([-1]), "ones": np.ones(3, np.int64)})
    folded = model.clone()
    details = FoldPartialShapesPass()(folded).details
    assert details["reshape_targets"] == 1 and ops(folded) == Counter({"Reshape": 2})
    assert folded.graph.node(-1).inputs[1].const_value.numpy().tolist() == [0, 4, 6]
    result = optimized(model)
    assert ops(result.model) == Counter({"Reshape": 1})  # the chains step merges the two Reshapes


def test_a_computation_that_reads_the_symbolic_batch_is_not_folded():
    # y = x * N: the batch is read as data; folding it would be wrong at any other batch (verification would fail)
    model = make(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
         helper.make_node("Cast", ["n"], ["nf"], to=F),
         helper.make_node("Mul", ["x", "nf"], ["y"])],
        [("y", F, ["N", 4, 6])], {"i0": np.array(0)})
    result = optimized(model)
    assert ops(result.model) == Counter({"Shape": 1, "Gather": 1, "Cast": 1, "Mul": 1})
    work = model.clone()
    assert FoldPartialShapesPass()(work).modified is False


def test_pass_counts_each_rule_and_leaves_a_valid_model():
    model = make(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Slice", ["s", "one", "big"], ["tail"]),
         helper.make_node("Concat", ["minus1", "tail"], ["target"], axis=0),
         helper.make_node("Reshape", ["x", "target"], ["y"])],
        [("y", F, ["N", 4, 6])], {"one": np.array([1]), "big": np.array([INT_MAX]), "minus1": np.array([-1])})
    result = FoldPartialShapesPass()(model)
    assert result.modified and result.details["constants"] == 2 and result.rewrites == 2  # Slice, then Concat
    assert ops(model) == Counter({"Reshape": 1})
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import corpus

    out = tmp_path_factory.mktemp("corpus")

    def export(arch):  # a tiny dynamo export is ~20 s on 2 busy cores (torch import included): one by default
        return corpus.export_corpus_model(arch, out, exporter="dynamo", optimize=True, tiny=True, dynamic="batch",
                                          opset=18, verify=False, attention="sdpa")

    return export


@pytest.mark.parametrize("arch", ["bert", pytest.param("vit", marks=pytest.mark.slow)])
def test_tiny_transformers_dynamo_export_loses_its_shape_chains(tiny_exports, arch):
    shape_ops = ("Shape", "Slice", "Concat")
    path = tiny_exports(arch)
    before = optimize(path, skip=("fold-shapes",), verify=False)
    after = optimize(path)
    assert after.report.verified and len(after.report.verification) == 2
    count = lambda r: sum(r.report.after.ops.get(op, 0) for op in shape_ops)  # noqa: E731
    assert count(after) < count(before), (before.report.after.ops, after.report.after.ops)
    assert after.report.after.nodes < before.report.after.nodes
    assert not isinstance(after.model.graph.inputs[0].shape[0], int)  # the batch stays symbolic


@pytest.mark.parametrize("start,end,step", [(1, INT_MAX, 1), (-2, -1, 1), (-INT_MAX, -2, 1), (-1, -INT_MAX, -1),
                                            (3, 0, -2), (10, 2, -1), (0, 0, 1), (-7, 2, 1)])
def test_slice_of_a_shape_folds_to_onnxruntimes_result(start, end, step):
    import onnxruntime as ort

    model = make(
        [helper.make_node("Shape", ["x"], ["s"]),
         helper.make_node("Slice", ["s", "b", "e", "a", "st"], ["y"]),
         helper.make_node("Identity", ["y"], ["out"])],
        [("out", I64, None)], {"b": np.array([start]), "e": np.array([end]), "a": np.array([0]),
                               "st": np.array([step])}, x_shape=(2, 3, 4, 5))
    proto = ir.serde.serialize_model(model).SerializeToString()
    expected = ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(
        None, {"x": np.zeros((2, 3, 4, 5), np.float32)})[0]
    assert FoldPartialShapesPass()(model).details["constants"] == 2  # Shape (static here), then Slice
    identity = next(n for n in model.graph if n.op_type == "Identity")
    assert identity.inputs[0].const_value.numpy().tolist() == expected.tolist()
