"""issue 13, item 7: the model file's rename is the only commit of a model and its data.

`optimize` and `edit` (the real CLI, in a subprocess) are SIGKILLed at every write stage (io pauses there when
ONNXDEPLOY_TEST_PAUSE_AT names the stage); then the destination holds the previous result or the new one, whole,
the input is unchanged, a rerun succeeds and leaves no temporary file behind."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from onnxdeploy import _io as io

CLI = str(Path(sys.executable).with_name("onnxdeploy"))
STAGES = ["tmp-written", "data-renamed", "committed"]


def _model(folder: Path, n: int) -> tuple[Path, np.ndarray]:
    """A MatMul -> Relu -> Identity model whose (n, n) float32 weight is stored as external data."""
    folder.mkdir(parents=True, exist_ok=True)
    w = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["t"], name="mm"), helper.make_node("Relu", ["t"], ["r"], name="relu"),
         helper.make_node("Identity", ["r"], ["y"], name="id")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, n])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, n])], [numpy_helper.from_array(w, "w")])
    path = folder / "model.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path, save_as_external_data=True,
              location="model.onnx.data")
    return path, w


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _command(verb: str, src: Path, out: Path) -> list[str]:
    extra = ["--delete-node", "id"] if verb == "edit" else []
    return [CLI, verb, str(src), "-o", str(out), "--no-verify", *extra]


def _env(**extra) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _kill_at(cmd: list[str], stage: str, timeout: float = 300) -> bool:
    """Run ``cmd`` until io pauses at ``stage``, then SIGKILL it. False when it finished without reaching it."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env=_env(ONNXDEPLOY_TEST_PAUSE_AT=stage), start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        for line in proc.stderr:
            if line.decode(errors="replace").strip() == f"onnxdeploy-paused-at: {stage}":
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            assert time.monotonic() < deadline, f"{cmd} did not reach {stage}"
        return False
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()


def _assert_whole(out: Path, w: np.ndarray) -> None:
    """The destination loads with its data (never a model with another write's data file) and computes x @ w."""
    proto = io.load_proto(out, load_weights=True)
    io.forget_reads()
    [weight] = [t for t in proto.graph.initializer if t.name == "w"]
    np.testing.assert_array_equal(numpy_helper.to_array(weight), w)


def _assert_clean(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.startswith(".onnxdeploy-tmp-")], names
    refs = {p.name for p in io.data_files(folder / "model.onnx")}
    assert set(names) == {"model.onnx", *refs}, names  # no orphan data file


def _kill_and_recover(tmp_path: Path, verb: str, stage: str, n: int) -> None:
    src, w = _model(tmp_path / "src", n)
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    before = _digest(src.parent)
    # a previous result at the destination, written by another (finished) process
    subprocess.run([sys.executable, "-c", "import sys; from onnxdeploy import _io as io; "
                    "io.save(io.load(sys.argv[1]), sys.argv[2], external_data=True)", str(src), str(out)],
                   check=True, env=_env())
    assert _kill_at(_command(verb, src, out), stage), f"{verb} never reached {stage}"
    _assert_whole(out, w)
    assert _digest(src.parent) == before
    done = subprocess.run(_command(verb, src, out), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    _assert_whole(out, w)
    _assert_clean(out.parent)
    assert _digest(src.parent) == before


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("verb", ["optimize", "edit"])
def test_sigkill_at_every_stage_leaves_a_whole_result(tmp_path, verb, stage):
    _kill_and_recover(tmp_path, verb, stage, 512)  # 1 MB of weights


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("verb", ["optimize", "edit"])
def test_sigkill_300mb(tmp_path, verb, stage):
    _kill_and_recover(tmp_path, verb, stage, 8960)  # 8960^2 float32 = 321 MB of external data


def test_two_writers_to_one_path_end_whole(tmp_path):
    src, w = _model(tmp_path / "src", 512)
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    procs = [subprocess.Popen(_command(verb, src, out), env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for verb in ("optimize", "edit")]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    _assert_whole(out, w)
    _assert_clean(out.parent)
