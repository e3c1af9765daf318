"""`diff`: known edits show up as exactly the expected changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest

from onnxdeploy import _io as io
from onnxdeploy._build import GraphBuilder
from onnxdeploy.cli.main import main
from onnxdeploy._diff import diff, tensors_equal
from onnxdeploy._edit import Editor


def _model(scale: float = 2.0) -> ir.Model:
    g = GraphBuilder("m", opset=17)
    x = g.input("x", "float32", [2, 4])
    w = g.initializer("w", np.full(4, scale, np.float32))
    y = g.op("Mul", g.op("Relu", x, name="relu"), w, name="mul")
    g.output(g.op("Softmax", y, name="softmax", axis=1), "y")
    return g.build()


def test_identical_models():
    result = diff(_model(), _model())
    assert result.identical and "identical" in result.summary()


def test_known_edits_are_reported(tmp_path):
    a = tmp_path / "a.onnx"
    ir.save(_model(), a)
    b = tmp_path / "b.onnx"
    (Editor(a).delete_node("relu").replace_node("softmax", attrs={"axis": 0})
     .insert_after("y", "Cast", attrs={"to": "float16"}).save(b))
    result = diff(a, b)
    by = {(c.section, c.name, c.kind): c for c in result.changes}
    assert ("node", "relu", "removed") in by
    assert ("node", "y_cast", "added") in by
    softmax = by[("node", "softmax", "changed")]
    assert "attribute axis: 1 -> 0" in softmax.details
    assert any(d.startswith("outputs") for d in softmax.details)  # its output is now y_before_cast
    assert "inputs ['relu_output', 'w'] -> ['x', 'w']" in by[("node", "mul", "changed")].details
    assert by[("output", "y", "changed")].after == "float16[2x4]"
    assert not result.section("initializer") and not result.section("opset")


def test_initializer_values_shapes_and_opsets(tmp_path):
    a = tmp_path / "a.onnx"
    ir.save(_model(2.0), a)
    b = tmp_path / "b.onnx"
    ir.save(_model(3.0), b)
    result = diff(a, b)
    assert [(c.section, c.name, c.details) for c in result.changes] == [("initializer", "w", ["values changed"])]
    assert diff(a, b, compare_values=False).identical
    c = tmp_path / "c.onnx"
    Editor(a).convert_opset(18).save(c)
    assert [(ch.section, ch.before, ch.after) for ch in diff(a, c).section("opset")] == [("opset", "17", "18")]


def test_external_data_compared_in_place(tmp_path):
    a = tmp_path / "a" / "m.onnx"
    b = tmp_path / "b" / "m.onnx"
    a.parent.mkdir()
    b.parent.mkdir()
    io.save(_model(), a, external_data=True, size_threshold_bytes=0)
    io.save(_model(), b, external_data=True, size_threshold_bytes=0)
    ma, mb = io.load(a), io.load(b)
    assert isinstance(ma.graph.initializers["w"].const_value, ir.ExternalTensor)
    assert tensors_equal(ma.graph.initializers["w"].const_value, mb.graph.initializers["w"].const_value)
    assert diff(a, b).identical


def test_cli_diff_table_and_json(tmp_path, capsys):
    a = tmp_path / "a.onnx"
    ir.save(_model(), a)
    b = tmp_path / "b.onnx"
    Editor(a).delete_node("relu").save(b)
    assert main(["diff", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    assert "Nodes" in captured.out and "removed" in captured.out and "relu" in captured.out
    assert "nodes: 1 removed, 1 changed" in " ".join(captured.err.split())
    assert main(["diff", str(a), str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["identical"] is False and data["counts"]["nodes_a"] == 3 and data["counts"]["nodes_b"] == 2


def test_cli_diff_missing_file(tmp_path, capsys):
    a = tmp_path / "a.onnx"
    ir.save(_model(), a)
    assert main(["diff", str(a), str(tmp_path / "nope.onnx")]) == 1
    assert "no such file" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("same", [True])
def test_diff_accepts_ir_and_proto(same):
    m = _model()
    assert diff(m, ir.serde.serialize_model(m)).identical is same


def test_renamed_nodes_are_paired_not_removed_and_added(tmp_path):
    """A tool that renames every node (e.g. an optimizer's name fix) must not turn the diff into noise."""
    a, b = _model(), _model()
    for node in b.graph:
        node.name = f"renamed_{node.name}"
    result = diff(a, b)
    assert {(c.kind, c.name) for c in result.changes} == {
        ("renamed", "relu -> renamed_relu"), ("renamed", "mul -> renamed_mul"), ("renamed", "softmax -> renamed_softmax")}
    # renamed and rewired: the same op writing the same tensor from another input is one change, not two
    c = _model()
    relu, mul = c.graph.node("relu"), c.graph.node("mul")
    relu.name, mul.name = "r2", "m2"
    mul.replace_input_with(0, c.graph.inputs[0])
    result = diff(a, c)
    by = {c.name: c for c in result.changes if c.section == "node"}
    assert by["mul -> m2"].kind == "changed" and any(d.startswith("inputs") for d in by["mul -> m2"].details)
    assert by["relu -> r2"].kind == "renamed"
