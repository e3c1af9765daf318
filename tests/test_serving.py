"""`onnxdeploy serve` and `loadtest`: a real server process on free loopback ports, driven by tritonclient over HTTP
(JSON and binary tensors) and gRPC, compared with onnxruntime; every bad request a one-line 4xx with the server still
up; dynamic batching; the process bound to loopback, stopped by its PID, and dead when its parent dies."""

from __future__ import annotations

import asyncio
import importlib.util
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

# kserve is imported by the server process only: its protobuf messages share the names of tritonclient.grpc's
if importlib.util.find_spec("kserve") is None:
    pytest.skip("the serve extra (kserve) is not installed: pip install 'onnxdeploy[serve]'", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http", reason="the serve extra (tritonclient[http]) is not installed")
grpcclient = pytest.importorskip("tritonclient.grpc", reason="the serve extra (tritonclient[grpc]) is not installed")

from onnxdeploy import serving  # noqa: E402
from onnxdeploy.errors import UserInputError  # noqa: E402
from serving_models import reference, tiny_model  # noqa: E402

ONNXDEPLOY = str(Path(sys.executable).with_name("onnxdeploy"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("serve") / "tiny.onnx")


@pytest.fixture(scope="module")
def server(model_path):
    srv = serving.start_server(model_path, port=0, grpc_port=0, max_batch=4, ready_timeout=60)
    yield srv
    srv.stop()
    assert not srv.alive()


def post(url: str, body: bytes, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, {}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def ready(server) -> bool:
    with urllib.request.urlopen(f"http://{server.url}/v2/health/ready", timeout=5) as response:
        return response.status == 200


# ---------------------------------------------------------------- inference


def test_http_binary_and_json_match_onnxruntime(server, model_path):
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_server_ready() and client.is_model_ready("tiny")
    for binary in (True, False):
        tensor = httpclient.InferInput("x", [3, 4], "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        result = client.infer("tiny", [tensor], outputs=[httpclient.InferRequestedOutput("y", binary_data=binary)])
        np.testing.assert_allclose(result.as_numpy("y"), reference(model_path, x), rtol=1e-5, atol=1e-6)
        assert result.get_response()["id"]


def test_grpc_matches_onnxruntime(server, model_path):
    x = np.random.default_rng(2).standard_normal((2, 4)).astype(np.float32)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    np.testing.assert_allclose(client.infer("tiny", [tensor]).as_numpy("y"), reference(model_path, x), rtol=1e-5,
                               atol=1e-6)


def test_metadata_and_stats(server):
    client = httpclient.InferenceServerClient(server.url)
    meta = client.get_model_metadata("tiny")
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 3]}]
    stats = client.get_inference_statistics("tiny")["model_stats"][0]
    assert stats["name"] == "tiny" and stats["inference_count"] >= 1
    assert stats["latency"]["p50_ms"] > 0


# ---------------------------------------------------------------- bad requests

X_BYTES = np.ones((1, 4), np.float32).tobytes()


def binary_body(entries, blob, header_length=None):
    head = json.dumps({"inputs": entries}).encode()
    n = len(head) if header_length is None else header_length
    return head + blob, {"Inference-Header-Content-Length": str(n), "Content-Type": "application/octet-stream"}


def json_body(entry):
    return json.dumps({"inputs": [entry]}).encode(), {"Content-Type": "application/json"}


BAD = {
    "unknown input": (json_body({"name": "xx", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}),
                      "unknown input 'xx'; did you mean x?"),
    "wrong dtype": (json_body({"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}),
                    "input 'x' is INT64, the model takes FP32"),
    "wrong shape": (json_body({"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}),
                    "input 'x' has shape [1, 2], the model takes [-1, 4]"),
    "data count": (json_body({"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2]}),
                   "shape [1, 4] needs 4 values, data has 2"),
    "bad datatype": (json_body({"name": "x", "shape": [1, 4], "datatype": "FLOAT", "data": [1, 2, 3, 4]}),
                     "datatype 'FLOAT' is not one of"),
    "truncated binary": (binary_body([{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16}}], X_BYTES[:10]),
                         "the body is truncated: 16 bytes declared"),
    "huge binary size": (binary_body([{"name": "x", "shape": [10**8, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": 16 * 10**8}}], X_BYTES),
                         "the body is truncated: 1600000000 bytes declared"),
    "size disagrees with shape": (binary_body([{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                                "parameters": {"binary_data_size": 8}}], X_BYTES[:8]),
                                  "binary_data_size is 8 bytes, shape [1, 4] of FP32 needs 16"),
    "huge json shape": (json_body({"name": "x", "shape": [10**12, 4], "datatype": "FP32", "data": [1]}),
                        "declares 16000000000000 bytes, over the limit"),
    "header length": (binary_body([{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                    "parameters": {"binary_data_size": 16}}], X_BYTES, header_length=10**9),
                      "Inference-Header-Content-Length is 1000000000, the body has"),
    "not json": ((b"{nope", {"Content-Type": "application/json"}), "the request is not valid JSON"),
    "no inputs": ((b'{"id": "1"}', {"Content-Type": "application/json"}), "the request needs an 'inputs' list"),
    "trailing bytes": (binary_body([{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                     "parameters": {"binary_data_size": 16}}], X_BYTES + b"xx"),
                       "2 bytes of the body follow the last input's data"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_gets_a_one_line_400_and_the_server_stays_up(server, case):
    (body, headers), message = BAD[case]
    status, answer = post(f"http://{server.url}/v2/models/tiny/infer", body, headers)
    assert status == 400, answer
    assert message in answer["error"] and "\n" not in answer["error"]
    assert server.alive() and ready(server)


def test_unknown_model_is_404_naming_the_served_one(server):
    status, answer = post(f"http://{server.url}/v2/models/tinyy/infer", b"{}", {"Content-Type": "application/json"})
    assert status == 404 and answer["error"] == "unknown model 'tinyy'; this server has tiny"


def test_a_huge_declared_content_length_is_refused_before_reading(server):
    host, port = server.url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v2/models/tiny/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 5000000000\r\n\r\n{")
        answer = b""
        while b"over the limit" not in answer and len(answer) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 413") and "over the limit" in answer
    assert ready(server)


def test_grpc_bad_request_is_invalid_argument(server):
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("x", [1, 5], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 5), np.float32))
    with pytest.raises(InferenceServerException, match=r"input 'x' has shape \[1, 5\]") as err:
        client.infer("tiny", [tensor])
    assert err.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert server.alive()


# ---------------------------------------------------------------- batching, load test


def test_concurrent_requests_each_get_their_own_rows(server, model_path):
    import concurrent.futures

    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((1 + i % 2, 4)).astype(np.float32) for i in range(16)]

    def one(x):
        client = httpclient.InferenceServerClient(server.url)
        tensor = httpclient.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer("tiny", [tensor]).as_numpy("y")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, xs))
    for x, y in zip(xs, results):
        np.testing.assert_allclose(y, reference(model_path, x), rtol=1e-5, atol=1e-6)


class SlowEngine:
    """An engine whose call takes 50 ms: requests arriving meanwhile must be batched into the next call."""

    batchable = True

    def __init__(self):
        self.calls = []

    def infer(self, feeds):
        self.calls.append(feeds["x"].shape[0])
        time.sleep(0.05)
        return {"y": feeds["x"] * 2}


def test_batcher_stacks_waiting_requests_up_to_max_batch():
    from onnxdeploy.serving._engine import Batcher, Stats

    engine = SlowEngine()
    batcher = Batcher(engine, 4, Stats())

    async def go():
        xs = [np.full((1, 2), i, np.float32) for i in range(7)]
        outs = await asyncio.gather(*(batcher.submit({"x": x}) for x in xs))
        return xs, outs

    xs, outs = asyncio.run(go())
    assert all(np.array_equal(o["y"], x * 2) for x, o in zip(xs, outs))
    assert engine.calls == [4, 3]  # queued together: stacked, at most 4 rows per call


def test_max_batch_needs_a_dynamic_first_dim(tmp_path):
    static = tiny_model(tmp_path / "static.onnx", batch=1)
    with pytest.raises(UserInputError, match="--max-batch needs a model whose inputs and outputs all have a dynamic"):
        serving.start_server(static, port=0, grpc=False, max_batch=4)


def test_loadtest_over_http_and_grpc(server):
    http = serving.loadtest(server.url, "tiny", concurrency=4, requests=60)
    assert (http.requests, http.errors) == (60, 0) and 0 < http.p50_ms <= http.p90_ms <= http.p99_ms
    grpc = serving.loadtest(server.grpc_url, "tiny", protocol="grpc", duration=0.5)
    assert grpc.errors == 0 and grpc.requests > 0 and grpc.seconds >= 0.5


@pytest.mark.parametrize("kwargs, message", [
    ({"url": "10.0.0.1:8000"}, "10.0.0.1 is not a loopback address"),
    ({"requests": 10, "duration": 1.0}, "give --requests or --duration, not both"),
    ({"concurrency": 0}, "--concurrency must be 1-1024"),
    ({"duration": 99999.0}, "--duration must be in"),
    ({"protocol": "udp"}, "--protocol must be http or grpc"),
])
def test_loadtest_refuses_unbounded_or_remote_load(kwargs, message):
    args = {"url": "127.0.0.1:9", "model": "m", **kwargs}
    with pytest.raises(UserInputError, match=message):
        serving.loadtest(args.pop("url"), args.pop("model"), **args)


def test_loadtest_names_the_served_models(server):
    with pytest.raises(UserInputError, match="model 'tinyy' is not served there: unknown model 'tinyy'; this server"):
        serving.loadtest(server.url, "tinyy", requests=1)


# ---------------------------------------------------------------- process: address, PID, parent


def test_binds_loopback_only(server):
    psutil = pytest.importorskip("psutil")
    listening = [c.laddr for c in _connections(psutil.Process(server.pid)) if c.status == "LISTEN"]
    assert {a.port for a in listening} == {server.http_port, server.grpc_port}
    for address in listening:  # gRPC listens on an IPv6 socket: 127.0.0.1 reads ::ffff:127.0.0.1 there
        ip = ipaddress.ip_address(address.ip)
        assert (getattr(ip, "ipv4_mapped", None) or ip) == ipaddress.ip_address("127.0.0.1"), address


def _connections(process):
    return (process.net_connections if hasattr(process, "net_connections") else process.connections)("inet")


def test_the_server_dies_with_its_parent(model_path, tmp_path):
    script = (f"from onnxdeploy import serving; s = serving.start_server({str(model_path)!r}, port=0, grpc=False); "
              "print(s.pid, flush=True); import time; time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.1)
        assert not _running(pid)
    finally:
        parent.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_resolve_model_finds_the_artefact_of_a_folder(tmp_path, model_path):
    deploy_dir = tmp_path / "deploy-out"
    (deploy_dir / "05-model-triton" / "resnet" / "1").mkdir(parents=True)
    tiny_model(deploy_dir / "05-model-triton" / "resnet" / "1" / "model.onnx")
    (deploy_dir / "deploy.json").write_text(json.dumps({"final_artifact": str(deploy_dir / "05-model-triton")}))
    found = serving.resolve_model(deploy_dir)
    assert (found.name, found.backend, found.path.name) == ("resnet", "onnxruntime", "model.onnx")
    with pytest.raises(UserInputError, match="no model to serve in this folder"):
        serving.resolve_model(tmp_path / "deploy-out" / "05-model-triton" / "resnet")
    with pytest.raises(UserInputError, match="cannot serve a .txt file"):
        (tmp_path / "notes.txt").write_text("x")
        serving.resolve_model(tmp_path / "notes.txt")
    with pytest.raises(UserInputError, match="onnxruntime cannot run an OpenVINO IR"):
        (tmp_path / "m.xml").write_text("<net/>")
        serving.resolve_model(tmp_path / "m.xml", backend="onnxruntime")


def test_cli_serve_and_loadtest(model_path, capsys):
    """`onnxdeploy serve` in a subprocess (stopped by its PID), measured by `onnxdeploy loadtest`."""
    from onnxdeploy.cli.main import main

    port = serving.free_port()
    proc = subprocess.Popen([ONNXDEPLOY, "serve", str(model_path), "--port", str(port), "--no-grpc", "--json",
                             "--model-name", "tiny2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(_read_json(proc))
        assert info["http"] == f"http://127.0.0.1:{port}" and info["grpc"] is None
        rc = main(["loadtest", f"127.0.0.1:{port}", "--model", "tiny2", "--requests", "20", "--json"])
        report = json.loads(capsys.readouterr().out)
        assert rc in (0, None) and report["requests"] == 20 and report["errors"] == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    assert not _running(info["pid"])


def _read_json(proc) -> str:
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("}"):
            return "".join(lines)
    raise AssertionError(f"serve printed no JSON: {''.join(lines)} {proc.stderr.read()}")


def test_cli_serve_errors_are_one_line(tmp_path):
    out = subprocess.run([ONNXDEPLOY, "serve", str(tmp_path / "missing.onnx")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "missing.onnx: no such file or folder" in out.stderr
