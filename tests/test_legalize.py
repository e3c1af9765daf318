"""Legalization: every rule numerically equal to the op it replaces; opset and int64 changes; what stays."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxdeploy._legalize import RULES, legalize, verify_rule
from tests.test_targets import ascend_path  # noqa: F401 - fixture


@pytest.mark.parametrize("op", sorted(k for k in RULES if "::" not in k))
def test_rule_is_numerically_equal(op):
    ops, comparison = verify_rule(op)
    assert op not in ops and comparison.passed, comparison.summary()


@pytest.mark.parametrize("op,attrs", [("Gelu", {"approximate": "tanh"}), ("LeakyRelu", {"alpha": 0.3}),
                                      ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}), ("Elu", {"alpha": 0.5}),
                                      ("Celu", {"alpha": 2.0}), ("ThresholdedRelu", {"alpha": 0.5})])
def test_rule_honours_attributes(op, attrs):
    _, comparison = verify_rule(op, **attrs)
    assert comparison.passed, comparison.summary()


def test_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="no legalization rule for 'Foo'"):
        verify_rule("Foo")


def test_legalize_for_ascend_fixes_what_it_can_and_lists_the_rest(ascend_path, tmp_path):  # noqa: F811
    out = tmp_path / "legal.onnx"
    assert legalize(ascend_path, "ascend", output=out).report.output is None and not out.exists()
    result = legalize(ascend_path, "ascend", output=out, keep_partial=True)
    rep = result.report
    assert rep.rules_applied == {"Gelu": 1} and (rep.opset_before, rep.opset_after) == (20, 18)
    assert "input ids: int64 -> int32" in rep.int64_changes
    assert any("gather input 1 (idx): int64 constant -> int32" in c for c in rep.int64_changes)
    assert rep.verification.passed
    assert rep.verification.allowed_changes == ["dtypes: input 'ids' is int32, was int64"]  # the narrowing only
    assert [(p.what, p.nodes) for p in rep.remaining] == [("Det", ["det"])] and not rep.legal
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert "Gelu" not in {n.op_type for n in proto.graph.node}
    assert proto.graph.input[1].type.tensor_type.elem_type == TensorProto.INT32


def test_legalize_leaves_a_legal_model_alone(conv_bn_silu_path):
    rep = legalize(conv_bn_silu_path, "openvino").report
    assert not rep.changed and rep.legal and rep.verification.passed


def test_int64_output_gets_a_cast_for_targets_without_int64(tmp_path):
    m = helper.make_model(helper.make_graph(
        [helper.make_node("ArgMax", ["x"], ["am"], name="argmax", axis=1, keepdims=0)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [helper.make_tensor_value_info("am", TensorProto.INT64, [2])]), opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp_path / "argmax.onnx")
    result = legalize(tmp_path / "argmax.onnx", "ascend")
    assert result.report.legal and result.report.verification.passed
    assert result.model.graph.outputs[0].dtype.name == "INT32"
    assert result.report.verification.allowed_changes == ["dtypes: output 'am' is int32, was int64"]


def test_verify_allows_only_the_int64_narrowing_not_another_dtype_change():
    import onnx_ir as ir

    from onnxdeploy._legalize import _verify

    def model(ids_type, x_type):
        return helper.make_model(helper.make_graph(
            [helper.make_node("Cast", ["ids"], ["i"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT), helper.make_node("Add", ["i", "f"], ["y"])],
            "g", [helper.make_tensor_value_info("ids", ids_type, [2]), helper.make_tensor_value_info("x", x_type, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])]), opset_imports=[helper.make_opsetid("", 17)])

    original = model(TensorProto.INT64, TensorProto.FLOAT)
    narrowed = _verify(original, ir.serde.deserialize_model(model(TensorProto.INT32, TensorProto.FLOAT)),
                       inputs=None, dims=None, atol=1e-4, rtol=1e-3, seed=0)
    assert narrowed.passed and narrowed.allowed_changes == ["dtypes: input 'ids' is int32, was int64"]
    widened = _verify(original, ir.serde.deserialize_model(model(TensorProto.INT32, TensorProto.DOUBLE)),
                      inputs=None, dims=None, atol=1e-4, rtol=1e-3, seed=0)
    assert widened.allowed_changes == ["dtypes: input 'ids' is int32, was int64"]
    assert not widened.passed and widened.interface_changes == ["dtypes: input 'x' is float64, was float32"]


def test_cli_legalize_fails_when_not_legal_and_writes_only_with_keep_partial(ascend_path, tmp_path, capsys):  # noqa: F811
    from onnxdeploy.cli.main import main

    out = tmp_path / "o.onnx"
    rc = main(["legalize", str(ascend_path), "--target", "ascend", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 1 and not out.exists() and not list(tmp_path.glob("o.*"))
    assert "rule Gelu" in captured.out and "still cannot take" in captured.err and "Det (det)" in captured.err
    assert "--keep-partial" in captured.err
    rc = main(["legalize", str(ascend_path), "--target", "ascend", "-o", str(out), "--keep-partial"])
    assert rc == 1 and out.exists() and "still cannot take" in capsys.readouterr().err


def test_token_ids_model_is_legal_for_ascend_after_legalize(tmp_path):
    """legalize's own Cast(int32 -> int64) of a token-id input must not leave the model 'not legal'."""
    from onnx import numpy_helper

    table = numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")
    m = helper.make_model(helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed")], "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", "seq", 4])], [table]),
        opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp_path / "tok.onnx")
    result = legalize(tmp_path / "tok.onnx", "ascend")
    rep = result.report
    assert rep.legal, [p.detail for p in rep.remaining]
    assert rep.int64_changes == ["input ids: int64 -> int32 (Cast to int64 inside)"]
    assert rep.verification.passed


def test_ir3_initializers_listed_as_inputs_are_left_alone(tmp_path):
    """IR 3 lists initializers as graph inputs: verification used to fail with KeyError, narrowing renamed them."""
    from onnx import numpy_helper

    nodes = [helper.make_node("ConstantOfShape", ["w__SHAPE"], ["w"], name="cos",
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["x", "w"], ["y"], name="add")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
                                       helper.make_tensor_value_info("w__SHAPE", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                          [numpy_helper.from_array(np.array([2, 3], np.int64), "w__SHAPE")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=3), tmp_path / "ir3.onnx")
    result = legalize(tmp_path / "ir3.onnx", "ascend", output=tmp_path / "out.onnx")
    assert result.report.legal and result.report.verification.passed
    assert result.report.int64_changes == []
    assert [v.name for v in result.model.graph.inputs] == ["x", "w__SHAPE"]


def test_cli_legalize_prints_warnings_as_notes_and_succeeds(tmp_path, capsys):
    from onnxdeploy.cli.main import main
    from tests.test_targets import _shape_arith_model

    onnx.save(_shape_arith_model(), tmp_path / "shape.onnx")
    rc = main(["legalize", str(tmp_path / "shape.onnx"), "--target", "ascend", "-o", str(tmp_path / "o.onnx")])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "note: int64" in captured.out + captured.err and "cannot fix" not in captured.err


def _contrib_model():
    """What `optimize --for-runtime onnxruntime --ort-fusions` and onnxruntime's transformer optimizer leave:
    onnxruntime contrib ops, which TensorRT, OpenVINO and Ascend do not read."""
    rng = np.random.default_rng(0)
    h = 8
    inits = {"gamma": rng.standard_normal(h) + 1, "beta": rng.standard_normal(h), "bias": rng.standard_normal(h),
             "w": rng.standard_normal((4, 2, 3, 3)) * 0.3, "cb": rng.standard_normal(4)}
    nodes = [
        helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["ln"],
                         domain="com.microsoft", epsilon=1e-5),
        helper.make_node("Gelu", ["ln"], ["g1"], domain="com.microsoft"),
        helper.make_node("BiasGelu", ["g1", "bias"], ["g2"], domain="com.microsoft"),
        helper.make_node("FastGelu", ["g2", "bias"], ["g3"], domain="com.microsoft"),
        helper.make_node("QuickGelu", ["g3"], ["y"], domain="com.microsoft", alpha=1.5),
        helper.make_node("FusedConv", ["img", "w", "cb"], ["c"], domain="com.microsoft", activation="LeakyRelu",
                         activation_params=[0.2], pads=[1, 1, 1, 1]),
        helper.make_node("FusedConv", ["img", "w"], ["c2"], domain="com.microsoft", activation="Clip",
                         activation_params=[-0.5, 0.5]),
    ]
    graph = helper.make_graph(
        nodes, "contrib",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, h]),
         helper.make_tensor_value_info("skip", TensorProto.FLOAT, [2, 3, h]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "c", "c2")],
        [onnx.numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])


def test_onnxruntime_contrib_ops_are_legalized_for_other_targets(tmp_path):
    path = tmp_path / "contrib.onnx"
    onnx.save(_contrib_model(), path)
    result = legalize(path, "tensorrt", output=tmp_path / "out.onnx")
    rep = result.report
    assert rep.legal and rep.verification.passed, rep.verification.summary()
    assert rep.rules_applied == {f"com.microsoft::{op}": n for op, n in [
        ("SkipLayerNormalization", 1), ("Gelu", 1), ("BiasGelu", 1), ("FastGelu", 1), ("QuickGelu", 1),
        ("FusedConv", 2)]}
    assert {n.domain for n in result.model.graph} <= {""}
    assert rep.verification.max_abs < 1e-5


def test_skip_layer_norm_with_its_mean_output_in_use_is_left_alone():
    import onnx_ir as ir

    from onnxdeploy._legalize import RULES, rule_fits

    node = helper.make_node("SkipLayerNormalization", ["x", "s", "g"], ["y", "mean"], domain="com.microsoft")
    graph = helper.make_graph([node, helper.make_node("Relu", ["mean"], ["r"])], "g",
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4]) for n in "xsg"],
                              [helper.make_tensor_value_info("r", TensorProto.FLOAT, None)])
    model = ir.serde.deserialize_model(helper.make_model(graph))
    assert not rule_fits(model.graph.node(0), RULES["com.microsoft::SkipLayerNormalization"], 17)
