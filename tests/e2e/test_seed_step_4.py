"""Seed article, step 4: get an intermediate node's output (the Resize output is 1x3x512x512).

The article adds the node's output to the graph outputs of a copy and builds a new session per node. `probe` does
it for any or all tensors in one session, without touching the file.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxdeploy import examples
from onnxdeploy.cli.main import main
from onnxdeploy.debug import probe


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    """Rich tables as a wide terminal prints them (no folded cells), on a fresh console."""
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


def _article_way(path, node_output: str, feeds) -> np.ndarray:
    model = onnx.load(path)
    model.graph.output.extend([onnx.ValueInfoProto(name=node_output)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([node_output], feeds)[0]


def test_resize_output_via_probe_cli(resize_conv_add_path, tmp_path, capsys):
    feeds = examples.resize_conv_add_inputs()
    np.savez(tmp_path / "inputs.npz", **feeds)
    before = resize_conv_add_path.read_bytes()
    dump = tmp_path / "dump.npz"
    rc = main(["probe", str(resize_conv_add_path), "--tensor", "conv_input", "--inputs", str(tmp_path / "inputs.npz"),
               "-o", str(dump)])
    assert rc == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    assert "conv_input" in table and "Resize" in table and "1x3x512x512" in table
    with np.load(dump) as data:
        resized = data["conv_input"]
    assert resized.shape == (1, 3, 512, 512)
    np.testing.assert_array_equal(resized, _article_way(resize_conv_add_path, "conv_input", feeds))
    assert resize_conv_add_path.read_bytes() == before


def test_every_intermediate_in_one_call(resize_conv_add_path):
    result = probe(resize_conv_add_path, inputs=examples.resize_conv_add_inputs())
    assert {name: result[name].shape for name in result} == {
        "conv_input": (1, 3, 512, 512),
        "conv_output": (1, 32, 510, 510),
        "output": (1, 32, 510, 510),
    }
    assert result.runs == 1
    assert [i.node for i in result.infos] == ["resize", "conv", "add"]
