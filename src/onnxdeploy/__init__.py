"""onnxdeploy: take a model from PyTorch to a verified, optimized deployment.

The public API is loaded lazily so that ``import onnxdeploy`` (and the CLI's ``--help``) stays fast:
heavy libraries (onnx_ir, onnxruntime, torch) are imported by the verbs that need them.
"""

from __future__ import annotations

import importlib
import sys
import types
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
    "check": "onnxdeploy.check",
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
    if module_name == f"{__name__}.{name}":
        return module  # a verb module (callable as its verb, see _Package) or a plain submodule such as examples
    value = getattr(module, name) if hasattr(module, name) else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _VerbModule(types.ModuleType):
    """A submodule named like the verb it defines (``onnxdeploy.export`` defines ``export``), callable as that verb."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(types.ModuleType):
    """Importing ``onnxdeploy.export`` binds the submodule over the lazy verb ``onnxdeploy.export``; keep the verb
    callable by making such submodules :class:`_VerbModule` (``import onnxdeploy.export as m`` still gives the
    module)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            isinstance(value, types.ModuleType)
            and _API.get(name) == f"{__name__}.{name}"
            and callable(getattr(value, name, None))
            and type(value) is types.ModuleType
        ):
            value.__class__ = _VerbModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # pragma: no cover
    from onnxdeploy.errors import OnnxDeployError
    from onnxdeploy.inspect import inspect
    from onnxdeploy.io import load, load_proto, save
    from onnxdeploy.numerics import compare_outputs
    from onnxdeploy.run import run, synthesize_inputs
