"""Resolve a PyTorch *target* string to a module and example inputs.

A target is ``package.module:factory`` or ``path/to/file.py:factory``. The factory is called with no arguments and
returns an ``nn.Module``, or a tuple ``(module, example_inputs)`` where example_inputs is a tensor, a tuple of
tensors, or a dict of keyword tensors. Used by ``export``, ``compare`` and ``deploy``.

A transformers causal LM is named by ``hf:ARCH?key=value&...`` (a config of that architecture with those fields, random
weights from the ``seed`` field, default 0: ``hf:llama?hidden_size=64&num_hidden_layers=2&seed=1``), ``hf:path/to/config.json[?key=value...]``, or
``hf:path/to/folder`` (a ``save_pretrained`` folder: its weights when it has them). Nothing is ever downloaded.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxdeploy.errors import UserInputError, require


@dataclass
class TorchTarget:
    module: Any  # torch.nn.Module
    example_inputs: tuple | None
    example_kwargs: dict | None
    spec: str


def looks_like_target(text: str) -> bool:
    """True for ``pkg.mod:factory`` or ``file.py:factory`` (and not an existing .onnx file)."""
    if text.startswith("hf:"):
        return True
    if text.endswith(".onnx") or ":" not in text:
        return False
    left, _, right = text.rpartition(":")
    return bool(left) and right.isidentifier()


def _import_module(left: str):
    if left.endswith(".py") or "/" in left or "\\" in left:
        path = Path(left)
        if not path.is_file():
            raise UserInputError(f"{left}: no such Python file", hint="targets look like path/to/file.py:factory")
        name = f"_onnxdeploy_target_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.pop(0)
        return module
    try:
        return importlib.import_module(left)
    except ModuleNotFoundError as err:
        raise UserInputError(f"cannot import module {left!r}: {err}", hint="check the name or PYTHONPATH") from err


def load_torch_target(spec: str) -> TorchTarget:
    """Import and call the factory named by ``spec``; validate that it returned a module (and inputs)."""
    torch = require("torch", extra="torch", purpose="loading a PyTorch model")
    if spec.startswith(HF_PREFIX):
        return TorchTarget(load_hf_model(spec), None, None, spec)
    if not looks_like_target(spec):
        raise UserInputError(
            f"{spec!r} is not a PyTorch target",
            hint="use package.module:factory, path/to/file.py:factory or hf:ARCH?key=value (a transformers config)"
        )
    left, _, attr = spec.rpartition(":")
    module = _import_module(left)
    factory = getattr(module, attr, None)
    if factory is None:
        raise UserInputError(f"{left} has no attribute {attr!r}")
    result = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    inputs, kwargs = None, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module):
        result, example = result
        if isinstance(example, dict):
            kwargs = example
        elif isinstance(example, torch.Tensor):
            inputs = (example,)
        else:
            inputs = tuple(example)
    if not isinstance(result, torch.nn.Module):
        raise UserInputError(f"{spec} returned {type(result).__name__}, expected a torch.nn.Module")
    result.eval()
    return TorchTarget(result, inputs, kwargs, spec)


HF_PREFIX = "hf:"


def _hf_value(text: str):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_hf_spec(spec: str) -> tuple[str, dict]:
    """``hf:NAME?k=v&k2=v2`` -> (NAME, {k: v, ...}) with numbers and booleans parsed."""
    from urllib.parse import parse_qsl

    body = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    name, _, query = body.partition("?")
    if not name:
        raise UserInputError(f"{spec!r} names no architecture", hint="e.g. hf:llama?hidden_size=64&num_hidden_layers=2")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as err:
        raise UserInputError(f"{spec!r}: cannot read the fields after '?' ({err})",
                             hint="write them as key=value joined by &: hf:llama?hidden_size=64&num_hidden_layers=2"
                             ) from err
    return name, {k: _hf_value(v) for k, v in pairs}


def hf_config(spec: str):
    """The transformers config a ``hf:`` target names (architecture or config.json/folder, fields overridden)."""
    import json

    transformers = require("transformers", extra="llm", purpose="building a transformers model from a config")
    name, fields = parse_hf_spec(spec)
    fields.pop("seed", None)  # the random weights' seed, not a config field
    path = Path(name)
    if path.is_dir() or path.suffix == ".json":
        file = path / "config.json" if path.is_dir() else path
        if not file.is_file():
            raise UserInputError(f"{spec}: no such file {file}", hint="give a config.json or a save_pretrained folder")
        data = json.loads(file.read_text())
        arch = data.pop("model_type", None)
        if arch is None:
            raise UserInputError(f"{file} has no model_type", hint="add \"model_type\": \"llama\" (or the architecture)")
        name, fields = arch, {**data, **fields}
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if name not in CONFIG_MAPPING:
        from onnxdeploy._suggest import did_you_mean

        raise UserInputError(f"transformers has no architecture {name!r}",
                             hint=did_you_mean(name, list(CONFIG_MAPPING.keys()), what="architectures"))
    try:
        return transformers.AutoConfig.for_model(name, **fields)
    except (TypeError, ValueError) as err:
        raise UserInputError(f"{spec}: transformers rejects this config: {err}") from err


def load_hf_model(spec: str, *, seed: int = 0):
    """The causal LM a ``hf:`` target names: random weights from the spec's ``seed=`` field, else ``seed`` (a folder
    with weights: those), eval mode."""
    import logging

    # transformers imports torchao when it is installed (ExecuTorch brings it): its CUDA-only kernels and pytree
    # registrations log one line each on a CPU machine, none of which concerns the user
    for noisy in ("torchao", "torch.utils._pytree"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import torch
    import transformers

    name, fields = parse_hf_spec(spec)
    seed = int(fields.pop("seed", seed))
    folder = Path(name)
    has_weights = folder.is_dir() and any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir())
    config = None if has_weights else hf_config(spec)
    try:
        if has_weights:
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, local_files_only=True, **fields)
        else:
            torch.manual_seed(seed)
            model = transformers.AutoModelForCausalLM.from_config(config)
    except (ValueError, OSError) as err:
        raise UserInputError(f"{spec}: transformers cannot build a causal LM from it: {str(err).splitlines()[0]}",
                             hint="name a decoder architecture (llama, qwen2, gpt2, mistral, phi, ...)") from err
    return model.eval()
