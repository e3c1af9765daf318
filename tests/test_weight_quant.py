"""Weight-only quantization (int4/int8 MatMulNBits): accuracy against fp32 (cosine, greedy token agreement),
verification with the int8-style tolerance, the CLI, and the error paths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxdeploy
from llm_models import tiny_decoder
from onnxdeploy.cli.main import main
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError


def _nbits(path) -> list[onnx.NodeProto]:
    return [n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMulNBits"]


def _attr(node, name):
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def test_int4_decoder_reports_cosine_agreement_and_speed(tmp_path):
    out = tmp_path / "llm.int4.onnx"
    report = onnxdeploy.quantize_weights(tiny_decoder(), out, weights="int4", block_size=32, new_tokens=8)
    nodes = _nbits(out)
    assert report.quantized == report.matmuls == len(nodes) > 0
    assert {_attr(n, "bits") for n in nodes} == {4} and {_attr(n, "block_size") for n in nodes} == {32}
    assert report.verification.passed and len(report.verification.comparisons) == 2  # prefill + decode step
    assert [c.label.split(" (")[0] for c in report.verification.comparisons] == ["prefill", "decode step"]
    assert "cosine >= 0.97" in report.verification.metric
    assert 0.97 <= report.logits_cosine < 1.0  # int4 changes the logits, a little
    gen = report.generation
    assert len(gen.reference_tokens) == len(gen.tokens) == len(gen.steps) == 8
    assert gen.reference_kind == "onnx" and all(s.cosine is not None for s in gen.steps)  # every step compared
    assert 0.0 <= report.token_agreement <= 1.0 and gen.min_cosine > 0.9
    assert report.fp32_speed.decode_tokens_per_s > 0 and report.quantized_speed.decode_tokens_per_s > 0
    assert report.output_bytes < report.input_bytes
    d = report.to_dict()
    assert d["token_agreement"] == report.token_agreement and d["generation"]["steps"][0]["step"] == 0


def test_int8_is_closer_than_int4_and_asymmetric_has_zero_points(tmp_path):
    int8 = onnxdeploy.quantize(tiny_decoder(), tmp_path / "w8.onnx", weights="int8", measure=False)
    int4 = onnxdeploy.quantize_weights(tiny_decoder(), tmp_path / "w4.onnx", symmetric=False, generate=False,
                                       measure=False)
    assert {_attr(n, "bits") for n in _nbits(tmp_path / "w8.onnx")} == {8}
    assert int8.logits_cosine > int4.logits_cosine and int8.logits_cosine > 0.99
    assert all(len(n.input) >= 4 and n.input[3] for n in _nbits(tmp_path / "w4.onnx"))  # zero points


def test_drift_beyond_the_bound_fails_and_writes_nothing(tmp_path):
    out = tmp_path / "w4.onnx"
    with pytest.raises(OutputsDisagree, match="int4 weights drift too far from fp32.*cosine"):
        onnxdeploy.quantize_weights(tiny_decoder(), out, min_cosine=0.99999, generate=False, measure=False)
    assert not out.exists()


def _plain_matmul(path) -> None:
    rng = np.random.default_rng(0)
    w = helper.make_tensor("w", TensorProto.FLOAT, [64, 32], rng.standard_normal((64, 32)).astype(np.float32).ravel())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_a_model_that_is_no_decoder_is_verified_at_two_shapes(tmp_path):
    _plain_matmul(tmp_path / "mm.onnx")
    report = onnxdeploy.quantize_weights(tmp_path / "mm.onnx", tmp_path / "mm.int8.onnx", weights="int8")
    assert report.generation is None and report.quantized == 1
    assert report.verification.passed and len(report.verification.comparisons) == 2


def test_errors_name_the_problem(tmp_path):
    _plain_matmul(tmp_path / "mm.onnx")
    with pytest.raises(UserInputError, match="--weights int3: not a weight type; did you mean"):
        onnxdeploy.quantize_weights(tmp_path / "mm.onnx", tmp_path / "o.onnx", weights="int3")
    with pytest.raises(UserInputError, match="--block-size 48: MatMulNBits takes a power of two"):
        onnxdeploy.quantize_weights(tmp_path / "mm.onnx", tmp_path / "o.onnx", block_size=48)
    relu = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(relu), str(tmp_path / "relu.onnx"))
    with pytest.raises(UnsupportedError, match="no MatMul with a constant weight"):
        onnxdeploy.quantize_weights(tmp_path / "relu.onnx", tmp_path / "o.onnx")
    assert not (tmp_path / "o.onnx").exists()


def test_cli_weights_int4(tmp_path, capsys):
    out = tmp_path / "llm.int4.onnx"
    rc = main(["quantize", tiny_decoder(), "-o", str(out), "--weights", "int4", "--block-size", "32"])
    text = capsys.readouterr().out
    assert rc == 0 and out.exists()
    for words in ("int4 weights, block 32, symmetric", "MatMulNBits", "verified at prefill", "token agreement",
                  "logits cosine", "decode tokens/s", "cosine >= 0.97"):
        assert words in text, words
    rc = main(["quantize", tiny_decoder(), "-o", str(tmp_path / "x.onnx"), "--weights", "int5"])
    err = capsys.readouterr().err
    assert rc != 0 and "--weights int5: not a weight type" in err and "Traceback" not in err
