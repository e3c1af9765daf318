"""The graph builder: a graph in a few lines, shapes inferred, errors naming the node."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxdeploy import examples
from onnxdeploy._build import GraphBuilder, to_dtype
from onnxdeploy.errors import InvalidModelError, UserInputError
from onnxdeploy._run import run


def resize_conv_add(scales_const: bool = True) -> ir.Model:
    """The seed article's graph, in the builder's words."""
    g = GraphBuilder("resize_conv_add", opset=13)
    x = g.input("input", "float32", [1, 3, 256, 256])
    scales = np.array([1, 1, 2, 2], np.float32) if scales_const else g.input("scales", "float32", [4])
    y = g.op("Resize", x, np.array([], np.float32), scales, name="resize")
    y = g.op("Conv", y, g.input("conv_weight", "float32", [32, 3, 3, 3]), g.input("conv_bias", "float32", [32]),
             name="conv")
    g.output(g.op("Add", y, g.input("add_input", "float32", [1]), name="add"), "output")
    return g.build()


def test_resize_conv_add_in_ten_lines_infers_the_real_output_shape():
    model = resize_conv_add()
    out = model.graph.outputs[0]
    assert out.name == "output"
    assert out.dtype == ir.DataType.FLOAT
    assert list(out.shape) == [1, 32, 510, 510]  # the article declared 512x512 by hand, wrongly
    conv_in = model.graph.node("resize").outputs[0]
    assert list(conv_in.shape) == [1, 3, 512, 512]
    onnx.checker.check_model(ir.serde.serialize_model(model), full_check=True)


def test_built_model_runs_like_the_seed_model():
    feeds = examples.resize_conv_add_inputs()
    model = resize_conv_add(scales_const=False)
    got = run(ir.serde.serialize_model(model), {k: v for k, v in feeds.items() if k != "roi"})
    want = run(examples.resize_conv_add(), feeds)
    assert got["output"].shape == (1, 32, 510, 510)
    np.testing.assert_allclose(got["output"], want["output"], rtol=1e-5, atol=1e-5)


def test_symbolic_dims_and_constants():
    g = GraphBuilder("sym", opset=17)
    x = g.input("x", "float16", ["batch", 8])
    w = g.initializer("w", np.ones((8, 4), np.float16))
    y = g.op("MatMul", x, w)
    z = g.op("Relu", g.op("Add", y, np.ones(4, np.float16)))
    g.output(z, "z")
    model = g.build()
    assert [d if isinstance(d, int) else d.value for d in model.graph.outputs[0].shape] == ["batch", 4]
    assert model.graph.outputs[0].dtype == ir.DataType.FLOAT16
    assert "w" in model.graph.initializers
    out = run(ir.serde.serialize_model(model), {"x": np.ones((3, 8), np.float16)})
    assert out["z"].shape == (3, 4) and float(out["z"][0, 0]) == 9.0


def test_multiple_outputs_and_attributes():
    g = GraphBuilder("split", opset=18)
    x = g.input("x", "float32", [2, 6])
    a, b = g.op("Split", x, outputs=["a", "b"], axis=1, num_outputs=2)
    g.output(a)
    g.output(g.op("Transpose", b, perm=[1, 0]), "bt")
    model = g.build()
    assert [list(v.shape) for v in model.graph.outputs] == [[2, 3], [3, 2]]


def test_type_mismatch_names_the_node_at_once():
    g = GraphBuilder("bad", opset=17)
    x = g.input("x", "float32", [2, 3])
    i = g.input("i", "int64", [2, 3])
    with pytest.raises(InvalidModelError, match=r"node 'mix' \(Add\).*") as err:
        g.op("Add", x, i, name="mix")
    assert "x: float32[2x3]" in err.value.hint and "i: int64[2x3]" in err.value.hint


def test_shape_error_names_the_node():
    g = GraphBuilder("bad", opset=17)
    a = g.input("a", "float32", [2, 3])
    b = g.input("b", "float32", [4, 5])
    with pytest.raises(InvalidModelError, match="node 'mm' \\(MatMul\\)"):
        g.op("MatMul", a, b, name="mm")


def test_unknown_op_and_attribute_are_user_errors():
    g = GraphBuilder("bad", opset=17)
    x = g.input("x", "float32", [2])
    with pytest.raises(UserInputError, match="no operator 'Rleu'") as err:
        g.op("Rleu", x)
    assert "Relu" in err.value.hint
    with pytest.raises(UserInputError, match="unknown attribute") as err:
        g.op("Softmax", x, axes=0)
    assert "axis" in err.value.hint


def test_duplicate_names_and_missing_outputs_refused():
    g = GraphBuilder("bad", opset=17)
    g.input("x", "float32", [2])
    with pytest.raises(UserInputError, match="already used"):
        g.input("x", "float32", [2])
    with pytest.raises(UserInputError, match="no outputs"):
        g.build()
    with pytest.raises(UserInputError, match="opset must be a positive integer"):
        GraphBuilder("x", opset=0)


def test_to_dtype_names():
    assert to_dtype("float16") == ir.DataType.FLOAT16
    assert to_dtype("INT64") == ir.DataType.INT64
    assert to_dtype(np.float32) == ir.DataType.FLOAT
    with pytest.raises(UserInputError, match="unknown dtype 'flaot32'") as err:
        to_dtype("flaot32")
    assert "float32" in err.value.hint
