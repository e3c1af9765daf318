"""onnxdeploy: take a model from PyTorch to a verified, optimized deployment.

The public API is loaded lazily so that ``import onnxdeploy`` (and the CLI's ``--help``) stays fast:
heavy libraries (onnx_ir, onnxruntime, torch) are imported by the verbs that need them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_API: dict[str, str] = {
    "load": "onnxdeploy.io",
    "save": "onnxdeploy.io",
    "load_proto": "onnxdeploy.io",
    "inspect": "onnxdeploy.inspect",
    "run": "onnxdeploy.run",
    "synthesize_inputs": "onnxdeploy.run",
    "compare_outputs": "onnxdeploy.numerics",
    "build": "onnxdeploy.build",
    "Editor": "onnxdeploy.edit",
    "edit": "onnxdeploy.edit",
    "diff": "onnxdeploy.diff",
    "export": "onnxdeploy.export",
    "probe": "onnxdeploy.debug",
    "compare": "onnxdeploy.debug",
    "reduce": "onnxdeploy.debug",
    "optimize": "onnxdeploy.optimize",
    "quantize": "onnxdeploy.quantize",
    "bench": "onnxdeploy.bench",
    "check": "onnxdeploy.targets",
    "legalize": "onnxdeploy.legalize",
    "convert": "onnxdeploy.targets",
    "deploy": "onnxdeploy.deploy",
    "render": "onnxdeploy.render",
    "examples": "onnxdeploy.examples",
    "errors": "onnxdeploy.errors",
    "OnnxDeployError": "onnxdeploy.errors",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module_name = _API.get(name)
    if module_name is None:
        raise AttributeError(f"module 'onnxdeploy' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = getattr(module, name) if hasattr(module, name) else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover
    from onnxdeploy.errors import OnnxDeployError
    from onnxdeploy.inspect import inspect
    from onnxdeploy.io import load, load_proto, save
    from onnxdeploy.numerics import compare_outputs
    from onnxdeploy.run import run, synthesize_inputs
