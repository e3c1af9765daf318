"""`onnxdeploy run`: inputs from files or synthesized, clear input errors, -o, --expect and shape warnings."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxdeploy import examples
from onnxdeploy.cli.main import main
from onnxdeploy.errors import UserInputError
from onnxdeploy._run import input_roles, prepare_inputs, run_model, synthesize_inputs


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


def _x(shape=(2, 3, 4, 4)) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


# ---------------------------------------------------------------- input errors (API and CLI)


def test_unknown_input_names_closest(conv_bn_silu_path):
    with pytest.raises(UserInputError, match="no input named 'inptu'") as info:
        prepare_inputs(conv_bn_silu_path, inputs={"inptu": _x()})
    assert "did you mean input" in info.value.hint


def test_missing_input_when_others_given(resize_conv_add_path):
    feeds = examples.resize_conv_add_inputs()
    del feeds["scales"]
    from onnxdeploy._run import input_specs, validate_inputs

    with pytest.raises(UserInputError, match=r"missing input 'scales' \(float32, shape 4\)"):
        validate_inputs(input_specs(resize_conv_add_path), feeds)


def test_wrong_dtype(conv_bn_silu_path):
    with pytest.raises(UserInputError, match="input 'input' has dtype float64, the model expects float32"):
        prepare_inputs(conv_bn_silu_path, inputs={"input": _x().astype(np.float64)})


def test_wrong_rank(conv_bn_silu_path):
    with pytest.raises(UserInputError, match=r"input 'input' has rank 3 .* the model expects rank 4"):
        prepare_inputs(conv_bn_silu_path, inputs={"input": _x((3, 4, 4))})


def test_shape_contradicts_fixed_dim(conv_bn_silu_path):
    with pytest.raises(UserInputError, match=r"has shape 2x5x4x4, but dim 1 is fixed to 3"):
        prepare_inputs(conv_bn_silu_path, inputs={"input": _x((2, 5, 4, 4))})


def test_cli_input_errors(conv_bn_silu_path, tmp_path, capsys):
    np.save(tmp_path / "x.npy", _x().astype(np.float64))
    assert main(["run", str(conv_bn_silu_path), "--input", f"input={tmp_path / 'x.npy'}"]) == 1
    err = capsys.readouterr().err
    assert "error: input 'input' has dtype float64, the model expects float32" in err and "Traceback" not in err
    assert main(["run", str(conv_bn_silu_path), "--input", "inptu=x.npy"]) == 1
    err = capsys.readouterr().err
    assert "--input: the model has no input named 'inptu'" in err and "did you mean input?" in err
    assert main(["run", str(conv_bn_silu_path), "--input", "input"]) == 1
    assert "--input expects NAME=VALUE" in capsys.readouterr().err
    assert main(["run", str(conv_bn_silu_path), "--input", f"input={tmp_path / 'none.npy'}"]) == 1
    assert "no such input file" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.onnx")]) == 1
    assert "no such file" in capsys.readouterr().err


# ---------------------------------------------------------------- input files and synthesis


def test_npy_and_pb_inputs_agree(conv_bn_silu_path, tmp_path, capsys):
    x = _x()
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
    a = run_model(conv_bn_silu_path, input_files={"input": tmp_path / "x.npy"}).outputs["values"]
    b = run_model(conv_bn_silu_path, input_files={"input": tmp_path / "input_0.pb"}).outputs["values"]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 32, 4, 4)
    assert main(["run", str(conv_bn_silu_path), "--input", f"input={tmp_path / 'input_0.pb'}", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outputs"]["values"]["shape"] == [2, 32, 4, 4] and data["expected"] is None


def test_dim_and_shape_options(conv_bn_silu_path, capsys):
    assert main(["run", str(conv_bn_silu_path), "--dim", "batch=2", "--dim", "height=5", "--dim", "width=6"]) == 0
    assert "2x32x5x6" in capsys.readouterr().out
    assert main(["run", str(conv_bn_silu_path), "--shape", "input=1x3x7x9"]) == 0
    assert "1x32x7x9" in capsys.readouterr().out
    assert main(["run", str(conv_bn_silu_path), "--shape", "input=1x4x7x9"]) == 1
    assert "dim 1 is fixed to 3" in capsys.readouterr().err


def test_synthesis_is_seeded(conv_bn_silu_path):
    a = synthesize_inputs(conv_bn_silu_path, seed=3)["input"]
    np.testing.assert_array_equal(a, synthesize_inputs(conv_bn_silu_path, seed=3)["input"])
    assert not np.array_equal(a, synthesize_inputs(conv_bn_silu_path, seed=4)["input"])
    assert a.shape == (1, 3, 224, 224)  # batch 1, image sides 224


def test_default_dims_follow_each_dims_role():
    from onnxdeploy._run import InputSpec, default_dims

    specs = [InputSpec("input_ids", np.dtype("int64"), ("batch", "sequence")),
             InputSpec("pixels", np.dtype("float32"), ("n", 3, "h", "w")),
             InputSpec("audio", np.dtype("float32"), ("b", "time"))]
    assert default_dims(specs) == {"batch": 1, "sequence": 128, "n": 1, "h": 224, "w": 224, "b": 1, "time": 1}
    assert default_dims(specs, {"sequence": 7})["sequence"] == 7


def test_resize_inputs_get_sensible_values(resize_conv_add_path):
    assert input_roles(resize_conv_add_path) == {"roi": ("Resize", 1, "input"), "scales": ("Resize", 2, "input")}
    feeds = synthesize_inputs(resize_conv_add_path)
    assert feeds["roi"].shape == (0,) and feeds["roi"].dtype == np.float32
    np.testing.assert_array_equal(feeds["scales"], np.ones(4, np.float32))
    result = run_model(resize_conv_add_path)
    assert result.outputs["output"].shape == (1, 32, 254, 254)  # scales 1: no resize, then a 3x3 valid conv


def test_integer_mask_inputs_are_ones():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
         helper.make_node("Cast", ["ids"], ["i"], to=TensorProto.FLOAT)], "g",
        [helper.make_tensor_value_info("attention_mask", TensorProto.INT64, [2, 5]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 5])],
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [2, 5]),
         helper.make_tensor_value_info("i", TensorProto.FLOAT, [2, 5])])
    feeds = synthesize_inputs(helper.make_model(graph))
    assert (feeds["attention_mask"] == 1).all() and feeds["ids"].dtype == np.int64
    assert feeds["ids"].min() >= 0 and feeds["ids"].max() < 4


# ---------------------------------------------------------------- outputs, -o and --expect


def test_output_npz_and_expect(resize_conv_add_path, tmp_path, capsys):
    np.savez(tmp_path / "in.npz", **examples.resize_conv_add_inputs())
    out = tmp_path / "out.npz"
    assert main(["run", str(resize_conv_add_path), "--inputs", str(tmp_path / "in.npz"), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1x32x510x510" in captured.out
    assert "warning: output 'output' has shape 1x32x510x510 but the model declares 1x32x512x512" in captured.err
    with np.load(out) as saved:
        assert saved["output"].shape == (1, 32, 510, 510)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz", "out.npz", "resize_conv_add.onnx"]  # no temp files
    # same inputs: passes
    assert main(["run", str(resize_conv_add_path), "--inputs", str(tmp_path / "in.npz"), "--expect", str(out)]) == 0
    assert "expected vs run: passed" in " ".join(capsys.readouterr().out.split())
    # other inputs: exit code 3
    other = examples.resize_conv_add_inputs(seed=1)
    np.savez(tmp_path / "in1.npz", **other)
    assert main(["run", str(resize_conv_add_path), "--inputs", str(tmp_path / "in1.npz"), "--expect", str(out)]) == 3
    assert "outputs differ from" in capsys.readouterr().err
    # a failed check leaves no output behind
    assert main(["run", str(resize_conv_add_path), "--inputs", str(tmp_path / "in1.npz"), "--expect", str(out),
                 "-o", str(tmp_path / "failed.npz")]) == 3
    assert not (tmp_path / "failed.npz").exists()
    # a huge tolerance makes it pass
    assert main(["run", str(resize_conv_add_path), "--inputs", str(tmp_path / "in1.npz"), "--expect", str(out),
                 "--atol", "1e9"]) == 0


def test_expect_test_data_dir(conv_bn_silu_path, tmp_path, capsys):
    x = _x()
    ref = run_model(conv_bn_silu_path, {"input": x}).outputs["values"]
    data = tmp_path / "test_data_set_0"
    data.mkdir()
    (data / "input_0.pb").write_bytes(numpy_helper.from_array(x, "input").SerializeToString())
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(ref, "values").SerializeToString())
    assert main(["run", str(conv_bn_silu_path), "--inputs", str(data), "--expect", str(data)]) == 0
    capsys.readouterr()
    (data / "output_0.pb").write_bytes(numpy_helper.from_array(ref + 1, "values").SerializeToString())
    assert main(["run", str(conv_bn_silu_path), "--inputs", str(data), "--expect", str(data), "--json"]) == 3
    assert json.loads(capsys.readouterr().out)["expected"]["passed"] is False


def test_expect_unknown_output(conv_bn_silu_path, tmp_path, capsys):
    np.savez(tmp_path / "e.npz", valeus=np.zeros(1, np.float32))
    assert main(["run", str(conv_bn_silu_path), "--expect", str(tmp_path / "e.npz")]) == 1
    assert "no output named 'valeus'" in capsys.readouterr().err


def test_output_must_be_npz_in_an_existing_folder(conv_bn_silu_path, tmp_path, capsys):
    assert main(["run", str(conv_bn_silu_path), "-o", str(tmp_path / "out.npy")]) == 1
    assert "outputs are saved as .npz" in capsys.readouterr().err
    assert not (tmp_path / "out.npy").exists()
    assert main(["run", str(conv_bn_silu_path), "-o", str(tmp_path / "no" / "out.npz")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_python_api_returns_arrays(conv_bn_silu_path):
    import onnxdeploy

    outputs = onnxdeploy.run(conv_bn_silu_path, {"input": _x()})
    assert list(outputs) == ["values"] and outputs["values"].dtype == np.float32
    outputs_proto = onnxdeploy.run(onnx.load(conv_bn_silu_path), {"input": _x()})
    np.testing.assert_array_equal(outputs["values"], outputs_proto["values"])
    assert onnxdeploy.inspect(conv_bn_silu_path).op_histogram["Conv"] == 1


def _valid_conv_path(tmp_path):
    """A 1-D Conv (kernel 3, no padding) on a symbolic length: fails when the length defaults to 1."""
    from onnx import TensorProto, helper

    w = numpy_helper.from_array(np.ones((1, 1, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "length"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_runtime_failure_names_the_input_shapes_and_dim_option(tmp_path, capfd):
    path = _valid_conv_path(tmp_path)
    rc = main(["run", str(path)])
    err = capfd.readouterr().err  # capfd: onnxruntime logs from C++ straight to file descriptor 2
    assert rc == 1 and "Traceback" not in err
    assert "hint: the inputs were x=1x1x1" in err and "--dim NAME=N" in err
    assert "[E:onnxruntime" not in err  # onnxruntime's own log line is not printed on top of our error
    assert main(["run", str(path), "--dim", "length=5"]) == 0
