"""OS and library errors end as one line naming the file; bugs keep their traceback; printing never interprets markup;
recipes, dims, synthesized inputs and input files are bounded; children die with their parent."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxdeploy import errors
from onnxdeploy.cli.main import DEBUG_ENV, main
from onnxdeploy.errors import InvalidModelError, ModelFileError, UserInputError, translate

ONNXDEPLOY = Path(sys.executable).parent / "onnxdeploy"


@pytest.fixture(autouse=True)
def _fresh_consoles(monkeypatch):
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


def _relu_model(node_name: str = "n", input_name: str = "x") -> onnx.ModelProto:
    node = helper.make_node("Relu", [input_name], ["y"], name=node_name)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def relu_path(tmp_path) -> Path:
    path = tmp_path / "relu.onnx"
    onnx.save(_relu_model(), path)
    return path


def _one_line_error(capsys, rc: int) -> str:
    captured = capsys.readouterr()
    assert rc == 1, captured
    assert "Traceback" not in captured.err
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), captured.err
    assert len([ln for ln in lines if ln.startswith("error")]) == 1
    return " ".join(lines)


# ---------------------------------------------------------------- the table: OS errors


@pytest.mark.parametrize("code, words", [
    (errno.ENAMETOOLONG, "file name too long"), (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only file system"), (errno.ENOSPC, "no space left"),
    (errno.ENOENT, "no such file"), (errno.ELOOP, "symbolic links"), (errno.EISDIR, "is a directory"),
])
def test_os_errors_name_the_file(code, words):
    err = translate(OSError(code, os.strerror(code), "/some/out.onnx"))
    assert isinstance(err, ModelFileError)
    assert err.message.startswith("/some/out.onnx: ") and words in err.message
    assert err.hint


def test_os_error_without_a_file_names_the_subject():
    err = translate(OSError(errno.ENOSPC, "No space left on device"), subject="m.onnx")
    assert err.message == "m.onnx: no space left on the device"


def test_bug_in_our_code_is_not_translated():
    assert translate(KeyError("x")) is None
    assert translate(AttributeError("x")) is None
    try:
        raise ValueError("our own bug")  # raised in onnxdeploy/tests code, not by a library
    except ValueError as err:
        assert translate(err) is None


def test_library_value_error_names_file_and_tensor():
    from onnx import numpy_helper

    tensor = numpy_helper.from_array(np.ones((2, 2), np.float32), "weight_7")
    tensor.raw_data = b"abc"  # 3 bytes for 4 floats
    try:
        numpy_helper.to_array(tensor)
    except ValueError as exc:
        err = translate(exc, subject="m.onnx")
    assert isinstance(err, InvalidModelError)
    assert err.message.startswith("m.onnx: tensor 'weight_7': invalid model:"), err.message
    assert "\n" not in err.message


def test_library_not_implemented_error():
    import onnx_ir as ir

    try:
        ir.from_onnx_text("not onnx text at all {")
    except Exception as exc:  # noqa: BLE001 - whatever onnx-ir raises, it is translated, not a bug of ours
        err = translate(exc, subject="t.onnx")
        assert err is not None and err.message.startswith("t.onnx: ")
    try:
        raise NotImplementedError("sparse tensors")
    except NotImplementedError as exc:
        assert translate(exc) is None  # ours: still a bug
    exc = _raise_in("onnx_ir._core", NotImplementedError("sparse tensors are not supported"))
    err = translate(exc, subject="s.onnx")
    assert err.message.startswith("s.onnx: unsupported: sparse tensors are not supported (onnx-ir")


def _raise_in(module: str, exc: BaseException) -> BaseException:
    """``exc`` raised from a frame whose module is ``module`` (as if a library raised it)."""
    namespace = {"__name__": module, "exc": exc}
    try:
        exec("raise exc", namespace)
    except BaseException as caught:  # noqa: BLE001
        return caught
    raise AssertionError


def test_protobuf_decode_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff\xff\x0f\x0fnot a model")
    from google.protobuf.message import DecodeError

    err = translate(DecodeError("Error parsing message"), subject=str(bad))
    assert isinstance(err, ModelFileError) and err.message.startswith(f"{bad}: not a valid ONNX protobuf file")
    text = _one_line_error(capsys, main(["inspect", str(bad)]))
    assert str(bad) in text


def test_onnxruntime_error_is_one_line():
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidGraph

    for cls in (Fail, InvalidGraph):
        err = translate(cls("[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:bad\nmore"),
                        subject="m.onnx")
        assert err.message == f"m.onnx: onnxruntime failed ({cls.__name__}): Load model from m.onnx failed:bad"


def test_openvino_runtime_error():
    exc = _raise_in("openvino._ov_api", RuntimeError(
        "Exception from src/inference/src/cpp/core.cpp:99:\nException from src/frontends/onnx/x.cpp:12:\n"
        "Check 'false' failed at src/frontends/onnx/x.cpp:12:\nUnsupported ONNX node Foo\n"))
    err = translate(exc, subject="m.onnx")
    assert err.message == "m.onnx: OpenVINO failed: Unsupported ONNX node Foo"
    assert translate(RuntimeError("ours")) is None


def test_memory_and_recursion_errors():
    assert "out of memory" in translate(MemoryError(), subject="m.onnx").message
    assert "nested too deeply" in translate(RecursionError(), subject="m.onnx").message


def test_cli_symlink_loop_is_one_line(tmp_path, capsys):
    loop = tmp_path / "loop.onnx"
    os.symlink(loop, loop)
    text = _one_line_error(capsys, main(["inspect", str(loop)]))
    assert "loop.onnx" in text


def test_cli_output_in_read_only_folder_is_one_line(relu_path, tmp_path, capsys):
    if os.geteuid() == 0:
        target = "/proc/onnxdeploy-test/out.onnx"  # root ignores permissions; /proc refuses everyone
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "out.onnx")
    rc = main(["optimize", str(relu_path), "-o", target, "--no-verify"])
    text = _one_line_error(capsys, rc)
    assert str(Path(target).parent) in text  # the folder that cannot be written


def test_cli_too_long_name_is_one_line(relu_path, tmp_path, capsys):
    rc = main(["optimize", str(relu_path), "-o", str(tmp_path / ("x" * 300 + ".onnx")), "--no-verify"])
    text = _one_line_error(capsys, rc)
    assert "too long" in text


def test_cli_debug_keeps_the_traceback(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff\xff\x0f\x0fnot a model")
    env = dict(os.environ, COLUMNS="200")
    plain = subprocess.run([str(ONNXDEPLOY), "inspect", str(bad)], capture_output=True, text=True, env=env)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and "error:" in plain.stderr
    debug = subprocess.run([str(ONNXDEPLOY), "--debug", "inspect", str(bad)], capture_output=True, text=True,
                           env=env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_cli_bug_keeps_its_traceback(monkeypatch, relu_path):
    import onnxdeploy._inspect as inspect_mod

    def broken(*args, **kwargs):
        raise KeyError("a bug of ours")

    import onnxdeploy

    monkeypatch.setattr(inspect_mod, "inspect", broken)
    monkeypatch.setattr(onnxdeploy, "inspect", broken)  # the CLI calls the public API
    with pytest.raises(KeyError):
        main(["inspect", str(relu_path), "--json"])


# ---------------------------------------------------------------- printing is literal


def test_markup_in_node_names_and_paths_prints_literally(tmp_path, capsys):
    model = _relu_model(node_name="[/red]", input_name="[bold]x")
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert main(["inspect", str(path), "--nodes"]) == 0
    out = capsys.readouterr().out
    assert "[/red]" in out and "[bold]x" in out


def test_markup_in_output_path(relu_path, tmp_path, capsys):
    out_dir = tmp_path / "out" / "["
    out_dir.mkdir(parents=True)
    target = out_dir / "x].onnx"  # out/[/x].onnx
    assert main(["optimize", str(relu_path), "-o", str(target), "--no-verify"]) == 0
    assert target.is_file()
    assert "[/x].onnx" in capsys.readouterr().err


def test_output_helpers_never_parse_markup(capsys):
    from onnxdeploy.cli import output

    output.info("wrote out/[/x].onnx")
    output.warn("node [/red] [bold]")
    output.show(output.table("[/title]", ["[/col]"], [["[/red]"], [b"\xff\xfe"], [output.styled("ok", "green")]],
                             caption="[/cap]"))
    output.show("[/plain]")
    captured = capsys.readouterr()
    assert "wrote out/[/x].onnx" in captured.err and "node [/red] [bold]" in captured.err
    for text in ("[/title]", "[/col]", "[/red]", "\\xff\\xfe", "ok", "[/cap]", "[/plain]"):
        assert text in captured.out


def test_invalid_utf8_names_are_one_line(tmp_path, capsys):
    data = _relu_model(node_name="n").SerializeToString()
    assert data.count(b"\x1a\x01n") == 1
    path = tmp_path / "u8.onnx"
    path.write_bytes(data.replace(b"\x1a\x01n", b"\x1a\x01\xff"))  # node name: one invalid UTF-8 byte
    text = _one_line_error(capsys, main(["inspect", str(path), "--nodes"]))
    assert "the node name '\\xff' is not valid UTF-8" in text


# ---------------------------------------------------------------- bounded inputs


def test_dim_with_unicode_digits_is_refused(relu_path, capsys):
    text = _one_line_error(capsys, main(["run", str(relu_path), "--dim", "batch=²"]))
    assert "--dim batch=²" in text and "non-negative integer" in text


def test_synthesized_input_size_limit(tmp_path):
    from onnxdeploy._run import synthesize_inputs

    model = _relu_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(UserInputError, match=r"input 'x' of shape 1000000000000x4 .*GiB") as info:
        synthesize_inputs(model, dims={"batch": 10**12})
    assert "--shape" in info.value.hint and "--dim" in info.value.hint
    with pytest.raises(UserInputError, match="together"):
        two = _relu_model()
        two.graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, [2**27, 4]))  # 2 GiB each
        two.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]))
        two.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2**27
        synthesize_inputs(two)
    assert synthesize_inputs(model, dims={"batch": 2})["x"].shape == (2, 4)


def test_cli_huge_dim_is_one_line(tmp_path, capsys):
    model = _relu_model()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    text = _one_line_error(capsys, main(["run", str(path), "--dim", "batch=1000000000000"]))
    assert "GiB" in text and "--dim" in text


@pytest.mark.parametrize("content", [b"PK\x03\x04garbage", b"", b"\x93NUMPY"])
def test_corrupt_npz_names_the_file(tmp_path, relu_path, capsys, content):
    bad = tmp_path / "in.npz"
    bad.write_bytes(content)
    text = _one_line_error(capsys, main(["run", str(relu_path), "--inputs", str(bad)]))
    assert "in.npz" in text and "not a valid .npz" in text


def test_corrupt_pb_names_the_file(tmp_path, relu_path, capsys):
    from onnx import numpy_helper

    bad = tmp_path / "x.pb"
    bad.write_bytes(b"\xff\xff\xff\xff\x0f\x0f")
    text = _one_line_error(capsys, main(["run", str(relu_path), "--input", f"x={bad}"]))
    assert "x.pb" in text
    external = numpy_helper.from_array(np.ones((1, 4), np.float32), "x")
    external.data_location = TensorProto.EXTERNAL
    bad.write_bytes(external.SerializeToString())
    text = _one_line_error(capsys, main(["run", str(relu_path), "--input", f"x={bad}"]))
    assert "x.pb" in text and "external" in text


def test_run_string_outputs_saved_readable(tmp_path, capsys):
    node = helper.make_node("Identity", ["s"], ["t"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
                              [helper.make_tensor_value_info("t", TensorProto.STRING, [2])])
    path = tmp_path / "s.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "o.npz"
    assert main(["run", str(path), "-o", str(out)]) == 0
    from onnxdeploy._run import read_npz

    assert read_npz(out)["t"].tolist() == ["a", "a"]  # no pickled object array
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.npz", "s.onnx"]  # no temporary file left


# ---------------------------------------------------------------- recipes


BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join(['*' + a] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")) + "edits: [*i]\n"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path, relu_path, capsys):
    from onnxdeploy._recipes import load_recipe

    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(BOMB)
    start = time.perf_counter()
    with pytest.raises(UserInputError, match="alias bomb"):
        load_recipe(recipe)
    assert time.perf_counter() - start < 2
    text = _one_line_error(capsys, main(["edit", str(relu_path), "--recipe", str(recipe), "-o",
                                         str(tmp_path / "o.onnx")]))
    assert "bomb.yaml" in text and len(text) < 600
    assert not (tmp_path / "o.onnx").exists()


def test_yaml_recursive_alias_and_size(tmp_path):
    from onnxdeploy._recipes import MAX_RECIPE_BYTES, load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("a: &a [1, *a]\n")
    with pytest.raises(UserInputError, match="refers to itself"):
        load_recipe(recipe)
    recipe.write_text("# " + "x" * MAX_RECIPE_BYTES + "\n")
    with pytest.raises(UserInputError, match="larger than"):
        load_recipe(recipe)
    recipe.write_text("edits:\n  - cleanup: {}\n  - toposort: {}\n")
    assert load_recipe(recipe) == [{"cleanup": {}}, {"toposort": {}}]


def test_recipe_error_repr_is_bounded(tmp_path):
    from onnxdeploy._recipes import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("edits:\n  - [" + ", ".join(["x" * 50] * 500) + "]\n")
    with pytest.raises(UserInputError) as info:
        load_recipe(recipe)
    assert len(str(info.value)) < 500


# ---------------------------------------------------------------- children die with the parent


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in state  # a zombie waiting for init is dead


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


PARENT = textwrap.dedent("""
    import sys
    from onnxdeploy._proc import run_child
    pid_file = sys.argv[1]
    child = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(120)"
    run_child([sys.executable, "-c", child, pid_file], timeout=120)
""")


def _start_parent(tmp_path, script: str = PARENT) -> tuple[subprocess.Popen, int]:
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", script, str(pid_file)])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, "the child did not start"
        assert parent.poll() is None, "the parent died"
        time.sleep(0.05)
    return parent, int(pid_file.read_text())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_child_dies_when_parent_is_sigkilled(tmp_path):
    parent, child = _start_parent(tmp_path)
    assert not _gone(child)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _wait_gone(child), f"child {child} outlived its SIGKILLed parent"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_child_dies_when_parent_gets_a_signal(tmp_path, signum):
    parent, child = _start_parent(tmp_path)
    parent.send_signal(signum)
    parent.wait(timeout=10)
    assert _wait_gone(child)


def test_timeout_kills_the_whole_group(tmp_path):
    from onnxdeploy._proc import ChildTimeout, run_child

    pid_file = tmp_path / "grandchild.pid"
    script = ("import subprocess, sys, time; g = subprocess.Popen([sys.executable, '-c', 'import time; "
              "time.sleep(120)']); open(sys.argv[1], 'w').write(str(g.pid)); time.sleep(120)")
    start = time.perf_counter()
    with pytest.raises(ChildTimeout, match="did not finish within 2 s"):
        run_child([sys.executable, "-c", script, str(pid_file)], timeout=2, what="the test child")
    assert time.perf_counter() - start < 10
    assert _wait_gone(int(pid_file.read_text()))


def test_run_child_returns_output():
    from onnxdeploy._proc import run_child

    done = run_child([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
                     timeout=30)
    assert (done.returncode, done.stdout.strip(), done.stderr.strip()) == (3, "out", "err")


def test_openvino_check_runs_through_run_child(monkeypatch, tmp_path):
    import onnxdeploy._proc as proc
    from onnxdeploy.targets.openvino import OpenVINOTarget

    seen = {}

    def fake(argv, **kwargs):
        seen.update(argv=argv, **kwargs)
        return subprocess.CompletedProcess(argv, 0, '{"missing": {}, "refused": [], "warning": null}', "")

    monkeypatch.setattr(proc, "run_child", fake)
    onnx.save(_relu_model(), tmp_path / "m.onnx")
    assert OpenVINOTarget().query(tmp_path / "m.onnx") == ({}, [])
    assert seen["argv"][1:3] == ["-m", "onnxdeploy.targets.openvino"] and seen["timeout"] > 0


def test_no_direct_subprocess_in_src():
    src = Path(errors.__file__).parent
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if p.name != "_proc.py" and ("subprocess.run(" in p.read_text() or "Popen(" in p.read_text())]
    assert offenders == []


def test_sparse_constant_is_one_line_and_writes_nothing(tmp_path, capsys):
    values = numpy_helper_from(np.array([1.0, 2.0], np.float32), "v")
    indices = numpy_helper_from(np.array([0, 3], np.int64), "i")
    constant = helper.make_node("Constant", [], ["s"], sparse_value=helper.make_sparse_tensor(values, indices, [4]))
    graph = helper.make_graph([constant, helper.make_node("Add", ["x", "s"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])])
    path = tmp_path / "sparse.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    out = tmp_path / "o.onnx"
    text = _one_line_error(capsys, main(["optimize", str(path), "-o", str(out)]))
    assert "sparse.onnx: unsupported: Sparse tensors are not supported" in text and "(onnx-ir" in text
    assert not out.exists()


def test_invalid_utf8_convert_is_one_line_and_writes_nothing(tmp_path, capsys):
    data = _relu_model(node_name="n").SerializeToString()
    path = tmp_path / "u8.onnx"
    path.write_bytes(data.replace(b"\x1a\x01n", b"\x1a\x01\xff"))
    out = tmp_path / "c.onnx"
    text = _one_line_error(capsys, main(["convert", str(path), "--target", "onnxruntime", "-o", str(out)]))
    assert "u8.onnx" in text and "not valid UTF-8" in text
    assert not out.exists()


def numpy_helper_from(array, name):
    from onnx import numpy_helper

    return numpy_helper.from_array(array, name)
