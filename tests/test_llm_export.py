"""Export of decoder LMs with a KV cache (``export(..., task="text-generation")``) and inputs that fit them.

Tiny transformers configs with random weights (no downloads): Llama by default (one export shared by the module),
Qwen2 (GQA) and GPT-2 as slow tests."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import onnxdeploy  # noqa: E402
from onnxdeploy.cli.main import main  # noqa: E402
from onnxdeploy.errors import UserInputError  # noqa: E402

os.environ.setdefault("OMP_NUM_THREADS", "1")

LLAMA = ("hf:llama?hidden_size=64&intermediate_size=128&num_hidden_layers=2&num_attention_heads=4"
         "&num_key_value_heads=2&vocab_size=128&max_position_embeddings=256")
QWEN2 = ("hf:qwen2?hidden_size=64&intermediate_size=128&num_hidden_layers=2&num_attention_heads=4"
         "&num_key_value_heads=1&vocab_size=200&max_position_embeddings=256")
GPT2 = "hf:gpt2?n_embd=32&n_layer=2&n_head=4&vocab_size=256&n_positions=128&bos_token_id=0&eos_token_id=0"


def exported(tmp_path_factory, spec: str, name: str):
    """Export ``spec`` once per test session (both LLM test files share it): (path, report or None)."""
    folder = tmp_path_factory.getbasetemp() / "llm-models"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.onnx"
    report = None
    if not path.exists():
        report = onnxdeploy.export(spec, path, task="text-generation", with_past=True)
        (folder / f"{name}.json").write_text(json.dumps(report.to_dict()))
    return path, json.loads((folder / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return exported(tmp_path_factory, LLAMA, "llama")


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def check_interface(path, layers: int) -> None:
    """The names and named dims of every input and output of a cache model."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = {v.name: _dims(v) for v in graph.input}
    outputs = {v.name: _dims(v) for v in graph.output}
    cache = [f"{i}.{k}" for i in range(layers) for k in ("key", "value")]
    assert list(inputs) == ["input_ids", "attention_mask", "position_ids"] + [f"past_key_values.{c}" for c in cache]
    assert list(outputs) == ["logits"] + [f"present.{c}" for c in cache]
    assert inputs["input_ids"] == ["batch", "sequence"] == inputs["position_ids"]
    assert inputs["attention_mask"] == ["batch", "total_sequence"]
    assert outputs["logits"][:2] == ["batch", "sequence"]
    for c in cache:
        past, present = inputs[f"past_key_values.{c}"], outputs[f"present.{c}"]
        assert past[0] == "batch" and past[2] == "past_sequence", past
        assert present[0] == "batch" and present[2] == "total_sequence", present
        assert past[1] == present[1] and past[3] == present[3]
    # no raw torch symbol (s15, s70 + s95) left anywhere in the graph's value shapes
    params = {d.dim_param for v in list(graph.value_info) for d in v.type.tensor_type.shape.dim if d.dim_param}
    assert not [p for p in params if any(t.startswith("s") and t[1:].isdigit() for t in p.replace("+", " ").split())]


def test_llama_export_names_dims_and_verifies_prefill_and_decode(llama):
    path, report = llama
    check_interface(path, layers=2)
    assert report["task"] == "text-generation-with-past" and report["exporter"] == "dynamo"
    assert report["passed"] and report["verified"]
    labels = [c["label"] for c in report["parity"]]
    assert labels == ["prefill (batch=2, past_sequence=0, sequence=5)",
                      "decode step (batch=2, past_sequence=5, sequence=1)"]
    assert report["cache"] == {"layers": 2, "kv_heads": [2, 2], "head_dims": [16, 16], "vocab": 128,
                               "dtype": "float32"}


def test_one_model_serves_prefill_and_decode_like_transformers(llama):
    """Independent of our wrapper: the HF model with its own DynamicCache, against onnxruntime, prefill + 2 steps."""
    import torch
    from transformers import DynamicCache

    from onnxdeploy._torch_target import load_hf_model

    path, _ = llama
    model = load_hf_model(LLAMA)
    session = onnxdeploy.create_session(path)
    ids = torch.tensor([[5, 9, 17, 3]])
    past = {f"past_key_values.{i}.{k}": np.zeros((1, 2, 0, 16), np.float32) for i in range(2) for k in ("key", "value")}
    cache, length = DynamicCache(config=model.config), 0
    for _ in range(3):
        n = ids.shape[1]
        with torch.inference_mode():
            ref = model(input_ids=ids, attention_mask=torch.ones(1, length + n, dtype=torch.int64),
                        position_ids=torch.arange(length, length + n)[None], cache=cache, use_cache=True)
        feeds = {"input_ids": ids.numpy(), "attention_mask": np.ones((1, length + n), np.int64),
                 "position_ids": np.arange(length, length + n)[None], **past}
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
        np.testing.assert_allclose(got["logits"], ref.logits.numpy(), atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(got["present.1.value"], ref.cache.layers[1].values.numpy(), atol=1e-4, rtol=1e-3)
        past = {k.replace("present.", "past_key_values."): v for k, v in got.items() if k.startswith("present.")}
        length += n
        ids = torch.tensor([[int(got["logits"][0, -1].argmax())]])


def test_synthesized_inputs_fit_the_cache(llama):
    path, _ = llama
    feeds = onnxdeploy.synthesize_inputs(path)  # defaults: sequence 128, past 16
    assert feeds["input_ids"].shape == (1, 128) and feeds["past_key_values.0.key"].shape == (1, 2, 16, 16)
    assert feeds["attention_mask"].shape == (1, 144) and feeds["attention_mask"].all()
    np.testing.assert_array_equal(feeds["position_ids"], np.arange(16, 144)[None])
    prefill = onnxdeploy.synthesize_inputs(path, dims={"past_sequence": 0, "sequence": 7, "batch": 3})
    assert prefill["past_key_values.1.value"].shape == (3, 2, 0, 16) and prefill["attention_mask"].shape == (3, 7)
    np.testing.assert_array_equal(prefill["position_ids"], np.tile(np.arange(7), (3, 1)))
    # given tensors set the sizes of the synthesized rest
    given = onnxdeploy.prepare_inputs(path, inputs={"input_ids": np.zeros((2, 1), np.int64)},
                                      dims={"past_sequence": 9})
    assert given["attention_mask"].shape == (2, 10) and given["position_ids"].tolist() == [[9], [9]]
    onnxdeploy.run_model(path, onnxdeploy.Inputs(dims={"past_sequence": 0, "sequence": 3}))


def test_verifier_plans_vary_past_and_sequence_consistently(llama):
    from onnxdeploy._run import verification_plans

    specs = onnxdeploy.input_specs(llama[0])
    plans = verification_plans(specs, ["batch", "sequence", "total_sequence", "past_sequence"], {})
    assert plans == [[{"batch": 1, "sequence": 16, "past_sequence": 16, "total_sequence": 32},
                      {"batch": 2, "sequence": 1, "past_sequence": 24, "total_sequence": 25}]]
    result = onnxdeploy.verify(llama[0], llama[0])
    assert result.passed and len(result.comparisons) == 2


def test_optimize_and_quantize_accept_a_cache_model_without_npz(llama, tmp_path, capsys):
    path, _ = llama
    rc = main(["optimize", str(path), "-o", str(tmp_path / "opt.onnx")])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc == 0, text
    assert "past_sequence=24, total_sequence=25" in text and "match" in text
    rc = main(["quantize", str(path), "-o", str(tmp_path / "q.onnx"), "--mode", "dynamic", "--no-measure"])
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert rc == 0, text
    assert (tmp_path / "q.onnx").exists() and "MatMulInteger" in text


def test_cache_layout_fits_dims_from_specs_alone():
    from onnxdeploy._run import InputSpec

    specs = [InputSpec("input_ids", np.dtype("int64"), ("batch", "sequence")),
             InputSpec("attention_mask", np.dtype("int64"), ("batch", "total_sequence")),
             InputSpec("past_key_values.0.key", np.dtype("float32"), ("batch", 4, "past_sequence", 8)),
             InputSpec("past_key_values.0.value", np.dtype("float32"), ("batch", 4, "past_sequence", 8))]
    layout = onnxdeploy.cache_layout(specs)
    assert layout.layers == 1 and not layout.has_positions
    assert layout.fit({"past_sequence": 3, "sequence": 2}) == {"past_sequence": 3, "sequence": 2, "total_sequence": 5}
    assert layout.fit({"total_sequence": 9, "sequence": 2})["past_sequence"] == 7  # the other one derived
    assert layout.fit({"total_sequence": 9, "past_sequence": 4})["sequence"] == 5
    assert onnxdeploy.cache_layout(specs[:2]) is None  # no cache inputs: not this convention
    from onnxdeploy._run import verification_plans

    plans = verification_plans(specs, ["batch", "sequence", "total_sequence", "past_sequence"], {"past_sequence": 8})
    assert [(a["past_sequence"], a["sequence"], a["total_sequence"]) for a in plans[0]] == [(8, 16, 24), (8, 1, 9)]


def test_dim_namer_names_every_cache_total_the_same():
    from onnxdeploy._export import _DimNamer

    namer = _DimNamer({"s15": "past_sequence", "s95": "past_sequence", "s70": "sequence"})
    namer.alias("s15 + s70", "total_sequence")
    assert namer("s70 + s95") == "total_sequence" == namer("s15 + s70")
    assert namer("s70 + s95 + 1") == "past_sequence + sequence + 1"


def test_task_and_target_errors(tmp_path, capsys):
    with pytest.raises(UserInputError, match="unknown task 'text-gen'") as err:
        onnxdeploy.export(LLAMA, tmp_path / "m.onnx", task="text-gen")
    assert "text-generation" in err.value.hint
    rc = main(["export", "hf:lama?hidden_size=64", "-o", str(tmp_path / "m.onnx"), "--task", "text-generation"])
    assert rc != 0
    err_text = capsys.readouterr().err
    assert "transformers has no architecture 'lama'" in err_text and "llama" in err_text
    assert not (tmp_path / "m.onnx").exists()


def test_a_module_without_the_calling_convention_is_refused(tmp_path):
    import torch

    with pytest.raises(UserInputError, match="does not follow the text-generation calling convention"):
        onnxdeploy.export(torch.nn.Linear(4, 4), tmp_path / "m.onnx", task="text-generation")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("spec,name,layers", [(QWEN2, "qwen2", 2), (GPT2, "gpt2", 2)])
def test_qwen2_and_gpt2_export_with_cache(tmp_path_factory, spec, name, layers):
    path, report = exported(tmp_path_factory, spec, name)
    check_interface(path, layers)
    assert report["passed"] and len(report["parity"]) == 2
    result = onnxdeploy.generate(path, [1, 2, 3], max_new_tokens=16, reference=spec)
    assert result.tokens == result.reference_tokens and result.max_abs < 1e-4
