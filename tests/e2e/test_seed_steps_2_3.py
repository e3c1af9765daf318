"""Seed article, steps 2-3: run the hand-built graph on onnxruntime (1x32x510x510, though it declares 512x512) and
print node information (names, input/output tensors and their shapes)."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from onnxdeploy import examples
from onnxdeploy.cli.main import main
from onnxdeploy._inspect import inspect
from onnxdeploy._run import run_model


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


def test_step2_run_matches_the_article(resize_conv_add_path):
    feeds = examples.resize_conv_add_inputs()
    # the article's way
    session = ort.InferenceSession(str(resize_conv_add_path), providers=["CPUExecutionProvider"])
    article = session.run(None, feeds)[0]
    assert article.shape == (1, 32, 510, 510)
    # ours: same numbers, plus the warning the article's reader had to notice by hand
    result = run_model(resize_conv_add_path, feeds)
    np.testing.assert_array_equal(result.outputs["output"], article)
    assert result.warnings == ["output 'output' has shape 1x32x510x510 but the model declares 1x32x512x512"]


def test_step2_cli(resize_conv_add_path, tmp_path, capsys):
    np.savez(tmp_path / "inputs.npz", **examples.resize_conv_add_inputs())
    before = resize_conv_add_path.read_bytes()
    rc = main(["run", str(resize_conv_add_path), "--inputs", str(tmp_path / "inputs.npz"), "-o", str(tmp_path / "o.npz")])
    assert rc == 0
    captured = capsys.readouterr()
    assert "output" in captured.out and "1x32x510x510" in captured.out and "float32" in captured.out
    assert "warning: output 'output' has shape 1x32x510x510 but the model declares 1x32x512x512" in captured.err
    with np.load(tmp_path / "o.npz") as saved:
        assert saved["output"].shape == (1, 32, 510, 510)
    assert resize_conv_add_path.read_bytes() == before


def test_step3_node_information(resize_conv_add_path, capsys):
    summary = inspect(resize_conv_add_path, nodes=True)
    assert [(n.name, n.op_type, [t.name for t in n.inputs], [t.name for t in n.outputs]) for n in summary.nodes] == [
        ("resize", "Resize", ["input", "roi", "scales"], ["conv_input"]),
        ("conv", "Conv", ["conv_input", "conv_weight", "conv_bias"], ["conv_output"]),
        ("add", "Add", ["conv_output", "add_input"], ["output"]),
    ]
    assert main(["inspect", str(resize_conv_add_path), "--nodes"]) == 0
    out = capsys.readouterr().out
    for text in ("resize", "conv", "add", "input: float 1x3x256x256", "conv_weight: float 32x3x3x3",
                 "conv_bias: float 32", "add_input: float 1", "output: float 1x32x512x512"):
        assert text in out, text
    assert main(["inspect", str(resize_conv_add_path), "--nodes", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["nodes"]
    assert [n["op_type"] for n in nodes] == ["Resize", "Conv", "Add"]
