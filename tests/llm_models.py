"""Tiny decoder LMs with a KV cache for tests: random-weight transformers configs exported once per test process
with ``onnxdeploy.export(config, path, task="text-generation")`` (no download)."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile

_FOLDER = tempfile.mkdtemp(prefix="onnxdeploy-tiny-llm-")
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)


def tiny_config(kind: str = "llama"):
    """A 2-layer config: hidden 64, 4 heads over 2 KV heads (grouped-query attention), vocab 256."""
    import transformers

    cls = {"llama": transformers.LlamaConfig, "qwen2": transformers.Qwen2Config}[kind]
    return cls(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=128)


def tiny_decoder(kind: str = "llama") -> str:
    """The path of a tiny ``kind`` decoder exported with its cache (exported on first use, then reused)."""
    return _export(kind)  # one cache key per kind, however the caller spells it


@functools.cache
def _export(kind: str) -> str:
    import torch

    import onnxdeploy

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.manual_seed(0)
    path = os.path.join(_FOLDER, f"{kind}.onnx")
    onnxdeploy.export(tiny_config(kind), path, task="text-generation", verify=False)
    return path
