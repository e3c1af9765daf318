"""Resolve a PyTorch *target* string to a module and example inputs.

A target is ``package.module:factory`` or ``path/to/file.py:factory``. The factory is called with no arguments and
returns an ``nn.Module``, or a tuple ``(module, example_inputs)`` where example_inputs is a tensor, a tuple of
tensors, or a dict of keyword tensors. Used by ``export``, ``compare`` and ``deploy``.
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
    if not looks_like_target(spec):
        raise UserInputError(
            f"{spec!r} is not a PyTorch target", hint="use package.module:factory or path/to/file.py:factory"
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
