"""`onnxdeploy._inspect`: metadata, I/O, histogram, parameters, FLOPs and nodes, without reading weights."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import examples
from onnxdeploy.cli.main import main
from onnxdeploy._inspect import inspect, load_structure


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


def _gemm_model(ir_version: int = 8, opset: int = 13, *, as_inputs: bool = False, big: bool = False):
    """x[N,8] -> Gemm(W 8x16 or 8x2048, b) -> Relu -> MatMul(W2) ; names with '/' and ':'."""
    rng = np.random.default_rng(0)
    width = 2048 if big else 16
    w = numpy_helper.from_array(rng.standard_normal((8, width)).astype(np.float32), "layer/0:weight")
    b = numpy_helper.from_array(np.zeros(width, np.float32), "layer/0:bias")
    w2 = numpy_helper.from_array(rng.standard_normal((width, 4)).astype(np.float32), "head:w")
    inits = [w, b, w2]
    inputs = [helper.make_tensor_value_info("in:x", TensorProto.FLOAT, [2, 8])]
    if as_inputs:
        inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    nodes = [
        helper.make_node("Gemm", ["in:x", "layer/0:weight", "layer/0:bias"], ["layer/0:y"], name="/layer/0/Gemm"),
        helper.make_node("Relu", ["layer/0:y"], ["layer/0:r"], name="/layer/0/Relu"),
        helper.make_node("MatMul", ["layer/0:r", "head:w"], ["out:y"], name="/head/MatMul"),
    ]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("out:y", TensorProto.FLOAT, None)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test",
                              producer_version="1.0")
    model.ir_version = ir_version
    return model


def test_seed_graph_weights_as_inputs(resize_conv_add_path):
    s = inspect(resize_conv_add_path, nodes=True)
    assert s.ir_version >= 7 and s.opset_imports == {"": 13}
    assert [t.name for t in s.inputs] == ["input", "roi", "scales", "conv_weight", "conv_bias", "add_input"]
    assert s.inputs[0].shape == [1, 3, 256, 256] and s.inputs[1].shape == []
    assert s.outputs[0].shape == [1, 32, 512, 512]
    assert s.op_histogram == {"Add": 1, "Conv": 1, "Resize": 1}
    assert s.parameter_count == 0 and s.initializers_as_inputs == []
    # scales is a runtime input: the Conv's output shape (and so its MACs) is unknown, and said so
    assert len(s.costs) == 1 and s.costs[0].macs is None and s.costs_unknown == s.costs
    assert [n.name for n in s.nodes] == ["resize", "conv", "add"]
    conv = s.nodes[1]
    assert conv.op_type == "Conv" and [t.name for t in conv.inputs] == ["conv_input", "conv_weight", "conv_bias"]
    assert conv.inputs[1].shape == [32, 3, 3, 3] and conv.inputs[1].dtype == "float"
    assert conv.inputs[0].shape is not None and len(conv.inputs[0].shape) == 4  # rank inferred through Resize


def test_parameters_flops_and_special_names(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_gemm_model(), path)
    s = inspect(path, nodes=True)
    assert s.producer_name == "test" and s.producer_version == "1.0"
    assert s.parameter_count == 8 * 16 + 16 + 16 * 4
    assert s.parameter_bytes == 4 * s.parameter_count
    assert s.initializer_count == 3
    by_op = {c.op_type: c for c in s.costs}
    assert by_op["Gemm"].macs == 2 * 16 * 8 and by_op["Gemm"].flops == 2 * 2 * 16 * 8 + 2 * 16
    assert by_op["MatMul"].macs == 2 * 4 * 16 and by_op["MatMul"].flops == 2 * 2 * 4 * 16
    assert s.macs == 256 + 128 and s.flops == 512 + 32 + 256
    assert s.outputs[0].name == "out:y" and s.outputs[0].shape == [2, 4]  # inferred, though declared shapeless
    assert s.nodes[0].name == "/layer/0/Gemm" and s.nodes[0].outputs[0].shape == [2, 16]


def test_conv_macs_with_known_shapes(tmp_path):
    model = examples.conv_bn_silu()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    for i in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[i].dim_value = 8
    s = inspect(model)
    assert s.costs[0].macs == 1 * 32 * 8 * 8 * (3 * 3 * 3)
    assert s.costs[0].flops == 2 * s.costs[0].macs + 32 * 8 * 8


def test_symbolic_dims(conv_bn_silu_path):
    s = inspect(conv_bn_silu_path, nodes=True)
    assert s.inputs[0].shape == ["batch", 3, "height", "width"]
    assert s.outputs[0].shape == ["batch", 32, "height", "width"]
    assert s.nodes[0].outputs[0].shape[:2] == ["batch", 32]
    assert s.costs[0].macs is None  # symbolic spatial dims: no number is made up
    assert s.parameter_count == 32 * 27 + 5 * 32


def test_dims_count_flops_of_a_dynamic_model_at_given_sizes(conv_bn_silu_path, capsys):
    s = inspect(conv_bn_silu_path, dims={"batch": 2, "height": 8, "width": 8})
    assert s.costs[0].macs == 2 * 32 * 8 * 8 * (3 * 3 * 3)
    assert s.inputs[0].shape == ["batch", 3, "height", "width"]  # listed as declared
    assert s.dims == {"batch": 2, "height": 8, "width": 8} and s.symbolic_dims == []
    assert main(["inspect", str(conv_bn_silu_path)]) == 0
    assert "--dim batch=N --dim height=N --dim width=N" in " ".join(capsys.readouterr().out.split())
    assert main(["inspect", str(conv_bn_silu_path), "--dim", "hieght=8"]) == 1
    assert "did you mean height?" in capsys.readouterr().err


def test_old_model_ir3_initializers_as_inputs(tmp_path):
    path = tmp_path / "old.onnx"
    onnx.save(_gemm_model(ir_version=3, opset=7, as_inputs=True), path)
    s = inspect(path)
    assert s.ir_version == 3 and s.opset_imports == {"": 7}
    assert s.initializers_as_inputs == ["layer/0:weight", "layer/0:bias", "head:w"]
    assert [t.name for t in s.inputs] == ["in:x"]  # initializers are not inputs a caller feeds
    assert s.macs == 384


@pytest.mark.parametrize("opset", [8, 9])
def test_old_opsets(opset):
    s = inspect(_gemm_model(ir_version=3, opset=opset, as_inputs=True))
    assert s.opset_imports == {"": opset} and s.shape_inference_error is None


def test_custom_domains_and_functions():
    fn = helper.make_function("my.fns", "Double", ["x"], ["y"], [helper.make_node("Add", ["x", "x"], ["y"])],
                              [helper.make_opsetid("", 17)])
    nodes = [
        helper.make_node("Double", ["x"], ["a"], domain="my.fns", name="double"),
        helper.make_node("Gelu", ["a"], ["y"], domain="com.microsoft", name="gelu"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])])
    model = helper.make_model(graph, functions=[fn], opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("my.fns", 1), helper.make_opsetid("com.microsoft", 1)])
    s = inspect(model)
    assert s.custom_domains == ["com.microsoft", "my.fns"]
    assert s.functions == ["my.fns::Double"]
    assert s.op_histogram == {"com.microsoft::Gelu": 1, "my.fns::Double": 1}


def test_large_embedded_weights_are_not_parsed(tmp_path):
    """Big initializers are skipped at the wire level, yet counted exactly; the in-memory path agrees."""
    path = tmp_path / "big.onnx"
    model = _gemm_model(big=True)
    onnx.save(model, path)
    proto, stripped = load_structure(path)
    assert set(stripped) == {"layer/0:weight", "layer/0:bias", "head:w"}
    weight = next(t for t in proto.graph.initializer if t.name == "layer/0:weight")
    assert list(weight.dims) == [8, 2048] and not weight.raw_data
    from_file, from_memory = inspect(path), inspect(model)
    assert from_file.parameter_bytes == from_memory.parameter_bytes == 4 * (8 * 2048 + 2048 + 2048 * 4)
    assert from_file.macs == from_memory.macs == 2 * 2048 * 8 + 2 * 4 * 2048
    assert len(model.graph.initializer[0].raw_data) == 4 * 8 * 2048  # the caller's proto is untouched


def test_external_data_is_counted_not_read(tmp_path, monkeypatch):
    path = tmp_path / "ext.onnx"
    onnx.save(_gemm_model(big=True), path, save_as_external_data=True, location="ext.onnx.data",
              size_threshold=1024)
    import onnx.external_data_helper as edh

    def boom(*args, **kwargs):
        raise AssertionError("external data was read")

    monkeypatch.setattr(edh, "load_external_data_for_model", boom)
    s = inspect(path)
    assert s.external_files == ["ext.onnx.data"]
    assert s.external_bytes == s.parameter_bytes == 4 * (8 * 2048 + 2048 + 2048 * 4)


def test_accepts_ir_model():
    import onnx_ir as ir

    s = inspect(ir.serde.deserialize_model(_gemm_model()))
    assert s.macs == 384 and s.path is None


def test_bad_file_is_a_clean_error(tmp_path):
    from onnxdeploy.errors import ModelFileError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x3a\xff\xff\xff\x0f")  # a graph field claiming more bytes than the file has
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        inspect(bad)


def test_cli_tables_and_json(resize_conv_add_path, capsys):
    assert main(["inspect", str(resize_conv_add_path), "--nodes"]) == 0
    out = capsys.readouterr().out
    for text in ("IR version", "resize_conv_add_graph", "1x3x256x256", "1x32x512x512", "conv_weight: float 32x3x3x3",
                 "Resize", "conv_input: float"):
        assert text in out
    assert main(["inspect", str(resize_conv_add_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["op_histogram"] == {"Add": 1, "Conv": 1, "Resize": 1}
    assert data["nodes"] is None and data["inputs"][0] == {"name": "input", "dtype": "float", "shape": [1, 3, 256, 256]}


def test_cli_escapes_markup_in_names(tmp_path, capsys):
    graph = helper.make_graph([helper.make_node("Relu", ["x[0]"], ["y[bold]"], name="n[red]")], "g",
                              [helper.make_tensor_value_info("x[0]", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y[bold]", TensorProto.FLOAT, [1])])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), path)
    assert main(["inspect", str(path), "--nodes"]) == 0
    out = capsys.readouterr().out
    assert "x[0]" in out and "y[bold]" in out and "n[red]" in out


_PEAK = """
import re, sys
from onnxdeploy._inspect import inspect
s = inspect(sys.argv[1])
# VmHWM: this process's peak RSS (ru_maxrss would carry over the forking pytest process's peak)
hwm_kb = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
print(s.external_bytes, s.parameter_count, hwm_kb // 1024)
"""


def test_over_2gb_external_model_is_inspected_without_reading_it(tmp_path):
    """2.5 GB of external weights (a sparse file): described exactly, in a process that stays small."""
    import subprocess
    import sys

    rows = cols = 8192
    layer = rows * cols * 4
    count = 10  # 10 x 256 MiB = 2.5 GiB
    inits, nodes, x = [], [], "x"
    for i in range(count):
        w = TensorProto(name=f"layers.{i}/w:0", data_type=TensorProto.FLOAT, dims=[rows, cols],
                        data_location=TensorProto.EXTERNAL)
        for k, v in {"location": "big.onnx.data", "offset": str(i * layer), "length": str(layer)}.items():
            w.external_data.add(key=k, value=v)
        inits.append(w)
        nodes.append(helper.make_node("MatMul", [x, w.name], [f"h{i}"]))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, rows])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, cols])], inits)
    onnx.save(helper.make_model(graph), tmp_path / "big.onnx")
    with open(tmp_path / "big.onnx.data", "wb") as fh:
        fh.truncate(count * layer)
    proc = subprocess.run([sys.executable, "-c", _PEAK, str(tmp_path / "big.onnx")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    external, params, peak_mib = map(int, proc.stdout.split())
    assert external == count * layer and params == count * rows * cols
    assert peak_mib < 200


def test_nodes_include_subgraphs_with_their_path(capsys):
    """If/Loop bodies are listed too, each node with the path of its subgraph and its inferred shapes."""
    then_g = helper.make_graph([helper.make_node("Relu", ["x"], ["t"], name="relu_in_then")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3])])
    else_g = helper.make_graph([helper.make_node("Neg", ["x"], ["e"], name="neg_in_else")], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 3])])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then_g, else_branch=else_g)], "g",
        [helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    s = inspect(model, nodes=True)
    by_name = {n.name: n for n in s.nodes}
    assert [n.name for n in s.nodes][0] == "branch" and set(by_name) == {"branch", "relu_in_then", "neg_in_else"}
    assert by_name["relu_in_then"].graph == "branch/then_branch" and by_name["branch"].graph == ""
    assert by_name["relu_in_then"].inputs[0].shape == [2, 3]  # the outer x, seen from inside
    assert by_name["neg_in_else"].outputs[0].shape == [2, 3]
    assert {n["name"]: n["graph"] for n in s.to_dict()["nodes"]}["neg_in_else"] == "branch/else_branch"
