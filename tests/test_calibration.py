"""Calibration data users have: .npz, .npy, folders of arrays or test_data_set_K folders, folders of images; checked
against the model's inputs with one-line errors, bounded, and split into disjoint calibration/held-out sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import Calibration, load_calibration, quantize, split_holdout
from onnxdeploy.cli.main import main
from onnxdeploy.errors import MissingDependencyError, UserInputError



def _pil_image():
    """PIL.Image; the image tests skip without Pillow (the [images] extra), the array ones run."""
    return pytest.importorskip("PIL.Image", reason="Pillow (the [images] extra) is not installed")


def _conv(shape, dtype=TensorProto.FLOAT, name="x", channels_last=False) -> onnx.ModelProto:
    """One Conv (+Relu, global pool, Gemm to 4 logits) on an image input of ``shape``."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32), "w"),
             numpy_helper.from_array((rng.standard_normal((8, 4)) * 0.3).astype(np.float32), "fcw")]
    nodes, x = [], name
    if dtype != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", [x], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    if channels_last:
        nodes.append(helper.make_node("Transpose", [x], ["xt"], perm=[0, 3, 1, 2]))
        x = "xt"
    nodes += [helper.make_node("Conv", [x, "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
              helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "fcw"], ["logits"], name="fc")]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info(name, dtype, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _two_inputs() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def cnn(tmp_path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(_conv([1, 3, 16, 16]), path)
    return path


def _images(folder: Path, count: int, colour=None, size=(20, 30)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for k in range(count):
        pixels = (np.full((*size, 3), colour, np.uint8) if colour is not None
                  else rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        _pil_image().fromarray(pixels).save(folder / f"img{k}.{'png' if k % 2 else 'bmp'}")
    return folder


def _one_line(err) -> str:
    assert "\n" not in err.message and (err.hint is None or "\n" not in err.hint)
    return err.message


# ---------------------------------------------------------------- arrays


def test_npz_with_a_sample_axis_or_batch_rows(cnn, tmp_path):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "axis.npz", x=rng.standard_normal((5, 1, 3, 16, 16)).astype(np.float32))
    np.savez(tmp_path / "rows.npz", x=rng.standard_normal((6, 3, 16, 16)).astype(np.float32))
    axis = load_calibration(tmp_path / "axis.npz", cnn)
    rows = load_calibration(tmp_path / "rows.npz", cnn)
    assert (len(axis), len(rows)) == (5, 6)
    assert axis[0]["x"].shape == rows[5]["x"].shape == (1, 3, 16, 16)
    assert axis.kind == "npz" and "5 samples from axis.npz" in axis.description
    two = tmp_path / "two.npz"
    np.savez(two, a=np.zeros((3, 2, 4), np.float32), b=np.ones((3, 2, 4), np.float32))  # per input, named
    samples = load_calibration(two, _two_inputs())
    assert len(samples) == 3 and samples[2]["b"].shape == (2, 4) and samples[2]["b"].sum() == 8


def test_one_npy_file_and_a_folder_of_npy_files(cnn, tmp_path):
    rng = np.random.default_rng(3)
    np.save(tmp_path / "x.npy", rng.standard_normal((4, 3, 16, 16)).astype(np.float32))
    assert len(load_calibration(tmp_path / "x.npy", cnn)) == 4
    folder = tmp_path / "per_sample"
    folder.mkdir()
    for k in range(3):
        np.save(folder / f"a_{k}.npy", np.full((1, 4), k, np.float32))
        np.save(folder / f"b_{k}.npy", np.full((1, 4), 10 * k, np.float32))
    samples = load_calibration(folder, _two_inputs())
    assert [float(s["b"][0, 0]) for s in samples] == [0, 10, 20] and samples.kind == "npy folder"


def test_test_data_set_folders(cnn, tmp_path):
    rng = np.random.default_rng(4)
    for k in range(3):
        (tmp_path / "sets" / f"test_data_set_{k}").mkdir(parents=True)
        tensor = numpy_helper.from_array(rng.standard_normal((1, 3, 16, 16)).astype(np.float32), "x")
        (tmp_path / "sets" / f"test_data_set_{k}" / "input_0.pb").write_bytes(tensor.SerializeToString())
    samples = load_calibration(tmp_path / "sets", cnn)
    assert len(samples) == 3 and samples.kind == "test_data_set"
    assert samples.origins == ["test_data_set_0", "test_data_set_1", "test_data_set_2"]


def test_wrong_names_shapes_and_dtypes_are_one_line_errors(cnn, tmp_path):
    np.savez(tmp_path / "name.npz", y=np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(UserInputError, match="no input named 'y'") as info:
        load_calibration(tmp_path / "name.npz", cnn)
    assert "x" in info.value.hint
    np.savez(tmp_path / "shape.npz", x=np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(UserInputError) as info:
        load_calibration(tmp_path / "shape.npz", cnn)
    assert _one_line(info.value) == ("calibration sample 0: input 'x' has shape 1x3x8x8, but dim 2 is fixed to 16 "
                                     "(model expects 1x3x16x16) (from shape.npz row 0)")
    np.savez(tmp_path / "dtype.npz", x=np.zeros((2, 3, 16, 16), np.float64))
    with pytest.raises(UserInputError, match="calibration sample 0: input 'x' has dtype float64") as info:
        load_calibration(tmp_path / "dtype.npz", cnn)
    _one_line(info.value)
    with pytest.raises(UserInputError, match="lacks input\\(s\\) b"):
        load_calibration({"a": np.zeros((2, 1, 4), np.float32)}, _two_inputs())
    with pytest.raises(UserInputError, match="no such file or folder"):
        load_calibration(tmp_path / "missing.npz", cnn)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no .npy, .pb or image files in it"):
        load_calibration(tmp_path / "empty", cnn)


# ---------------------------------------------------------------- images


def test_images_are_resized_normalized_and_laid_out_as_stated(cnn, tmp_path):
    folder = _images(tmp_path / "grey128", 3, colour=128)
    samples = load_calibration(folder, cnn)
    assert len(samples) == 3 and samples.kind == "images"
    x = samples[0]["x"]
    assert x.shape == (1, 3, 16, 16) and x.dtype == np.float32
    want = (128 / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x[0, :, 5, 7], want, atol=1e-6)
    assert samples.description == (
        "3 images from grey128: resized to cover 16x16 (bilinear, aspect kept), centre-cropped, RGB, /255, "
        "mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225) (ImageNet), float32, NCHW 1x3x16x16 for input 'x'")
    given = load_calibration(folder, cnn, mean=(0.5,), std=(0.25,))
    np.testing.assert_allclose(given[0]["x"][0, :, 0, 0], (128 / 255 - 0.5) / 0.25, atol=1e-6)
    assert "mean (0.5, 0.5, 0.5), std (0.25, 0.25, 0.25) (given)" in given.description


def test_image_layout_size_and_dtype_follow_the_model(tmp_path):
    folder = _images(tmp_path / "imgs", 4)
    nhwc = load_calibration(folder, _conv([2, 12, 10, 3], channels_last=True))
    assert len(nhwc) == 2 and nhwc[0]["x"].shape == (2, 12, 10, 3) and "NHWC 2x12x10x3" in nhwc.description
    raw = load_calibration(folder, _conv([1, 3, 8, 8], dtype=TensorProto.UINT8))
    assert raw[0]["x"].dtype == np.uint8 and "raw 0-255 pixels" in raw.description
    dynamic = _conv(["n", 3, "h", "w"])
    with pytest.raises(UserInputError, match="symbolic height/width .* the image size is unknown") as info:
        load_calibration(folder, dynamic)
    assert "--image-size" in info.value.hint
    stretched = load_calibration(folder, dynamic, image_size=(6, 9), resize="stretch")
    assert stretched[0]["x"].shape == (1, 3, 6, 9) and "stretched to 6x9" in stretched.description
    with pytest.raises(UserInputError, match="image size 8x8 contradicts input 'x' .* height is fixed to 16"):
        load_calibration(folder, _conv([1, 3, 16, 16]), image_size=8)


def test_image_errors_are_one_line(cnn, tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", 2)
    with pytest.raises(UserInputError, match="the model has 2 inputs \\(a, b\\)") as info:
        load_calibration(folder, _two_inputs())
    _one_line(info.value)
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UserInputError, match="calibration image .*broken.png: not a readable image") as info:
        load_calibration(folder, cnn)
    _one_line(info.value)
    (folder / "broken.png").unlink()
    np.save(folder / "x.npy", np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(UserInputError, match="holds both images and arrays"):
        load_calibration(folder, cnn)
    (folder / "x.npy").unlink()
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingDependencyError, match="need Pillow, which is not installed") as info:
        load_calibration(folder, cnn)
    assert info.value.hint == "pip install 'onnxdeploy[images]'"


# ---------------------------------------------------------------- bounds and held-out


def test_limits_on_count_and_bytes(cnn, tmp_path, monkeypatch):
    folder = _images(tmp_path / "imgs", 6)
    subset = load_calibration(folder, cnn, limit=4, seed=1)
    assert len(subset) == 4 and "a seeded random subset of 6, seed 1" in subset.description
    assert subset.origins == load_calibration(folder, cnn, limit=4, seed=1).origins  # seeded: the same four
    monkeypatch.setattr("onnxdeploy._calibration.MAX_SAMPLES", 5)
    with pytest.raises(UserInputError, match="6 images, more than 5 samples") as info:
        load_calibration(folder, cnn)
    assert "--samples N" in info.value.hint
    np.savez_compressed(tmp_path / "big.npz", x=np.zeros((4, 3, 16, 16), np.float32))  # small on disk only
    np.save(tmp_path / "big.npy", np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(UserInputError, match="big.npy: 12.1 KiB on disk, over the 10.0 KiB limit"):
        load_calibration(tmp_path / "big.npy", cnn, max_bytes=10 * 1024)
    with pytest.raises(UserInputError, match="4 samples hold 12.0 KiB, over the 10.0 KiB limit"):
        load_calibration(tmp_path / "big.npz", cnn, max_bytes=10 * 1024)
    with pytest.raises(UserInputError, match="6 images of 3.0 KiB = 18.0 KiB, over the 10.0 KiB limit"):
        load_calibration(folder, cnn, max_bytes=10 * 1024, limit=6)
    assert len(load_calibration(tmp_path / "big.npz", cnn, limit=2)) == 2


def test_split_holdout_gives_disjoint_sets():
    samples = [{"a": np.full((1, 4), k, np.float32)} for k in range(10)]
    calib, held = split_holdout(samples, 0.2)
    assert [int(s["a"][0, 0]) for s in held] == [8, 9] and len(calib) == 8
    calib, held = split_holdout(samples, 0.3, seed=0)
    ids = lambda group: {int(s["a"][0, 0]) for s in group}  # noqa: E731
    assert len(held) == 3 and not ids(calib) & ids(held) and ids(calib) | ids(held) == set(range(10))
    assert len(split_holdout(samples, 4)[1]) == 4  # a whole number is a count
    with pytest.raises(UserInputError, match="cannot hold out samples from 1 sample: need at least 2"):
        split_holdout(samples[:1], 0.5)
    with pytest.raises(UserInputError, match="cannot hold out 10 of 10 samples"):
        split_holdout(samples, 10)
    with pytest.raises(UserInputError, match="held-out fraction must be in \\(0, 1\\)"):
        split_holdout(samples, -0.5)


# ---------------------------------------------------------------- quantize with images


def test_quantize_calibrates_on_an_image_folder(cnn, tmp_path):
    folder = _images(tmp_path / "imgs", 6)
    report = quantize(cnn, tmp_path / "q.onnx", mode="static", calibration=Calibration(folder), measure=False)
    assert (report.calibration_samples, report.heldout_samples) == (5, 1)
    assert report.calibration == str(folder) and "resized to cover 16x16" in report.calibration_details
    assert not any("synthesized" in w for w in report.warnings)
    out = tmp_path / "cli.onnx"
    rc = main(["quantize", str(cnn), "-o", str(out), "--calibration", str(folder), "--mean", "0.5,0.5,0.5",
               "--std", "0.5,0.5,0.5", "--no-measure", "--json", "--mode", "static"])
    assert rc == 0 and out.exists()


def test_quantize_cli_image_options(cnn, tmp_path, capsys):
    folder = _images(tmp_path / "imgs", 6)
    assert main(["quantize", str(cnn), "-o", str(tmp_path / "q.onnx"), "-c", str(folder), "--std", "0.5",
                 "--no-measure", "--json", "--mode", "static"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert "std (0.5, 0.5, 0.5) (given)" in data["calibration_details"]
    assert main(["quantize", str(cnn), "-o", str(tmp_path / "q2.onnx"), "--mean", "0.5", "--no-measure"]) == 1
    assert "--mean only apply to --calibration images" in capsys.readouterr().err
    assert not (tmp_path / "q2.onnx").exists()
