"""The public API: one flat namespace (onnx-ir's way) over private implementation modules; every advertised name
resolves, and importing the package stays light."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import onnxdeploy

VERBS = ["inspect", "run", "export", "optimize", "quantize", "bench", "diff", "deploy", "render", "legalize",
         "probe", "compare", "reduce", "check", "convert", "load", "save", "verify"]


@pytest.mark.parametrize("name", sorted(onnxdeploy._API))
def test_every_public_name_resolves(name):
    assert getattr(onnxdeploy, name) is not None


@pytest.mark.parametrize("verb", VERBS)
def test_verbs_stay_callable_after_their_implementation_module_is_imported(verb):
    module, _ = onnxdeploy._API[verb]
    importlib.import_module(f"onnxdeploy.{module}")
    assert callable(getattr(onnxdeploy, verb))


def test_no_module_of_the_package_shares_a_name_with_a_verb_or_the_standard_library():
    root = Path(onnxdeploy.__file__).parent
    public_modules = {p.stem for p in root.glob("*.py") if not p.stem.startswith("_")}
    public_modules |= {p.name for p in root.iterdir() if (p / "__init__.py").exists()}
    assert not public_modules & set(onnxdeploy._API)
    assert not public_modules & set(sys.stdlib_module_names)
    assert public_modules == {"errors", "examples", "cli", "debug", "passes", "serving", "targets"}


def test_public_subpackages_resolve():
    for name in ("targets", "debug", "passes", "errors", "examples"):
        assert getattr(onnxdeploy, name).__name__ == f"onnxdeploy.{name}"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        onnxdeploy.no_such_thing  # noqa: B018
    with pytest.raises(AttributeError):
        onnxdeploy._no_such_module  # noqa: B018


def test_importing_the_package_is_light():
    code = "import onnxdeploy, sys; print(sorted(m for m in ('torch', 'onnxruntime', 'onnx_ir', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
