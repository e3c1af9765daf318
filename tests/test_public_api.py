"""The public API: every advertised name resolves, and verbs stay callable after their submodule is imported."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import onnxdeploy

VERBS = ["inspect", "run", "export", "optimize", "quantize", "bench", "diff", "deploy", "render", "legalize",
         "probe", "compare", "reduce", "check", "convert", "load", "save"]


@pytest.mark.parametrize("name", sorted(onnxdeploy._API))
def test_every_public_name_resolves(name):
    assert getattr(onnxdeploy, name) is not None


@pytest.mark.parametrize("verb", VERBS)
def test_verbs_are_callable_even_after_importing_their_module(verb):
    module = onnxdeploy._API[verb]
    importlib.import_module(module)
    assert callable(getattr(onnxdeploy, verb))


def test_submodule_import_still_gives_the_module():
    import onnxdeploy.export as export_module

    assert hasattr(export_module, "register_op") and callable(export_module)


def test_importing_the_package_is_light():
    code = "import onnxdeploy, sys; print(sorted(m for m in ('torch', 'onnxruntime', 'onnx_ir', 'onnx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
