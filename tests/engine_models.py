"""Session fixtures for the engine tests: a 2-layer BERT from a transformers config (random weights), exported by
``onnxdeploy.export``. Import the fixtures into a test module with ``from engine_models import ...``."""

from __future__ import annotations

import pytest


def _bert(embeds: bool):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    cfg._attn_implementation = "eager"
    bert = tf.BertModel(cfg).eval()

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = bert

        def forward(self, first, attention_mask):
            key = "inputs_embeds" if embeds else "input_ids"
            return self.inner(**{key: first}, attention_mask=attention_mask).last_hidden_state

    first = torch.randn(1, 16, 32) if embeds else torch.randint(0, 1000, (1, 16))
    return Wrapped().eval(), (first, torch.ones(1, 16, dtype=torch.int64)), [
        "inputs_embeds" if embeds else "input_ids", "attention_mask"]


def _export(tmp_path_factory, name: str, *, embeds: bool, dynamic: bool):
    import onnxdeploy

    module, example, names = _bert(embeds)
    path = tmp_path_factory.mktemp("bert") / f"{name}.onnx"
    dyn = {n: {0: "batch", 1: "sequence"} for n in names} if dynamic else None
    onnxdeploy.export(module, example, path, input_names=names, output_names=["last_hidden_state"], dynamic=dyn)
    return path


@pytest.fixture(scope="session")
def tiny_bert_static(tmp_path_factory):
    pytest.importorskip("transformers")
    return _export(tmp_path_factory, "bert_static", embeds=False, dynamic=False)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    pytest.importorskip("transformers")
    return _export(tmp_path_factory, "bert", embeds=False, dynamic=True)


@pytest.fixture(scope="session")
def tiny_bert_embeds_static(tmp_path_factory):
    pytest.importorskip("transformers")
    return _export(tmp_path_factory, "bert_embeds_static", embeds=True, dynamic=False)
