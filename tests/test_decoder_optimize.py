"""optimize --preset decoder: onnxruntime contrib-op fusions on a KV-cache decoder, verified at a prefill and a
decode step, the fusions that fired listed; the errors of the preset."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

import onnxdeploy
from llm_models import tiny_decoder
from onnxdeploy.cli.main import main
from onnxdeploy.errors import UserInputError


def test_decoder_preset_fuses_and_verifies_both_steps():
    result = onnxdeploy.optimize_decoder(tiny_decoder("llama"))
    report = result.report
    ops = report.after.ops
    assert ops.get("com.microsoft.SkipSimplifiedLayerNormalization") == 4  # 2 layers x (attention + MLP) residuals
    # one per layer: the rotary angles rewritten (transformers 5.x's Mul -> the MatMul form the cos/sin-cache fusion
    # knows), RotaryEmbedding forms and GroupQueryAttention consumes it, instead of MultiHeadAttention
    assert ops.get("com.microsoft.GroupQueryAttention") == 2
    assert "com.microsoft.MultiHeadAttention" not in ops and "com.microsoft.GroupQueryAttention" not in report.before.ops
    fired = next(n for n in report.notes if n.startswith("fusions fired:"))
    assert "SkipSimplifiedLayerNormalization 4" in fired and "GroupQueryAttention 2" in fired
    assert any(n.startswith("rotary angles rewritten") for n in report.notes)
    labels = [c.label for c in report.verification]
    assert labels[0].startswith("prefill (batch=2, past_sequence=0") and labels[1].startswith("decode step")
    assert all(c.passed for c in report.verification) and report.verified
    assert next(p for p in report.passes if p.name == "chains").reason == "as asked"  # DECODER_SKIP


def test_decoder_preset_then_int4_keeps_fused_ops(tmp_path):
    opt = tmp_path / "opt.onnx"
    onnxdeploy.save(onnxdeploy.optimize_decoder(tiny_decoder("llama")).model, opt)
    report = onnxdeploy.quantize_weights(opt, tmp_path / "int4.onnx", generate=False, measure=False)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "int4.onnx")).graph.node}
    assert {"MatMulNBits", "GroupQueryAttention", "SkipSimplifiedLayerNormalization"} <= ops
    assert report.verification.passed


def test_cli_preset_decoder(tmp_path, capsys):
    out = tmp_path / "opt.onnx"
    rc = main(["optimize", tiny_decoder("llama"), "-o", str(out), "--preset", "decoder"])
    captured = capsys.readouterr()
    text = captured.out + captured.err  # the table, then the notes
    assert rc == 0 and out.exists()
    assert "fusions fired: SkipSimplifiedLayerNormalization 4, GroupQueryAttention 2" in text
    assert "verified prefill" in text and "verified decode step" in text
    rc = main(["optimize", tiny_decoder("llama"), "-o", str(tmp_path / "x.onnx"), "--preset", "decodr"])
    err = capsys.readouterr().err
    assert rc != 0 and "--preset decodr: no such preset; did you mean decoder?" in err
    assert not (tmp_path / "x.onnx").exists()


def test_rotary_rewrite_is_exact_and_generation_unchanged(tmp_path):
    """The rotary-angle rewrite changes no value: the fused model (GroupQueryAttention with its cos/sin cache)
    greedy-generates the fp32 export's tokens, logits within 1e-5."""
    import onnx_ir as ir

    from onnxdeploy._decoder_optimize import canonical_rotary_freqs

    model = ir.load(tiny_decoder("llama"))
    assert canonical_rotary_freqs(model) == 1  # one angle computation shared by every layer
    assert not [n for n in model.graph if n.op_type == "Mul" and "inv_freq" in " ".join(
        v.name or "" for v in n.inputs if v is not None)]
    opt = tmp_path / "opt.onnx"
    onnxdeploy.save(onnxdeploy.optimize_decoder(tiny_decoder("llama")).model, opt)
    gen = onnxdeploy.generate(opt, [1, 2, 3], max_new_tokens=24, reference=tiny_decoder("llama"))
    assert gen.passed and gen.max_abs < 1e-5


def test_a_model_without_a_cache_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    onnx.save(helper.make_model(graph), str(tmp_path / "relu.onnx"))
    with pytest.raises(UserInputError, match="not a decoder with a KV cache"):
        onnxdeploy.optimize_decoder(tmp_path / "relu.onnx")


@pytest.mark.slow
def test_qwen2_fuses_and_quantizes(tmp_path):
    result = onnxdeploy.optimize_decoder(tiny_decoder("qwen2"))
    assert result.report.after.ops.get("com.microsoft.GroupQueryAttention") == 2
    onnxdeploy.save(result.model, tmp_path / "q.onnx")
    report = onnxdeploy.quantize_weights(tmp_path / "q.onnx", tmp_path / "q4.onnx", new_tokens=16)
    assert report.verification.passed and len(report.generation.steps) == 16
