"""The deploy pipeline end to end, its failures step by step, and its report in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from onnxdeploy.deploy import DeployStepFailed, deploy

CHROMIUM = "/usr/bin/chromium"


def test_deploy_builtin_example_to_openvino(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    report = deploy(None, target="openvino", output_dir=out, bench_seconds=0.1)
    assert report.passed
    status = {s.name: s.status for s in report.steps}
    assert status == {"export": "ok", "check": "ok", "optimize": "ok", "legalize": "ok", "quantize": "skipped",
                      "convert": "ok", "benchmark": "ok"}
    assert all(s.parity.passed for s in report.steps if s.parity is not None)
    assert (out / "05-model-openvino.xml").exists() and (out / "05-model-openvino.bin").exists()
    data = json.loads((out / "deploy.json").read_text())
    assert data["passed"] and {r["engine"] for r in data["latency"]} == {"onnxruntime", "openvino"}
    html = (out / "report.html").read_text()
    for text in ("Steps and parity", "Latency", "<svg", "Operators before and after", "Graph of the final"):
        assert text in html


def test_deploy_onnx_to_ort_mobile_with_dynamic_quantization(conv_bn_silu_path, tmp_path):
    report = deploy(conv_bn_silu_path, target="ort-mobile", output_dir=tmp_path / "o", quantize="dynamic",
                    dims={"height": 16, "width": 16}, bench_seconds=0.05)
    steps = {s.name: s for s in report.steps}
    assert steps["export"].status == "skipped" and "source is ONNX" in steps["export"].message
    assert steps["quantize"].status in ("ok", "unavailable")
    assert steps["convert"].parity.passed and Path(report.final_artifact).suffix == ".ort"


def test_deploy_to_ascend_prints_the_atc_command(conv_bn_silu_path, tmp_path):
    report = deploy(conv_bn_silu_path, target="ascend", output_dir=tmp_path / "o",
                    dims={"batch": 1, "height": 32, "width": 32}, benchmark=False)
    convert = next(s for s in report.steps if s.name == "convert")
    assert convert.status == "skipped" and "atc --model=" in convert.message
    assert "--input_shape=\"input:1,3,32,32\"" in convert.message
    assert "atc --model=" in (tmp_path / "o" / "report.html").read_text()


def _boom(*args, **kwargs):
    raise RuntimeError("boom")


@pytest.mark.parametrize("step,patch", [
    ("check", "onnxdeploy.check.check"),
    ("optimize", "onnxdeploy.optimize.optimize"),
    ("legalize", "onnxdeploy.legalize.legalize"),
    ("convert", "onnxdeploy.targets.convert"),
    ("benchmark", "onnxdeploy.deploy.time_model"),
])
def test_a_failing_step_stops_and_keeps_earlier_artefacts(conv_bn_silu_path, tmp_path, monkeypatch, step, patch):
    module, _, name = patch.rpartition(".")
    import importlib

    monkeypatch.setattr(importlib.import_module(module), name, _boom)
    out = tmp_path / "o"
    with pytest.raises(DeployStepFailed, match=f"deploy stopped at step '{step}': RuntimeError: boom") as err:
        deploy(conv_bn_silu_path, target="openvino", output_dir=out, dims={"height": 8, "width": 8},
               bench_seconds=0.05)
    assert f"{out}/" in err.value.hint
    assert (out / "01-model.onnx").exists() and (out / "report.html").exists()
    data = json.loads((out / "deploy.json").read_text())
    assert data["failed_step"] == step and data["steps"][-1]["status"] == "failed"
    later = {"check": "02-optimized.onnx", "optimize": "02-optimized.onnx", "legalize": "03-legalized.onnx",
             "convert": "05-model-openvino.xml"}
    if step in later:
        assert not (out / later[step]).exists()
    if step == "benchmark":
        assert (out / "05-model-openvino.xml").exists()


def test_export_failure_keeps_the_report(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    import onnxdeploy.export

    monkeypatch.setattr(onnxdeploy.export, "export", _boom)
    with pytest.raises(DeployStepFailed, match="step 'export'"):
        deploy(None, output_dir=tmp_path / "o")
    assert json.loads((tmp_path / "o" / "deploy.json").read_text())["failed_step"] == "export"


def test_legalize_step_fails_clearly_on_an_op_the_target_lacks(tmp_path):
    import onnx
    from onnx import helper

    m = helper.make_model(helper.make_graph([helper.make_node("Det", ["x"], ["y"], name="det0")], "g",
                                            [helper.make_tensor_value_info("x", 1, [3, 3])],
                                            [helper.make_tensor_value_info("y", 1, [])]),
                          opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(m, tmp_path / "det.onnx")
    with pytest.raises(DeployStepFailed, match=r"step 'legalize': tensorrt cannot take the model.*Det \(det0\)"):
        deploy(tmp_path / "det.onnx", target="tensorrt", output_dir=tmp_path / "o", benchmark=False)
    assert (tmp_path / "o" / "02-optimized.onnx").exists()


def test_unknown_quantize_mode_is_refused(tmp_path, conv_bn_silu_path):
    with pytest.raises(ValueError, match="--quantize must be static or dynamic"):
        deploy(conv_bn_silu_path, output_dir=tmp_path / "o", quantize="int4")


def test_cli_deploy_json(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    rc = main(["deploy", str(conv_bn_silu_path), "--target", "onnxruntime", "-o", str(tmp_path / "o"),
               "--dim", "height=8", "--dim", "width=8", "--no-bench", "--json"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["passed"]


def test_report_renders_in_headless_chromium_without_console_errors(conv_bn_silu_path, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); cannot test the report in a browser")
    deploy(conv_bn_silu_path, target="openvino", output_dir=tmp_path / "o", dims={"height": 8, "width": 8},
           bench_seconds=0.05)
    shot = tmp_path / "shot.png"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1280,2000",
                           (tmp_path / "o" / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_dims_reach_the_optimize_step(tmp_path):
    """--dim must reach every step: optimize used to verify at its own sizes (16, 24),
    where a 25x25 Conv cannot run."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((1, 1, 25, 25), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                           helper.make_node("Relu", ["c"], ["y"], name="relu")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    src = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), src)
    report = deploy(src, target="onnxruntime", output_dir=tmp_path / "out", dims={"h": 30, "w": 30},
                    benchmark=False)
    steps = {s.name: s.status for s in report.steps}
    assert steps["optimize"] == "ok" and steps["convert"] == "ok", steps
