"""Safe model I/O: every bad file is refused with one clear line; saving is atomic and never clobbers files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import _io as io
from onnxdeploy.cli.main import main
from onnxdeploy.errors import ModelFileError, UnsafeModelError, UserInputError

@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


WEIGHT = np.arange(64, dtype=np.float32).reshape(8, 8)


def _model(weight: onnx.TensorProto | None = None) -> onnx.ModelProto:
    w = weight if weight is not None else numpy_helper.from_array(WEIGHT, "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _external_model(folder: Path, location: str, *, offset: int = 0, length: int | None = None) -> Path:
    """A model whose weight 'w' (256 bytes) is stored externally at ``location`` (no data file written)."""
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[8, 8], data_location=TensorProto.EXTERNAL)
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        w.external_data.add(key=k, value=v)
    path = folder / "model.onnx"
    onnx.save(_model(w), path)
    return path


# ---------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        io.load_proto(tmp_path / "nope.onnx")


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder"):
        io.load_proto(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match="the file is empty"):
        io.load_proto(tmp_path / "e.onnx")


def test_truncated_file(tmp_path):
    data = _model().SerializeToString()
    (tmp_path / "t.onnx").write_bytes(data[: len(data) - 40])
    with pytest.raises(ModelFileError, match="truncated or corrupt protobuf"):
        io.load_proto(tmp_path / "t.onnx")


def test_corrupt_file(tmp_path):
    (tmp_path / "c.onnx").write_bytes(b"\x08\x07\x3a" + bytes(range(250, 256)) * 20)
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        io.load_proto(tmp_path / "c.onnx")


@pytest.mark.parametrize(
    "content",
    [b"hello, this is a text file\n", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"],
    ids=["text", "jpeg"],
)
def test_not_onnx(tmp_path, content):
    (tmp_path / "x.onnx").write_bytes(content)
    with pytest.raises(ModelFileError, match=r"not (a valid ONNX model|an ONNX model)"):
        io.load_proto(tmp_path / "x.onnx")


def test_absolute_location(tmp_path):
    target = tmp_path / "abs.bin"
    target.write_bytes(WEIGHT.tobytes())
    (tmp_path / "m").mkdir()
    path = _external_model(tmp_path / "m", str(target))
    with pytest.raises(UnsafeModelError, match="is an absolute path"):
        io.load_proto(path)


def test_dotdot_location(tmp_path):
    (tmp_path / "secret.bin").write_bytes(WEIGHT.tobytes())
    (tmp_path / "m").mkdir()
    path = _external_model(tmp_path / "m", "../secret.bin")
    with pytest.raises(UnsafeModelError, match=r"escapes the model's folder \('\.\.'\)"):
        io.load_proto(path)


def test_symlink_escaping(tmp_path):
    (tmp_path / "secret.bin").write_bytes(WEIGHT.tobytes())
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "secret.bin", tmp_path / "m" / "w.bin")
    path = _external_model(tmp_path / "m", "w.bin")
    with pytest.raises(UnsafeModelError, match="goes through a symbolic link"):
        io.load_proto(path)


def test_symlinked_folder(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "w.bin").write_bytes(WEIGHT.tobytes())
    (tmp_path / "m").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "m" / "sub")
    path = _external_model(tmp_path / "m", "sub/w.bin")
    with pytest.raises(UnsafeModelError, match="symbolic link"):
        io.load_proto(path)


def test_hard_link(tmp_path):
    (tmp_path / "secret.bin").write_bytes(WEIGHT.tobytes())
    (tmp_path / "m").mkdir()
    os.link(tmp_path / "secret.bin", tmp_path / "m" / "w.bin")
    path = _external_model(tmp_path / "m", "w.bin")
    with pytest.raises(UnsafeModelError, match="is a hard link"):
        io.load_proto(path)


def test_missing_data_file(tmp_path):
    path = _external_model(tmp_path, "w.bin")
    with pytest.raises(ModelFileError, match="file not found next to the model"):
        io.load_proto(path)


def test_data_file_too_short(tmp_path):
    (tmp_path / "w.bin").write_bytes(WEIGHT.tobytes()[:100])
    path = _external_model(tmp_path, "w.bin")
    with pytest.raises(ModelFileError, match=r"file is too short \(100 bytes, the tensor needs bytes 0\.\.256\)"):
        io.load_proto(path)


def test_offset_past_end(tmp_path):
    (tmp_path / "w.bin").write_bytes(WEIGHT.tobytes())
    path = _external_model(tmp_path, "w.bin", offset=4096, length=256)
    with pytest.raises(ModelFileError, match="file is too short"):
        io.load_proto(path)


def test_negative_offset(tmp_path):
    (tmp_path / "w.bin").write_bytes(WEIGHT.tobytes())
    path = _external_model(tmp_path, "w.bin", offset=-8)
    with pytest.raises(UnsafeModelError, match="negative external-data offset"):
        io.load_proto(path)


def test_valid_external_data_loads_lazily_and_exactly(tmp_path):
    (tmp_path / "w.bin").write_bytes(WEIGHT.tobytes())
    path = _external_model(tmp_path, "w.bin")
    proto = io.load_proto(path)
    assert proto.graph.initializer[0].data_location == TensorProto.EXTERNAL  # not read
    full = io.load_proto(path, load_weights=True)
    np.testing.assert_array_equal(numpy_helper.to_array(full.graph.initializer[0]), WEIGHT)
    model = io.load(path)
    np.testing.assert_array_equal(model.graph.initializers["w"].const_value.numpy(), WEIGHT)


def test_cli_reports_unsafe_model_without_traceback(tmp_path, capsys):
    (tmp_path / "secret.bin").write_bytes(WEIGHT.tobytes())
    (tmp_path / "m").mkdir()
    path = _external_model(tmp_path / "m", "../secret.bin")
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert "error:" in err and "escapes the model's folder" in err and "Traceback" not in err


# ---------------------------------------------------------------- saving


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_save_round_trip_embedded(tmp_path):
    out = io.save(_model(), tmp_path / "out.onnx")
    assert out.exists() and not (tmp_path / "out.onnx.data").exists() and _leftovers(tmp_path) == []
    proto = io.load_proto(out)
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), WEIGHT)


def _break_writes(monkeypatch, external_data: bool) -> None:
    """Make io.save fail mid-way: onnx_ir's writer (external data) or the final rename (embedded weights)."""
    import onnx_ir as ir

    def broken_save(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")
        raise OSError("disk full")

    def broken_replace(src, dst):
        raise OSError("disk full")

    if external_data:
        monkeypatch.setattr(ir, "save", broken_save)
    else:
        monkeypatch.setattr(io.os, "replace", broken_replace)


@pytest.mark.parametrize("external_data", [False, True])
def test_save_failure_leaves_nothing(tmp_path, monkeypatch, external_data):
    _break_writes(monkeypatch, external_data)
    with pytest.raises(OSError, match="disk full"):
        io.save(_model(), tmp_path / "out.onnx", external_data=external_data)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("external_data", [False, True])
def test_save_failure_keeps_previous_output(tmp_path, monkeypatch, external_data):
    io.save(_model(), tmp_path / "out.onnx", external_data=external_data)
    before = (tmp_path / "out.onnx").read_bytes()
    _break_writes(monkeypatch, external_data)
    with pytest.raises(OSError):
        io.save(_model(), tmp_path / "out.onnx", external_data=external_data)
    assert (tmp_path / "out.onnx").read_bytes() == before and _leftovers(tmp_path) == []


def test_save_never_touches_an_unrelated_data_file(tmp_path):
    """A file named like the legacy data file that no model of ours references is left alone: the new data file gets
    a name unique to the write."""
    unrelated = tmp_path / "out.onnx.data"
    unrelated.write_bytes(b"someone else's file")
    io.save(_model(), tmp_path / "out.onnx", external_data=True, size_threshold_bytes=16)
    assert unrelated.read_bytes() == b"someone else's file"
    [data] = io.data_files(tmp_path / "out.onnx")
    assert data.name.startswith("out.onnx.") and data.name.endswith(".data") and data != unrelated


def test_save_overwrites_its_own_previous_data_file(tmp_path):
    io.save(_model(), tmp_path / "out.onnx", external_data=True, size_threshold_bytes=16)
    [first] = io.data_files(tmp_path / "out.onnx")
    io.save(_model(), tmp_path / "out.onnx", external_data=True, size_threshold_bytes=16)
    [second] = io.data_files(tmp_path / "out.onnx")
    assert first != second and not first.exists()  # the replaced model's data file is removed after the commit
    proto = io.load_proto(tmp_path / "out.onnx", load_weights=True)
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), WEIGHT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.onnx", second.name]


def test_save_keeps_a_symlink_named_like_a_data_file(tmp_path):
    (tmp_path / "target").write_bytes(b"x")
    os.symlink(tmp_path / "target", tmp_path / "out.onnx.data")
    io.save(_model(), tmp_path / "out.onnx", external_data=True)
    assert (tmp_path / "target").read_bytes() == b"x" and (tmp_path / "out.onnx.data").is_symlink()


def test_save_switches_to_external_data_above_threshold(tmp_path, monkeypatch):
    io.save(_model(), tmp_path / "small.onnx", size_threshold_bytes=16)
    assert not (tmp_path / "small.onnx.data").exists()
    monkeypatch.setattr(io, "EXTERNAL_THRESHOLD", 100)  # the 256-byte weight now "exceeds" the limit
    io.save(_model(), tmp_path / "big.onnx", size_threshold_bytes=16)
    [data] = io.data_files(tmp_path / "big.onnx")
    assert data.stat().st_size == WEIGHT.nbytes
    proto = io.load_proto(tmp_path / "big.onnx")
    assert proto.graph.initializer[0].data_location == TensorProto.EXTERNAL
    assert {e.key: e.value for e in proto.graph.initializer[0].external_data}["location"] == data.name
    from onnxdeploy._run import run

    x = np.ones((1, 8), np.float32)
    np.testing.assert_allclose(run(tmp_path / "big.onnx", {"x": x})["y"], x @ WEIGHT)


def test_save_to_missing_folder(tmp_path):
    with pytest.raises(UserInputError, match="output folder does not exist"):
        io.save(_model(), tmp_path / "no" / "out.onnx")


def test_save_does_not_modify_input_file(tmp_path):
    src = tmp_path / "in.onnx"
    onnx.save(_model(), src)
    before = src.read_bytes()
    io.save(src, tmp_path / "copy.onnx")
    assert src.read_bytes() == before


def test_atomic_write_bytes(tmp_path):
    io.atomic_write_bytes(tmp_path / "a.bin", b"123")
    assert (tmp_path / "a.bin").read_bytes() == b"123" and _leftovers(tmp_path) == []


def test_written_files_get_ordinary_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600) or copy a source's mode; the result must be an ordinary file others can
    read (0666 minus the umask), like the model, its data file, an .npz or a report."""
    import stat

    from onnxdeploy._build import GraphBuilder

    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    g = GraphBuilder("m", opset=17)
    g.output(g.op("Mul", g.input("x", "float32", [4]), g.initializer("w", np.ones(4, np.float32))), "y")
    model = g.build()
    paths = [io.save(model, tmp_path / "embedded.onnx"),
             io.save(model, tmp_path / "external.onnx", external_data=True, size_threshold_bytes=0),
             *io.data_files(tmp_path / "external.onnx"),
             io.atomic_write_text(tmp_path / "report.txt", "x")]
    for path in paths:
        assert stat.S_IMODE(os.stat(path).st_mode) == expected, path
