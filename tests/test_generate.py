"""Greedy generation on onnxruntime with the KV cache (``onnxdeploy generate``), checked against PyTorch's generate.

Shares the tiny Llama export with tests/test_llm_export.py (one export per session)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import onnxdeploy  # noqa: E402
from onnxdeploy.cli.main import main  # noqa: E402
from onnxdeploy.errors import UserInputError  # noqa: E402

from test_llm_export import LLAMA, exported  # noqa: E402


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return exported(tmp_path_factory, LLAMA, "llama")[0]


def test_generation_equals_pytorch_greedy_over_24_tokens(llama):
    report = onnxdeploy.generate(llama, [1, 2, 3], max_new_tokens=24, reference=LLAMA)
    assert len(report.tokens) == 24
    assert report.tokens == report.reference_tokens
    assert report.agreement == 1.0 and report.passed
    assert report.max_abs < 1e-4 and report.min_cosine > 0.99999
    assert all(s.max_abs is not None for s in report.steps)
    assert report.ttft_s > 0 and report.decode_tokens_per_s > 0
    # the loop feeds present back as past: the same as running the whole sequence at once (no cache)
    full = onnxdeploy.run_model(llama, onnxdeploy.Inputs(arrays={
        "input_ids": np.asarray([[1, 2, 3, *report.tokens[:-1]]]), **_empty_cache(llama)})).outputs["logits"]
    assert full[0, 2:].argmax(-1).tolist() == report.tokens


def _empty_cache(path) -> dict:
    return {s.name: np.zeros((1, s.shape[1], 0, s.shape[3]), np.float32) for s in onnxdeploy.input_specs(path)
            if s.name.startswith("past_key_values.")}


def test_cli_generate_json(llama, capsys):
    rc = main(["generate", str(llama), "--prompt-ids", "4,5,6,7", "--max-new-tokens", "16", "--reference", LLAMA, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["tokens"] == data["reference_tokens"] and len(data["tokens"]) == 16
    assert data["agreement"] == 1.0 and data["max_abs"] < 1e-4 and data["decode_tokens_per_s"] > 0


def test_cli_generate_table_and_disagreement_exit_code(llama, capsys):
    rc = main(["generate", str(llama), "--prompt-ids", "1,2,3", "--max-new-tokens", "4"])
    out = capsys.readouterr().out
    assert rc == 0 and "time to first token" in out and "tokens/s" in out
    # other weights (seed 1) as the reference: the tokens differ, exit code 3 and a one-line reason
    rc = main(["generate", str(llama), "--prompt-ids", "1,2,3", "--max-new-tokens", "8", "--reference",
               LLAMA + "&seed=1"])
    captured = capsys.readouterr()
    assert rc == 3, captured.out
    assert "generated tokens differ from PyTorch's from step" in captured.err
    assert "Traceback" not in captured.err


def test_generate_errors(llama, tmp_path):
    with pytest.raises(UserInputError, match="outside the model's vocabulary of 128 tokens"):
        onnxdeploy.generate(llama, [1, 500])
    with pytest.raises(UserInputError, match="token ids are integers separated by commas"):
        onnxdeploy.generate(llama, "1,a")
    conv = onnxdeploy.examples.conv_bn_silu()
    path = tmp_path / "conv.onnx"
    onnxdeploy.save(conv, path)
    with pytest.raises(UserInputError, match="is not a decoder with a KV cache") as err:
        onnxdeploy.generate(path, [1])
    assert "--task text-generation" in err.value.hint


def test_generate_with_a_plain_module_reference(llama):
    """A reference without transformers' generate runs the calling-convention loop in PyTorch."""
    import torch

    from onnxdeploy._torch_target import load_hf_model

    class Plain(torch.nn.Module):  # the same model, hidden behind a module with no .generate
        def __init__(self):
            super().__init__()
            self.inner = load_hf_model(LLAMA)

        def forward(self, input_ids, attention_mask=None, position_ids=None, past_key_values=None, use_cache=True):
            out = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             cache=past_key_values, use_cache=use_cache)
            return out.logits, out.cache

    report = onnxdeploy.generate(llama, [3, 1], max_new_tokens=6, reference=Plain())
    assert report.tokens == report.reference_tokens and report.max_abs < 1e-4


def test_onnx_reference_and_teacher_forcing_after_a_difference(llama):
    """Another ONNX decoder as the reference (what quantize --weights compares to); after the first differing token
    the model is teacher-forced, so every step still has a logits comparison and an agreement vote."""
    same = onnxdeploy.compare_generation(llama, llama, prompt=[5, 6], new_tokens=6)
    assert same.reference_kind == "onnx" and same.tokens == same.reference_tokens and same.token_agreement == 1.0
    assert same.max_abs == 0.0 and same.first_divergence is None
    other = onnxdeploy.generate(llama, [1, 2, 3], max_new_tokens=8, reference=LLAMA + "&seed=1")
    assert other.first_divergence is not None and other.reference_kind == "pytorch"
    after = other.steps[other.first_divergence + 1:]
    assert after and all(s.teacher_forced and s.cosine is not None and s.forced_token is not None for s in after)
    assert 0.0 <= other.token_agreement < 1.0


def test_deploy_decoder_hf_source_int4(tmp_path, capsys):
    """deploy of a hf: decoder: export with the cache, --preset decoder fusions, int4 weights, then greedy generation
    per model against PyTorch (tokens/s, time to first token, agreement per step) in the table, deploy.json and HTML."""
    out = tmp_path / "o"
    rc = main(["deploy", LLAMA, "--task", "text-generation", "--quantize", "int4", "--max-new-tokens", "12",
               "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    data = json.loads((out / "deploy.json").read_text())
    assert data["passed"] and [s["status"] for s in data["steps"]].count("passed") >= 6
    optimize = next(s for s in data["steps"] if s["name"] == "optimize")
    assert any("GroupQueryAttention 2" in n for n in optimize["notes"])
    gen = data["generation"]
    assert gen["reference_kind"] == "pytorch" and len(gen["reference_tokens"]) == 12
    rows = {r["model"]: r for r in gen["rows"]}
    assert set(rows) == {"reference", "optimized", "int4 weights"}
    assert rows["reference"]["identical"] and rows["optimized"]["identical"]  # fp32: PyTorch's greedy tokens
    assert rows["int4 weights"]["weights"] == "int4" and rows["int4 weights"]["min_cosine"] > 0.9
    assert all(r["decode_tokens_per_s"] > 0 and r["ttft_ms"] > 0 and len(r["steps"]) == 12 for r in rows.values())
    for words in ("generation (greedy, 12 new tokens", "decode tok/s", "token agreement per step", "int4 weights"):
        assert words in text, words
    html = (out / "report.html").read_text()
    assert "<h2>Generation</h2>" in html and "Token agreement per step" in html


def test_deploy_onnx_decoder_source_is_recognized(llama, tmp_path):
    report = onnxdeploy.deploy(llama, output_dir=tmp_path / "o", skip=["optimize"], max_new_tokens=4)
    assert report.passed and report.generation["reference_kind"] == "onnx"
    assert [r["model"] for r in report.generation["rows"]] == ["reference"]
    assert report.generation["rows"][0]["identical"]
