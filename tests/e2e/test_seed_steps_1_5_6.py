"""The seed article's steps 1 (build), 5 (delete Add) and 6 (insert Cast), end to end with numeric checks."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir

from onnxdeploy import examples
from onnxdeploy._build import GraphBuilder
from onnxdeploy.cli.main import main
from onnxdeploy._run import run

FEEDS = examples.resize_conv_add_inputs()


def _conv_output(feeds):
    """The Conv output of the original model, exposed the article's way (as a reference)."""
    proto = examples.resize_conv_add()
    proto.graph.output.append(onnx.helper.make_tensor_value_info("conv_output", onnx.TensorProto.FLOAT, None))
    return run(proto, feeds)["conv_output"]


def test_step1_build_by_hand(tmp_path):
    g = GraphBuilder("resize_conv_add_graph", opset=13)
    x = g.input("input", "float32", [1, 3, 256, 256])
    y = g.op("Resize", x, g.input("roi", "float32", []), g.input("scales", "float32", [4]), name="resize")
    y = g.op("Conv", y, g.input("conv_weight", "float32", [32, 3, 3, 3]), g.input("conv_bias", "float32", [32]),
             name="conv")
    g.output(g.op("Add", y, g.input("add_input", "float32", [1]), name="add"), "output")
    path = tmp_path / "built.onnx"
    ir.save(g.build(), path)
    onnx.checker.check_model(str(path), full_check=True)
    out = run(path, FEEDS)["output"]
    assert out.shape == (1, 32, 510, 510)  # the article's declared 512x512 was wrong
    np.testing.assert_allclose(out, run(examples.resize_conv_add(), FEEDS)["output"], rtol=1e-6, atol=1e-6)


def test_step5_delete_add(resize_conv_add_path, tmp_path, capsys):
    out = tmp_path / "no_add.onnx"
    assert main(["edit", str(resize_conv_add_path), "-o", str(out), "--delete-node", "add"]) == 0
    proto = onnx.load(out)
    assert [n.op_type for n in proto.graph.node] == ["Resize", "Conv"]
    assert "add_input" not in [i.name for i in proto.graph.input]
    feeds = {k: v for k, v in FEEDS.items() if k != "add_input"}
    np.testing.assert_array_equal(run(out, feeds)["output"], _conv_output(FEEDS))
    assert "deleted node 'add'" in capsys.readouterr().out


def test_step6_insert_cast(resize_conv_add_path, tmp_path):
    out = tmp_path / "cast.onnx"
    assert main(["edit", str(resize_conv_add_path), "-o", str(out), "--insert-after", "output", "--op", "Cast",
                 "--attr", "to=int64"]) == 0
    proto = onnx.load(out)
    assert proto.graph.output[0].name == "output"
    assert proto.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    got = run(out, FEEDS)["output"]
    want = run(resize_conv_add_path, FEEDS)["output"]
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want.astype(np.int64))
    assert resize_conv_add_path.read_bytes() == examples.resize_conv_add().SerializeToString()  # input untouched
