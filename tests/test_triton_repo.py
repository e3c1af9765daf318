"""`convert --target triton` / `deploy --target triton`: a Triton model repository whose config.pbtxt is filled from
the model and checked against Triton's schema, a KServe manifest beside it, the Python-backend variant run as Triton
runs it, and (with .venv-triton from scripts/install-triton.sh) served by PyTriton's real tritonserver."""

from __future__ import annotations

import json
import os
import shutil
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the serve extra (tritonclient) is not installed")

from onnxdeploy.errors import UserInputError  # noqa: E402
from serving_models import reference, tiny_model  # noqa: E402
from onnxdeploy.serving import (TritonTarget, triton_config, validate_triton_config,  # noqa: E402
                                write_triton_repository)

REPO_ROOT = Path(__file__).resolve().parents[1]
TRITON_VENV = Path(os.environ.get("ONNXDEPLOY_TRITON_VENV", REPO_ROOT / ".venv-triton"))


@pytest.fixture
def model_path(tmp_path) -> Path:
    return tiny_model(tmp_path / "tiny.onnx")


# ---------------------------------------------------------------- config.pbtxt


def test_config_of_a_batchable_model(model_path):
    notes: list[str] = []
    config = validate_triton_config(triton_config(model_path, name="tiny", max_batch=8, latency_ms=4.0, notes=notes))
    assert (config.name, config.backend, config.max_batch_size) == ("tiny", "onnxruntime", 8)
    assert [(t.name, list(t.dims)) for t in config.input] == [("x", [4])]  # the batch dim is Triton's
    assert [(t.name, list(t.dims)) for t in config.output] == [("y", [3])]
    assert config.input[0].data_type == config.input[0].data_type.__class__(11)  # TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [4, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 1000  # a quarter of the 4 ms measured
    assert config.instance_group[0].kind == 2 and config.instance_group[0].count >= 1  # KIND_CPU
    assert any("queue delay 1000 us (a quarter of the measured 4.00 ms)" in n for n in notes)


def test_config_of_a_fixed_batch_model_keeps_every_dim(tmp_path):
    static = tiny_model(tmp_path / "static.onnx", batch=2)
    notes: list[str] = []
    config = validate_triton_config(triton_config(static, name="static", notes=notes))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [2, 4]
    assert "max_batch_size 0: not every input and output has a dynamic first dim" in notes[0]


def test_a_fast_model_gets_one_instance(model_path):
    config = validate_triton_config(triton_config(model_path, name="m", latency_ms=0.1))
    assert config.instance_group[0].count == 1


GOOD = 'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 4\ninput { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }\n' \
       'output { name: "y" data_type: TYPE_FP32 dims: [ 3 ] }\n'


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("TYPE_FP32", "TYPE_FLOAT32", 1), 'has no value named TYPE_FLOAT32'),
    (GOOD + "instance_group [ { count: 1, kind: KIND_TPU } ]\n", 'has no value named KIND_TPU'),
    (GOOD + "max_batch_sizes: 3\n", 'has no field named "max_batch_sizes"'),
    (GOOD.replace("max_batch_size: 4", "max_batch_size: 0") + "dynamic_batching { }\n",
     "dynamic_batching needs max_batch_size > 0"),
    (GOOD.replace("dims: [ 4 ]", "dims: [ 0 ]"), "x: dims [0] (each > 0, or -1 for dynamic)"),
    (GOOD.replace('backend: "onnxruntime"\n', ""), "neither a backend nor a platform"),
    (GOOD.replace('name: "y"', 'name: "x"'), "a tensor name appears twice"),
])
def test_validation_rejects_what_triton_would(text, message):
    with pytest.raises(UserInputError, match="config.pbtxt: .*" + message.replace("[", r"\[").replace("(", r"\(")
                       .replace(")", r"\)").replace("]", r"\]")):
        validate_triton_config(text)
    validate_triton_config(GOOD)


def test_unknown_triton_backend_names_the_closest(model_path, tmp_path):
    with pytest.raises(UserInputError, match="unknown Triton backend 'pyton'") as err:
        write_triton_repository(model_path, tmp_path / "repo", backend="pyton")
    assert "python" in err.value.hint


# ---------------------------------------------------------------- repository, manifest, convert, deploy


def test_convert_writes_a_verified_repository_and_a_manifest(model_path, tmp_path, capsys):
    import yaml

    from onnxdeploy.cli.main import main

    repo = tmp_path / "model_repository"
    rc = main(["convert", str(model_path), "--target", "triton", "-o", str(repo)])
    out = capsys.readouterr().out
    assert rc in (0, None), out
    assert "triton vs onnxruntime: passed" in out
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file()) == [
        "inferenceservice.yaml", "tiny/1/model.onnx", "tiny/config.pbtxt"]
    manifest = yaml.safe_load((repo / "inferenceservice.yaml").read_text())
    assert manifest["kind"] == "InferenceService" and manifest["metadata"]["name"] == "tiny"
    model = manifest["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["storageUri"].startswith("s3://YOUR-BUCKET")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".onnxdeploy-tmp")] == []


def test_the_served_interface_is_read_back_from_config_pbtxt(model_path, tmp_path):
    """The verifier's interface check sees what Triton will serve: a hand-edited dtype is an interface change."""
    from onnxdeploy import interface_changes

    write_triton_repository(model_path, tmp_path / "repo", measure=False)
    target = TritonTarget()
    assert interface_changes(str(model_path), target.interface(tmp_path / "repo", str(model_path))) == []
    config = tmp_path / "repo" / "tiny" / "config.pbtxt"
    config.write_text(config.read_text().replace("TYPE_FP32", "TYPE_FP16", 1))
    changes = interface_changes(str(model_path), target.interface(tmp_path / "repo", str(model_path)))
    assert len(changes) == 1 and "x" in changes[0] and "float16" in changes[0]


def test_convert_refuses_an_existing_folder_and_leaves_it_alone(model_path, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep.txt").write_text("mine")
    with pytest.raises(UserInputError):
        write_triton_repository(model_path, repo)
    assert [p.name for p in repo.iterdir()] == ["keep.txt"]


def test_triton_backend_applies_to_the_triton_target_only(model_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    rc = main(["convert", str(model_path), "--target", "openvino", "-o", str(tmp_path / "m.xml"),
               "--triton-backend", "python"])
    assert rc == 1 and "--triton-backend applies to --target triton" in capsys.readouterr().err


def test_python_backend_model_batches_requests_as_triton_hands_them(model_path, tmp_path):
    from onnxdeploy.targets.triton import run_python_model

    repo = write_triton_repository(model_path, tmp_path / "repo", backend="python", measure=False)
    assert (tmp_path / "repo" / "tiny" / "1" / "model.py").exists() and repo.backend == "python"
    rng = np.random.default_rng(4)
    xs = [rng.standard_normal((n, 4)).astype(np.float32) for n in (1, 3, 2)]
    outs = run_python_model(tmp_path / "repo" / "tiny", [{"x": x} for x in xs])
    for x, out in zip(xs, outs):
        np.testing.assert_allclose(out["y"], reference(model_path, x), rtol=1e-5, atol=1e-6)


def test_deploy_to_triton_writes_the_repository(model_path, tmp_path):
    from onnxdeploy import deploy

    report = deploy(str(model_path), target=TritonTarget("python"), output_dir=tmp_path / "out", benchmark=False)
    assert report.passed
    artefact = Path(report.final_artifact)
    assert (artefact / "out" / "config.pbtxt").exists() and (artefact / "out" / "1" / "model.py").exists()
    assert (artefact / "inferenceservice.yaml").exists()


# ---------------------------------------------------------------- the real tritonserver (PyTriton's binary)


def _tritonserver_dist() -> Path | None:
    found = sorted(TRITON_VENV.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    return found[0] if found and (found[0] / "bin" / "tritonserver").exists() else None


@pytest.fixture
def tritonserver(tmp_path, model_path):
    """PyTriton's tritonserver (Python backend only) serving the python-backend repository on free loopback ports."""
    dist = _tritonserver_dist()
    if dist is None:
        pytest.skip(f"no tritonserver: {TRITON_VENV} is missing (run scripts/install-triton.sh)")
    from onnxdeploy._proc import start_child, stop_child
    from onnxdeploy.serving import free_port

    python = TRITON_VENV / "bin" / "python"
    version = ".".join(dist.parts[-4].removeprefix("python").split(".")[:2])
    server_dir = tmp_path / "tritonserver"
    shutil.copytree(dist / "bin", server_dir / "bin")
    shutil.copytree(dist / "backends", server_dir / "backends")
    shutil.copy(dist / "python_backend_stubs" / version / "triton_python_backend_stub",
                server_dir / "backends" / "python")
    repo = tmp_path / "repo"
    write_triton_repository(model_path, repo, backend="python", measure=False)
    http, grpc = free_port(), free_port()
    libs = [str(dist.parent.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]),
           "PATH": f"{python.parent}:{os.environ['PATH']}"}
    log = open(tmp_path / "tritonserver.log", "wb")
    proc = start_child([str(server_dir / "bin" / "tritonserver"), "--model-repository", str(repo),
                        "--backend-directory", str(server_dir / "backends"), "--http-address", "127.0.0.1",
                        "--grpc-address", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
                        "--allow-metrics", "false",
                        f"--backend-config=python,shm-region-prefix-name=onnxdeploy{os.getpid()}{http}"],
                       env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "tritonserver.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("tritonserver was not ready in 90 s: " + (tmp_path / "tritonserver.log").read_text()[-2000:])
        yield {"http": f"127.0.0.1:{http}", "grpc": f"127.0.0.1:{grpc}", "pid": proc.pid}
    finally:
        stop_child(proc, grace=10)
        log.close()
    assert proc.poll() is not None


def test_tritonserver_serves_the_python_backend_repository(tritonserver, model_path):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    expected = reference(model_path, x)
    client = httpclient.InferenceServerClient(tritonserver["http"])
    config = client.get_model_config("tiny")
    assert config["max_batch_size"] == 8 and config["backend"] == "python"
    for binary in (True, False):
        tensor = httpclient.InferInput("x", [3, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("tiny", [tensor], outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("y"), expected, rtol=1e-5, atol=1e-6)
    gclient = grpcclient.InferenceServerClient(tritonserver["grpc"])
    tensor = grpcclient.InferInput("x", [3, 4], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_allclose(gclient.infer("tiny", [tensor]).as_numpy("y"), expected, rtol=1e-5, atol=1e-6)


def test_loadtest_measures_tritonserver(tritonserver):
    from onnxdeploy.serving import loadtest

    report = loadtest(tritonserver["http"], "tiny", concurrency=4, requests=80)
    assert report.errors == 0 and report.requests == 80 and report.p50_ms > 0
    stats = json.loads(urllib.request.urlopen(f"http://{tritonserver['http']}/v2/models/tiny/stats").read())
    assert stats["model_stats"][0]["inference_count"] >= 80


def test_convert_to_an_existing_folder_says_so_in_one_line(model_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    (tmp_path / "repo").mkdir()
    rc = main(["convert", str(model_path), "--target", "triton", "-o", str(tmp_path / "repo")])
    err = capsys.readouterr().err
    assert rc == 1 and "repo already exists; triton writes a new folder" in err and "Traceback" not in err
    assert list((tmp_path / "repo").iterdir()) == []
