"""The Editor: each surgery operation's happy path (checked, numerics where they matter) and its error path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxdeploy import examples
from onnxdeploy._build import GraphBuilder
from onnxdeploy.cli.main import main
from onnxdeploy._edit import Editor
from onnxdeploy.errors import InvalidModelError, OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy._run import run

SEED_FEEDS = examples.resize_conv_add_inputs()


def _chain() -> ir.Model:
    """x -> Relu -> Identity -> Mul(2) -> Add(1) -> y, plus a dead Neg branch and a duplicate constant."""
    g = GraphBuilder("chain", opset=17)
    x = g.input("x", "float32", ["batch", 4])
    unused = g.input("unused", "float32", [4])
    a = g.op("Relu", x, name="relu")
    b = g.op("Identity", a, name="identity")
    c = g.op("Mul", b, g.initializer("two", np.full(4, 2, np.float32)), name="mul")
    d = g.op("Add", c, g.initializer("two_again", np.full(4, 2, np.float32)), name="add")
    g.op("Neg", d, name="dead")
    g.output(d, "y")
    del unused
    return g.build()


@pytest.fixture
def chain_path(tmp_path: Path) -> Path:
    path = tmp_path / "chain.onnx"
    ir.save(_chain(), path)
    return path


def _feeds():
    return {"x": np.array([[-1, 0, 1, 2], [3, -4, 5, 6]], np.float32), "unused": np.zeros(4, np.float32)}


def _out(model, feeds=None):
    proto = model if isinstance(model, (str, Path)) else ir.serde.serialize_model(model)
    return run(proto, feeds if feeds is not None else _feeds())


# ------------------------------------------------------------------ delete


def test_delete_node_bypasses_to_matching_input(chain_path):
    e = Editor(chain_path).delete_node("identity")
    report = e.finish()
    assert "identity" not in [n.name for n in e.graph]
    assert e.graph.node("mul").inputs[0].name == "relu_output"
    assert "deleted node 'identity'" in report.steps[0].summary
    np.testing.assert_allclose(_out(e.model)["y"], _out(chain_path)["y"])


def test_delete_graph_output_producer_keeps_output_name_and_drops_unused_inputs(resize_conv_add_path):
    e = Editor(resize_conv_add_path).delete_node("add")
    e.finish()
    assert [v.name for v in e.graph.outputs] == ["output"]
    assert e.graph.outputs[0].producer().op_type == "Conv"
    assert "add_input" not in [v.name for v in e.graph.inputs]


def test_delete_refuses_when_no_input_fits(resize_conv_add_path):
    with pytest.raises(UserInputError, match=r"cannot bypass node 'resize' \(Resize\): no input has") as err:
        Editor(resize_conv_add_path).delete_node("resize")
    assert "--keep-input" in err.value.hint


def test_delete_keep_input_type_mismatch_needs_force(resize_conv_add_path):
    with pytest.raises(UserInputError, match="cannot bypass node 'add'.*add_input"):
        Editor(resize_conv_add_path).delete_node("add", keep_input="add_input")
    e = Editor(resize_conv_add_path).delete_node("add", keep_input="add_input", force=True)
    assert e.graph.outputs[0].name == "output"
    with pytest.raises(UserInputError, match="no input of node 'add' \\(Add\\) matches 'conv_out'") as err:
        Editor(resize_conv_add_path).delete_node("add", keep_input="conv_out")
    assert "conv_output" in err.value.hint


def test_delete_unknown_node_names_closest(chain_path):
    with pytest.raises(UserInputError, match="no node matches 'idenity'") as err:
        Editor(chain_path).delete_node("idenity")
    assert "identity" in err.value.hint
    with pytest.raises(UserInputError, match="no node matches 'relu_output'") as err:
        Editor(chain_path).delete_node("relu_output")
    assert "is a tensor, produced by node 'relu'" in err.value.hint


def test_delete_by_op_type_and_patterns(chain_path):
    assert [n.name for n in Editor(chain_path).select_nodes("op:Mul")] == ["mul"]
    assert [n.name for n in Editor(chain_path).select_nodes("re:^(mul|add)$")] == ["mul", "add"]
    assert [n.name for n in Editor(chain_path).select_nodes("*d*")] == ["identity", "add", "dead"]
    with pytest.raises(UserInputError, match="no op type matches 'op:Conv'") as err:
        Editor(chain_path).select_nodes("op:Conv")
    assert "Identity" in err.value.hint or "Neg" in err.value.hint
    e = Editor(chain_path).delete_node("op:Identity")
    assert "Identity" not in [n.op_type for n in e.graph]


# ------------------------------------------------------------------ insert


def test_insert_cast_after_graph_output(resize_conv_add_path, tmp_path):
    out = tmp_path / "cast.onnx"
    Editor(resize_conv_add_path).insert_after("output", "Cast", attrs={"to": "int64"}).save(out)
    proto = onnx.load(out)
    assert proto.graph.output[0].name == "output"
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    got = run(out, SEED_FEEDS)["output"]
    want = run(resize_conv_add_path, SEED_FEEDS)["output"]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.astype(np.int64))


def test_insert_after_intermediate_with_extra_input(chain_path):
    e = Editor(chain_path).insert_after("relu_output", "Mul", inputs=["3.0"], name="triple")
    e.finish()
    assert e.graph.node("identity").inputs[0].producer().name == "triple"
    x = _feeds()["x"]
    np.testing.assert_allclose(_out(e.model)["y"], np.maximum(x, 0) * 3 * 2 + 2)


def test_insert_before_a_single_consumer(chain_path):
    e = Editor(chain_path).insert_before("relu_output", "Neg", consumer="identity")
    e.finish()
    x = _feeds()["x"]
    np.testing.assert_allclose(_out(e.model)["y"], -np.maximum(x, 0) * 2 + 2)
    with pytest.raises(UserInputError, match="node 'mul' does not read 'relu_output'"):
        Editor(chain_path).insert_before("relu_output", "Neg", consumer="mul")
    with pytest.raises(UserInputError, match="has no consumer"):
        Editor(chain_path).insert_before("op:Neg", "Neg")


def test_insert_errors(chain_path):
    with pytest.raises(UserInputError, match="no operator 'Cats'") as err:
        Editor(chain_path).insert_after("y", "Cats")
    assert "Cast" in err.value.hint
    with pytest.raises(UserInputError, match="unknown dtype 'int65'"):
        Editor(chain_path).insert_after("y", "Cast", attrs={"to": "int65"})
    with pytest.raises(UserInputError, match="Cast has no attribute 'too'"):
        Editor(chain_path).insert_after("y", "Cast", attrs={"too": "int64"})
    with pytest.raises(InvalidModelError, match="new node 'y_mul' \\(Mul\\)") as err:
        Editor(chain_path).insert_after("y", "Mul", inputs=[[1.0, 2.0, 3.0]])  # [batch,4] * [3]: no broadcast
    assert "float32[3]" in err.value.hint


# ------------------------------------------------------------------ replace / rename


def test_replace_op_and_attributes(chain_path):
    e = Editor(chain_path).replace_node("relu", op="LeakyRelu", attrs={"alpha": "0.5"})
    e.finish()
    x = _feeds()["x"]
    np.testing.assert_allclose(_out(e.model)["y"], np.where(x > 0, x, 0.5 * x) * 2 + 2)
    with pytest.raises(InvalidModelError, match="node 'mul' \\(Relu\\)"):
        Editor(chain_path).replace_node("mul", op="Relu")
    with pytest.raises(UserInputError, match="nothing to change"):
        Editor(chain_path).replace_node("mul")


def test_rename_tensor_and_node_verified(chain_path, tmp_path):
    e = Editor(chain_path).rename("x", "images").rename("mul", "scale").rename_tensor("y", "logits")
    report = e.save(tmp_path / "renamed.onnx")
    proto = onnx.load(tmp_path / "renamed.onnx")
    assert proto.graph.input[0].name == "images" and proto.graph.output[0].name == "logits"
    assert "scale" in [n.name for n in proto.graph.node]
    assert report.verifications and report.verifications[0].status == "passed"
    assert report.verifications[0].comparison.max_abs == 0.0


def test_rename_errors(chain_path):
    with pytest.raises(UserInputError, match="a tensor with that name exists"):
        Editor(chain_path).rename_tensor("x", "y")
    with pytest.raises(UserInputError, match="no tensor or node matches 'xx'"):
        Editor(chain_path).rename("xx", "z")
    with pytest.raises(UserInputError, match="matches 2 nodes"):
        Editor(chain_path).rename_node("re:^(mul|add)$", "z")


# ------------------------------------------------------------------ shapes and dtypes


def test_set_shape_fixed_and_symbolic(chain_path):
    e = Editor(chain_path).set_shape("x", "2x4")
    assert list(e.graph.outputs[0].shape) == [2, 4]
    e = Editor(chain_path).set_shape("x", ["N", 4])
    assert e.graph.outputs[0].shape[0].value == "N"
    e = Editor(chain_path).set_dims({"batch": 3})
    assert list(e.graph.outputs[0].shape) == [3, 4]
    with pytest.raises(UserInputError, match="has rank 2"):
        Editor(chain_path).set_shape("x", "1x2x4")
    with pytest.raises(InvalidModelError, match="set_shape x"):
        Editor(chain_path).set_shape("x", "2x5")
    with pytest.raises(UserInputError, match="no graph input matches 'two'"):
        Editor(chain_path).set_shape("two", "4")
    with pytest.raises(UserInputError, match="no symbolic dim matches 'batc'"):
        Editor(chain_path).set_dims({"batc": 1})


def test_input_and_output_dtype(chain_path):
    e = Editor(chain_path).set_input_dtype("x", "float16").set_output_dtype("y", "float64")
    e.finish()
    feeds = {"x": _feeds()["x"].astype(np.float16), "unused": _feeds()["unused"]}
    got = _out(e.model, feeds)["y"]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _out(chain_path)["y"])
    with pytest.raises(UserInputError, match="already float32"):
        Editor(chain_path).set_input_dtype("x", "float32")
    with pytest.raises(UserInputError, match="no graph output matches 'z'"):
        Editor(chain_path).set_output_dtype("z", "float16")


# ------------------------------------------------------------------ outputs, extract


def test_expose_and_remove_output(chain_path):
    e = Editor(chain_path).expose("relu_output")
    report = e.finish()
    out = _out(e.model)
    np.testing.assert_allclose(out["relu_output"], np.maximum(_feeds()["x"], 0))
    assert report.verifications[0].status == "passed"
    e.remove_output("relu_output")
    assert [v.name for v in e.graph.outputs] == ["y"]
    with pytest.raises(UserInputError, match="already a graph output"):
        Editor(chain_path).expose("y")
    with pytest.raises(UserInputError, match="only output"):
        Editor(chain_path).remove_output("y")
    with pytest.raises(UserInputError, match="no tensor matches 'relu_out'") as err:
        Editor(chain_path).expose("relu_out")
    assert "relu_output" in err.value.hint


def test_extract_subgraph_is_valid_and_verified(chain_path, tmp_path):
    out = tmp_path / "sub.onnx"
    report = Editor(chain_path).extract(["identity_output"], ["mul_output"]).save(out)
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert [n.op_type for n in proto.graph.node] == ["Mul"]
    assert report.verifications[0].status == "passed"
    with pytest.raises(UserInputError, match="no tensor matches 'mul_out'"):
        Editor(chain_path).extract(["identity_output"], ["mul_out"])


# ------------------------------------------------------------------ cleanup, toposort, opset


def test_cleanup_removes_dead_nodes_unused_inputs_duplicates(chain_path):
    e = Editor(chain_path).cleanup()
    report = e.finish()
    assert "dead" not in [n.name for n in e.graph]
    assert "unused" not in [v.name for v in e.graph.inputs]
    assert len(e.graph.initializers) == 1  # two == two_again
    assert report.verifications[0].status == "passed"


def test_toposort_fixes_order(chain_path):
    model = ir.load(chain_path)
    nodes = list(model.graph)
    model.graph.remove(nodes[0])
    model.graph.append(nodes[0])  # Relu last: out of order
    e = Editor(model).toposort()
    assert next(iter(e.graph)).op_type == "Relu"


def test_convert_opset_and_report(chain_path, resize_conv_add_path):
    e = Editor(chain_path).convert_opset(21)
    report = e.finish()
    assert e.model.opset_imports[""] == 21
    assert "1 node(s) changed version" in report.steps[0].summary  # Identity-19 and later
    assert report.verifications[0].status == "passed"
    assert "two" in e.graph.initializers
    with pytest.raises(UnsupportedError, match="No Adapter From Version \\$16 for Identity.*'identity'"):
        Editor(chain_path).convert_opset(13)
    with pytest.raises(UnsupportedError, match="No Adapter From Version \\$13 for Resize.*'resize'"):
        Editor(resize_conv_add_path).convert_opset(7)
    with pytest.raises(UserInputError, match="already uses opset 17"):
        Editor(chain_path).convert_opset(17)


# ------------------------------------------------------------------ validation, verification, files


def test_verification_failure_refuses_to_write(chain_path, tmp_path):
    e = Editor(chain_path).rename_tensor("y", "z")
    # corrupt the model behind the editor's back: the numerics-preserving segment must catch it
    e.graph.node("add").op_type = "Sub"
    with pytest.raises(OutputsDisagree, match="rename_tensor"):
        e.save(tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_source_is_never_overwritten(chain_path):
    before = chain_path.read_bytes()
    with pytest.raises(UserInputError, match="is the input model"):
        Editor(chain_path).delete_node("identity").save(chain_path)
    assert chain_path.read_bytes() == before


def test_external_data_model_stays_valid(tmp_path):
    g = GraphBuilder("big", opset=17)
    x = g.input("x", "float32", [1, 256])
    w = g.initializer("w", np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32))
    y = g.op("Identity", g.op("MatMul", x, w, name="mm"), name="id")
    g.output(y, "y")
    src = tmp_path / "src"
    src.mkdir()
    from onnxdeploy import _io as io

    io.save(g.build(), src / "big.onnx", external_data=True)
    [data] = io.data_files(src / "big.onnx")
    data_before = data.read_bytes()
    out = tmp_path / "out" / "edited.onnx"
    out.parent.mkdir()
    Editor(src / "big.onnx").delete_node("id").save(out)
    assert [p.exists() for p in io.data_files(out)] == [True]
    assert data.read_bytes() == data_before
    onnx.checker.check_model(str(out), full_check=True)
    feeds = {"x": np.ones((1, 256), np.float32)}
    np.testing.assert_allclose(run(out, feeds)["y"], run(src / "big.onnx", feeds)["y"], rtol=1e-6)


def test_copy_by_default_leaves_ir_model_alone():
    model = _chain()
    Editor(model).delete_node("identity")
    assert "identity" in [n.name for n in model.graph]


# ------------------------------------------------------------------ CLI


def test_cli_delete_and_cast(resize_conv_add_path, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    rc = main(["edit", str(resize_conv_add_path), "-o", str(out), "--delete-node", "add",
               "--insert-after", "output", "--op", "Cast", "--attr", "to=int64"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "deleted node 'add'" in captured.out and "inserted Cast" in captured.out
    assert "strict shape inference passed" in " ".join(captured.err.split())
    feeds = {k: v for k, v in SEED_FEEDS.items() if k != "add_input"}
    got = run(out, feeds)["output"]
    assert got.dtype == np.int64 and got.shape == (1, 32, 510, 510)


def test_cli_rename_cleanup_verifies_and_json(chain_path, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    rc = main(["edit", str(chain_path), "-o", str(out), "--rename", "x=images", "--cleanup", "--json"])
    import json

    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [s["op"] for s in data["steps"]] == ["rename_tensor", "cleanup"]
    assert data["verifications"][0]["status"] == "passed"


def test_cli_errors_are_one_line(chain_path, tmp_path, capsys):
    out = tmp_path / "o.onnx"
    assert main(["edit", str(chain_path), "-o", str(out), "--delete-node", "idenity"]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "error: delete-node: no node matches 'idenity'" in err and "identity" in err
    assert main(["edit", str(chain_path), "-o", str(out)]) == 1
    assert "no edit given" in " ".join(capsys.readouterr().err.split())
    assert main(["edit", str(chain_path), "-o", str(out), "--op", "Cast"]) == 1
    assert "--op/--attr/--name go with" in " ".join(capsys.readouterr().err.split())
    assert main(["edit", str(chain_path), "-o", str(chain_path), "--cleanup"]) == 1
    assert "would overwrite the input" in " ".join(capsys.readouterr().err.split())
    assert not out.exists()


def test_save_equals_standard_serialization(tmp_path):
    from onnxdeploy import _io as io

    model = _chain()
    big = np.arange(5000, dtype=np.float32).reshape(1250, 4)  # a second, larger tensor and a numpy-backed one
    value = ir.Value(name="big", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(big.shape),
                     const_value=ir.tensor(big, name="big"))
    model.graph.register_initializer(value)
    io.save(model, tmp_path / "s.onnx")
    got = onnx.load(tmp_path / "s.onnx")
    want = ir.serde.serialize_model(model)
    onnx.checker.check_model(got, full_check=True)
    assert got.graph.node == want.graph.node and got.graph.initializer == want.graph.initializer
    assert got.graph.input == want.graph.input and got.graph.output == want.graph.output
    assert got.opset_import == want.opset_import and got.ir_version == want.ir_version
    # the same through the editor, with tensors loaded from a file (written as is)
    ir.save(model, tmp_path / "m.onnx")
    Editor(tmp_path / "m.onnx").delete_node("identity").save(tmp_path / "e.onnx")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(
        next(t for t in onnx.load(tmp_path / "e.onnx").graph.initializer if t.name == "big")), big)
    assert not list(tmp_path.glob(".*.tmp"))
