"""issue 13: one output-path guard for every writer; every tensor location checked wherever it lives; the model path
itself checked before it is read; the ONNX checker and verification never resolve external data against the cwd;
one commit point for a model and its data, stale temp files cleaned."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import _io as io
from onnxdeploy.cli.main import main
from onnxdeploy.errors import ModelFileError, UnsafeModelError, UserInputError

W = np.arange(16, dtype=np.float32).reshape(4, 4)


@pytest.fixture(autouse=True)
def _fresh_operation(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)
    io.forget_reads()
    yield
    io.forget_reads()


def _graph_model(initializers=(), nodes=None, functions=(), opset=17) -> onnx.ModelProto:
    nodes = nodes or [helper.make_node("MatMul", ["x", "w"], ["t"], name="mm"),
                      helper.make_node("Identity", ["t"], ["y"], name="id")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], list(initializers))
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid("local", 1)] if functions else [])
    return helper.make_model(graph, opset_imports=opsets, functions=list(functions))


def _ext(name: str, location: str, array: np.ndarray = W, **extra) -> TensorProto:
    t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=list(array.shape),
                    data_location=TensorProto.EXTERNAL)
    for k, v in {"location": location, "offset": "0", "length": str(array.nbytes), **extra}.items():
        t.external_data.add(key=k, value=v)
    return t


def _external_model(folder: Path, name: str = "model.onnx", data: str = "w.data") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / data).write_bytes(W.tobytes())
    path = folder / name
    onnx.save(_graph_model([_ext("w", data)]), path)
    return path


def _sum(*paths: Path) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


def _refused(capsys, args: list[str], *needles: str) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "Traceback" not in err and "error:" in err
    for needle in needles:
        assert needle in err, err
    return err


# ---------------------------------------------------------------- the output-path guard, through the CLI


@pytest.mark.parametrize("args", [
    ["legalize", "{m}", "--target", "tensorrt", "-o", "{m}"],
    ["convert", "{m}", "--target", "onnxruntime", "-o", "{m}"],
    ["probe", "{m}", "--all", "-o", "{m}"],
    ["bench", "{m}", "-n", "2", "--warmup", "0", "--profile", "--svg", "{m}"],
    ["edit", "{m}", "-o", "{d}/out.onnx", "--delete-node", "id", "--save-recipe", "{m}"],
    ["optimize", "{d}/../{d_name}/./model.onnx", "-o", "{m}"],
    ["optimize", "{m}", "-o", "{d}/w.data"],
    ["edit", "{m}", "-o", "{d}/w.data", "--delete-node", "id"],
    ["legalize", "{m}", "--target", "tensorrt", "-o", "{d}/w.data"],
    ["quantize", "{m}", "-o", "{d}/w.data", "--mode", "dynamic"],
], ids=["legalize", "convert-ort", "probe", "bench-svg", "edit-save-recipe", "spelled-differently",
        "optimize-data", "edit-data", "legalize-data", "quantize-data"])
def test_cli_never_overwrites_an_input(tmp_path, capsys, args, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    d = tmp_path / "m"
    m = _external_model(d)
    before = _sum(m, d / "w.data")
    argv = [a.format(m=m, d=d, d_name=d.name) for a in args]
    _refused(capsys, argv, "would overwrite")
    assert _sum(m, d / "w.data") == before
    assert not [p.name for p in d.iterdir() if p.name not in ("model.onnx", "w.data")]


def test_hard_link_to_the_input_is_refused(tmp_path):
    m = _external_model(tmp_path / "m")
    io.load(m)
    os.link(m, tmp_path / "alias.onnx")
    with pytest.raises(UserInputError, match="would overwrite an input file"):
        io.check_output_path(tmp_path / "alias.onnx")
    with pytest.raises(UserInputError, match="would overwrite the input"):
        io.save(_graph_model([numpy_helper.from_array(W, "w")]), m)
    io.save(_graph_model([numpy_helper.from_array(W, "w")]), m, allow_overwrite_input=True)  # documented escape


@pytest.mark.parametrize("where,message", [
    ("missing/out.onnx", "output folder does not exist"),
    ("", "is a folder"),
    ("/proc/out.onnx", "cannot write under /proc"),
    ("x" * 300 + ".onnx", "File name too long"),
])
def test_bad_destinations_are_one_line(tmp_path, where, message):
    target = where if where.startswith("/") else tmp_path / where
    with pytest.raises((UserInputError, ModelFileError), match=message):
        io.atomic_write_text(target, "x")


def test_read_only_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(io.os, "access", lambda p, mode: False)
    with pytest.raises(UserInputError, match="output folder is not writable"):
        io.check_output_path(tmp_path / "out.onnx")


def test_new_output_never_replaces_a_data_file_another_model_reads(tmp_path):
    """Writing out.onnx next to other.onnx, which reads out.onnx.data: other.onnx keeps its data."""
    other = _external_model(tmp_path, "other.onnx", data="out.onnx.data")
    before = _sum(tmp_path / "out.onnx.data")
    io.save(_graph_model([numpy_helper.from_array(W * 2, "w")]), tmp_path / "out.onnx", external_data=True,
            size_threshold_bytes=0)
    assert _sum(tmp_path / "out.onnx.data") == before
    np.testing.assert_array_equal(io.load(other).graph.initializers["w"].const_value.numpy(), W)
    np.testing.assert_array_equal(io.load(tmp_path / "out.onnx").graph.initializers["w"].const_value.numpy(), W * 2)
    # replacing out.onnx again (a new operation) removes its previous data file, never the one other.onnx reads
    io.forget_reads()
    io.save(_graph_model([numpy_helper.from_array(W * 3, "w")]), tmp_path / "out.onnx", external_data=True,
            size_threshold_bytes=0)
    assert _sum(tmp_path / "out.onnx.data") == before
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".data")]) == 2


def test_replaced_legacy_data_file_kept_when_another_model_reads_it(tmp_path):
    """out.onnx referenced out.onnx.data (an older onnxdeploy), and so does copy.onnx: replacing out.onnx keeps it."""
    _external_model(tmp_path, "out.onnx", data="out.onnx.data")
    _external_model(tmp_path, "copy.onnx", data="out.onnx.data")
    io.save(_graph_model([numpy_helper.from_array(W, "w")]), tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx.data").exists() and io.load(tmp_path / "copy.onnx")


def test_stale_temp_files_of_dead_writers_are_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".onnxdeploy-tmp-{dead}-0badc0de-save").mkdir()
    (tmp_path / f".onnxdeploy-tmp-{dead}-0badc0de-save" / "out.onnx").write_bytes(b"partial")
    (tmp_path / f"out.onnx.{dead}-0badc0de.data").write_bytes(b"orphan")  # renamed, model never committed
    (tmp_path / f".onnxdeploy-tmp-{os.getppid()}-0badc0de-x").write_bytes(b"a live writer's")
    io.save(_graph_model([numpy_helper.from_array(W, "w")]), tmp_path / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f".onnxdeploy-tmp-{os.getppid()}-0badc0de-x",
                                                                 "out.onnx"])


# ---------------------------------------------------------------- the model path itself


@pytest.mark.parametrize("kind", ["fifo", "urandom", "zero", "folder", "loop", "long"])
def test_model_path_checked_before_reading(tmp_path, kind, capsys):
    if kind == "fifo":
        path = tmp_path / "m.onnx"
        os.mkfifo(path)
        message = "is a FIFO"
    elif kind in ("urandom", "zero"):
        path, message = Path(f"/dev/{kind}"), "is a device"
    elif kind == "folder":
        path, message = tmp_path, "is a folder"
    elif kind == "loop":
        path = tmp_path / "a.onnx"
        os.symlink(tmp_path / "b.onnx", path)
        os.symlink(path, tmp_path / "b.onnx")
        message = "symbolic link loop"
    else:
        path, message = tmp_path / ("x" * 300 + ".onnx"), "name too long"
    with pytest.raises(ModelFileError, match=message):
        io.load_proto(path)
    for verb in (["inspect"], ["probe"], ["optimize"]):
        _refused(capsys, [*verb, str(path)] + (["-o", str(tmp_path / "o.onnx")] if verb == ["optimize"] else []),
                 message)


# ---------------------------------------------------------------- every tensor location


def _if_in_function(location: str) -> onnx.ModelProto:
    """A model-local function whose If branch holds a Constant with external data at ``location``."""
    const = helper.make_node("Constant", [], ["c"], name="const", value=_ext("c", location))
    then_g = helper.make_graph([const], "then", [], [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 4])])
    else_g = helper.make_graph([helper.make_node("Constant", [], ["e"], value=numpy_helper.from_array(W, "e"))],
                               "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [4, 4])])
    fn = helper.make_function(
        "local", "Pick", ["x", "cond"], ["y"],
        [helper.make_node("If", ["cond"], ["k"], name="if", then_branch=then_g, else_branch=else_g),
         helper.make_node("MatMul", ["x", "k"], ["y"])],
        opset_imports=[helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Constant", [], ["cond"], value=numpy_helper.from_array(np.array(True), "cond")),
             helper.make_node("Pick", ["x", "cond"], ["y"], domain="local", name="pick")]
    return _graph_model(nodes=nodes, functions=[fn])


def test_if_branch_in_function_resolves_against_model_folder_not_cwd(tmp_path, monkeypatch, capsys):
    """The issue's run: a relative location in an If branch of a model-local function was read from the cwd."""
    d = tmp_path / "m"
    d.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    (cwd / "c.bin").write_bytes((W + 100).tobytes())  # the decoy: must never be read
    onnx.save(_if_in_function("c.bin"), d / "model.onnx")
    with pytest.raises(ModelFileError, match=r"tensor 'c' \(function 'Pick', node 'if'.*file not found next to"):
        io.load(d / "model.onnx")
    _refused(capsys, ["optimize", str(d / "model.onnx"), "-o", str(tmp_path / "o.onnx")], "file not found")
    (d / "c.bin").write_bytes(W.tobytes())
    assert main(["optimize", str(d / "model.onnx"), "-o", str(tmp_path / "o.onnx")]) == 0
    from onnxdeploy._run import run

    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(run(tmp_path / "o.onnx", {"x": x})["y"], x @ W)


def _sparse(location: str) -> onnx.SparseTensorProto:
    values = _ext("sv", location, np.ones(2, np.float32))
    indices = numpy_helper.from_array(np.array([0, 5], np.int64), "si")
    return helper.make_sparse_tensor(values, indices, [4, 4])


@pytest.mark.parametrize("site", ["initializer", "sparse-initializer", "constant", "sparse-constant", "loop-body",
                                  "scan-body", "function-constant", "tensors-attr"])
def test_unsafe_locations_refused_wherever_the_tensor_lives(tmp_path, site):
    (tmp_path / "secret.bin").write_bytes(W.tobytes())
    d = tmp_path / "m"
    d.mkdir()
    bad = "../secret.bin"
    plain = [helper.make_node("Identity", ["x"], ["y"])]
    if site == "initializer":
        model = _graph_model([_ext("w", bad)])
    elif site == "sparse-initializer":
        model = _graph_model(nodes=plain)
        model.graph.sparse_initializer.append(_sparse(bad))
    elif site == "constant":
        model = _graph_model(nodes=[helper.make_node("Constant", [], ["w"], value=_ext("w", bad)), *plain[:0],
                                    helper.make_node("MatMul", ["x", "w"], ["y"])])
    elif site == "sparse-constant":
        model = _graph_model(nodes=[helper.make_node("Constant", [], ["w"], sparse_value=_sparse(bad)), *plain])
    elif site in ("loop-body", "scan-body"):
        body = helper.make_graph([helper.make_node("Identity", ["w2"], ["o"])], "body", [], [
            helper.make_tensor_value_info("o", TensorProto.FLOAT, [4, 4])], [_ext("w2", bad)])
        inner = helper.make_node("If", ["c"], ["z"], then_branch=body, else_branch=body)
        outer = helper.make_graph([inner], "outer", [], [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 4])])
        model = _graph_model(nodes=[helper.make_node("If", ["c"], ["y"], then_branch=outer, else_branch=outer)])
    elif site == "function-constant":
        fn = helper.make_function("local", "F", ["x"], ["y"], [
            helper.make_node("Constant", [], ["k"], value=_ext("k", bad)),
            helper.make_node("MatMul", ["x", "k"], ["y"])], opset_imports=[helper.make_opsetid("", 17)])
        model = _graph_model(nodes=[helper.make_node("F", ["x"], ["y"], domain="local")], functions=[fn])
    else:
        node = helper.make_node("Identity", ["x"], ["y"])
        node.attribute.append(helper.make_attribute("blobs", [_ext("b", bad)]))
        model = _graph_model(nodes=[node])
    onnx.save(model, d / "model.onnx")
    with pytest.raises(UnsafeModelError, match=r"escapes the model's folder"):
        io.load_proto(d / "model.onnx")


@pytest.mark.parametrize("case,message", [
    ("string", "a string tensor cannot be stored as external data"),
    ("undefined", "an undefined tensor cannot be stored as external data"),
    ("empty-length", "malformed external-data length"),
    ("text-offset", "malformed external-data offset"),
    ("short-length", "is shorter than the tensor's 64 bytes"),
    ("long-name", "File name too long"),
    ("fifo", "is not a regular file"),
    ("folder", "is not a regular file"),
    ("loop", "symbolic link"),
    ("dot", "names no file"),
])
def test_malformed_external_tensors_are_one_line(tmp_path, case, message):
    (tmp_path / "w.data").write_bytes(W.tobytes())
    t = _ext("w", "w.data")
    if case == "string":
        t.data_type = TensorProto.STRING
    elif case == "undefined":
        t.data_type = TensorProto.UNDEFINED
    elif case in ("empty-length", "text-offset", "short-length"):
        key = "offset" if case == "text-offset" else "length"
        value = {"empty-length": "", "text-offset": "abc", "short-length": "8"}[case]
        for e in t.external_data:
            if e.key == key:
                e.value = value
    else:
        location = {"long-name": "x" * 300, "fifo": "pipe", "folder": "sub", "loop": "l1", "dot": "."}[case]
        for e in t.external_data:
            if e.key == "location":
                e.value = location
        if case == "fifo":
            os.mkfifo(tmp_path / "pipe")
        elif case == "folder":
            (tmp_path / "sub").mkdir()
        elif case == "loop":
            os.symlink(tmp_path / "l2", tmp_path / "l1")
            os.symlink(tmp_path / "l1", tmp_path / "l2")
    onnx.save(_graph_model([t]), tmp_path / "model.onnx")
    with pytest.raises((ModelFileError, UnsafeModelError), match=message) as info:
        io.load_proto(tmp_path / "model.onnx")
    assert "\n" not in str(info.value) and "'w'" in str(info.value)


# ---------------------------------------------------------------- the checker and verification use the model's folder


@pytest.mark.parametrize("verb", ["optimize", "edit"])
@pytest.mark.parametrize("decoy", [False, True], ids=["other-cwd", "decoy-in-cwd"])
def test_external_data_model_from_another_cwd(tmp_path, monkeypatch, capsys, verb, decoy):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    m = _external_model(tmp_path / "m")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if decoy:
        (cwd / "w.data").write_bytes(np.full(16, 7, np.float32).tobytes())
    out = tmp_path / "out.onnx"
    extra = ["--delete-node", "id"] if verb == "edit" else []
    assert main([verb, str(m), "-o", str(out), *extra]) == 0, capsys.readouterr().err
    from onnxdeploy._run import run

    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    [y] = run(out, {"x": x}).values()
    np.testing.assert_allclose(y, x @ W)


def test_checker_helpers_read_the_model_folder(tmp_path, monkeypatch):
    m = _external_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.data").write_bytes(b"decoy")
    model = io.load(m)
    assert io.external_base_dir(model) == str(tmp_path / "m")
    from onnxdeploy._edit import run_checker

    run_checker(model)  # the checker sees no external reference
    proto = io.inline_external_data(onnx.load(str(m), load_external_data=False), m.parent)
    np.testing.assert_array_equal(numpy_helper.to_array(proto.graph.initializer[0]), W)


def test_no_writer_replaces_the_data_file_of_another_model_in_the_folder(tmp_path: Path, capsys):
    """probe -o / bench --svg onto a file another model (not an input of the command) reads as external data."""
    from onnxdeploy.cli.main import main

    other = _external_model(tmp_path / "m", name="other.onnx", data="shared.data")
    before = (tmp_path / "m" / "shared.data").read_bytes()
    model = _external_model(tmp_path / "m2")
    rc = main(["probe", str(model), "-o", str(tmp_path / "m" / "shared.data")])
    err = capsys.readouterr().err
    assert rc == 1 and "would overwrite the external data of another model" in err
    assert (tmp_path / "m" / "shared.data").read_bytes() == before and other.exists()
