"""The CLI shell: --help, --version, per-command help with examples, clean user errors, a light start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import onnxdeploy
from onnxdeploy.cli.main import app, main

ONNXDEPLOY = Path(sys.executable).parent / "onnxdeploy"
HEAVY = ("torch", "onnxruntime", "onnx_ir", "openvino", "transformers", "markdown_it")


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


def _commands() -> list[str]:
    return sorted(c.name for c in app.registered_commands if c.name)


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch -> ONNX" in out
    for name in _commands():
        assert name in out
    assert {"inspect", "run"} <= set(_commands())


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"onnxdeploy {onnxdeploy.__version__}"


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help_with_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Examples" in out and f"onnxdeploy {command} " in out


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["inspekt"]) == 2
    assert "No such command" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "missing.onnx"], "error: missing.onnx: no such file"),
        (["run", "missing.onnx"], "error: missing.onnx: no such file"),
        (["run", "{model}", "--dim", "batch=x"], "the value must be a non-negative integer"),
        (["run", "{model}", "--shape", "input=1xx3"], "empty dim in shape"),
        (["run", "{model}", "--provider", "nope"], "execution provider 'nope' is not available"),
    ],
)
def test_user_errors_have_no_traceback(args, message, conv_bn_silu_path, tmp_path):
    args = [a.replace("{model}", str(conv_bn_silu_path)) for a in args]
    proc = subprocess.run([str(ONNXDEPLOY), *args], capture_output=True, text=True, cwd=tmp_path,
                          env={"COLUMNS": "250", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_debug_shows_traceback(tmp_path):
    proc = subprocess.run([str(ONNXDEPLOY), "--debug", "inspect", "missing.onnx"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ModelFileError" in proc.stderr


_PROBE = """
import sys
from onnxdeploy.cli.main import main
rc = main({args!r})
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(rc)
"""


@pytest.mark.parametrize("args", [["--help"], ["inspect", "{model}"], ["inspect", "{model}", "--nodes", "--json"]])
def test_startup_leaves_heavy_libraries_out(args, conv_bn_silu_path):
    args = [a.replace("{model}", str(conv_bn_silu_path)) for a in args]
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(args=args, heavy=HEAVY)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY=\n" in proc.stderr, proc.stderr
