"""The deploy pipeline end to end, its failures step by step, and its report in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from onnxdeploy._deploy import DeployStepFailed, deploy

CHROMIUM = "/usr/bin/chromium"


def test_deploy_builtin_example_to_openvino(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    report = deploy(None, target="openvino", output_dir=out, bench_seconds=0.1)
    assert report.passed
    status = {s.name: s.status for s in report.steps}
    assert status == {"export": "passed", "check": "passed", "optimize": "passed", "legalize": "passed",
                      "quantize": "skipped", "convert": "passed", "benchmark": "passed"}
    assert all(s.verification.passed for s in report.steps if s.verification is not None)
    # the example's declared dynamic dims survive every step, the OpenVINO artefact included
    for name in ("01-model.onnx", "02-optimized.onnx", "03-legalized.onnx"):
        assert _input_dims(out / name) == ["batch", 3, "height", "width"], name
    import openvino as ov

    assert ov.Core().read_model(str(out / "05-model-openvino.xml")).inputs[0].get_partial_shape().is_dynamic
    # verified at two shapes, benchmarked at the example's size
    assert len(next(s for s in report.steps if s.name == "convert").verification.comparisons) == 2
    assert report.bench_inputs == {"input": [1, 3, 64, 64]}
    assert (out / "05-model-openvino.xml").exists() and (out / "05-model-openvino.bin").exists()
    data = json.loads((out / "deploy.json").read_text())
    assert data["passed"] and {r["engine"] for r in data["latency"]} == {"onnxruntime", "openvino"}
    html = (out / "report.html").read_text()
    for text in ("Steps and verification", "Latency", "<svg", "Operators before and after", "Graph of the final"):
        assert text in html
    assert html.index('class="headline passed"') < html.index("Steps and verification")


def _input_dims(path) -> list:
    from onnxdeploy._run import input_specs

    return list(input_specs(str(path))[0].shape)


def test_deploy_onnx_to_ort_mobile_with_dynamic_quantization(conv_bn_silu_path, tmp_path):
    report = deploy(conv_bn_silu_path, target="ort-mobile", output_dir=tmp_path / "o", quantize="dynamic",
                    dims={"height": 16, "width": 16}, bench_seconds=0.05)
    steps = {s.name: s for s in report.steps}
    assert steps["export"].status == "skipped" and "source is ONNX" in steps["export"].message
    assert steps["quantize"].status in ("passed", "unavailable")
    assert steps["convert"].verification.passed and Path(report.final_artifact).suffix == ".ort"


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
    ("check", "onnxdeploy._check.check"),
    ("optimize", "onnxdeploy._optimize.optimize"),
    ("legalize", "onnxdeploy._legalize.legalize"),
    ("convert", "onnxdeploy.targets.convert"),
    ("benchmark", "onnxdeploy._deploy.time_runner"),
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
    import onnxdeploy._export

    monkeypatch.setattr(onnxdeploy._export, "export", _boom)
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
    with pytest.raises(ValueError, match="--quantize must be static, dynamic, int4 or int8"):
        deploy(conv_bn_silu_path, output_dir=tmp_path / "o", quantize="int3")


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
    assert steps["optimize"] == "passed" and steps["convert"] == "passed", steps


TORCH_TARGET = """
import torch


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))


def build():
    torch.manual_seed(0)
    return Net().eval(), (torch.randn(1, 3, 8, 8),)
"""


@pytest.fixture
def torch_target(tmp_path):
    pytest.importorskip("torch")
    path = tmp_path / "net.py"
    path.write_text(TORCH_TARGET)
    return f"{path}:build"


def test_deploy_torch_target_with_dynamic_keeps_the_dims(torch_target, tmp_path):
    report = deploy(torch_target, target="onnxruntime", output_dir=tmp_path / "o", benchmark=False,
                    dynamic={"x": {0: "batch", 2: "height", 3: "width"}})
    assert report.passed, report.headline
    assert "dynamic dims x: 0=batch, 2=height, 3=width" in report.steps[0].message
    for name in ("01-model.onnx", "02-optimized.onnx", "03-legalized.onnx"):
        assert _input_dims(tmp_path / "o" / name) == ["batch", 3, "height", "width"], name
    assert report.inputs == {"x": ["batch", 3, "height", "width"]}


def test_deploy_torch_target_without_dynamic_exports_fixed_shapes(torch_target, tmp_path):
    report = deploy(torch_target, target="onnxruntime", output_dir=tmp_path / "o", benchmark=False)
    assert report.passed and _input_dims(tmp_path / "o" / "01-model.onnx") == [1, 3, 8, 8]
    assert "fixed shapes (no --dynamic)" in report.steps[0].message


def test_cli_deploy_dynamic_has_the_syntax_of_export(torch_target, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    rc = main(["deploy", torch_target, "--dynamic", "x:0=batch", "-o", str(tmp_path / "o"), "--skip", "benchmark",
               "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["passed"] and data["inputs"] == {"x": ["batch", 3, 8, 8]}


def test_dynamic_is_refused_for_an_onnx_source(conv_bn_silu_path, tmp_path):
    from onnxdeploy.errors import UserInputError

    with pytest.raises(UserInputError, match="--dynamic applies to a PyTorch source"):
        deploy(conv_bn_silu_path, output_dir=tmp_path / "o", dynamic={"input": {0: "batch"}})


def _optimize_that_fixes_dims(monkeypatch):
    import onnxdeploy._optimize as mod

    real = mod.optimize

    def fixing(model, **kwargs):
        kwargs["fix_dims"] = True
        return real(model, **kwargs)

    monkeypatch.setattr(mod, "optimize", fixing)


def test_a_step_that_changes_the_interface_fails_and_the_report_says_so_first(conv_bn_silu_path, tmp_path,
                                                                               monkeypatch, capsys):
    from onnxdeploy.cli.main import main

    _optimize_that_fixes_dims(monkeypatch)
    out = tmp_path / "o"
    rc = main(["deploy", str(conv_bn_silu_path), "-o", str(out), "--dim", "batch=1", "--skip", "benchmark"])
    captured = capsys.readouterr()
    assert rc != 0
    headline = "FAILED at step optimize: the artefact's interface changed: dims: input 'input' dim 0 is fixed to 1"
    assert " ".join(captured.out.split()).startswith(headline)  # the verdict is the first thing printed
    assert "deploy stopped at step 'optimize'" in captured.err and "--fix-dims" in captured.err
    data = json.loads((out / "deploy.json").read_text())
    assert data["failed_step"] == "optimize" and data["headline"].startswith(headline)
    assert any("dim 0 is fixed to 1, was symbolic 'batch'" in c for c in data["interface_changes"])
    html = (out / "report.html").read_text()
    assert html.index("headline failed") < html.index("Steps and verification")
    assert not (out / "03-legalized.onnx").exists()


def test_fix_dims_asks_for_the_change(conv_bn_silu_path, tmp_path):
    report = deploy(conv_bn_silu_path, output_dir=tmp_path / "o", dims={"batch": 1}, fix_dims=True,
                    benchmark=False)
    assert report.passed, report.headline
    assert _input_dims(tmp_path / "o" / "02-optimized.onnx") == [1, 3, "height", "width"]
    optimize_step = next(s for s in report.steps if s.name == "optimize")
    assert any("dims fixed as asked" in n for n in optimize_step.notes)
    assert any("dim 0 is fixed to 1" in c for c in optimize_step.verification.allowed_changes)


def test_dims_alone_stay_symbolic(conv_bn_silu_path, tmp_path):
    report = deploy(conv_bn_silu_path, output_dir=tmp_path / "o", dims={"batch": 1}, benchmark=False)
    assert report.passed and _input_dims(report.final_artifact) == ["batch", 3, "height", "width"]


def test_cli_skip_optimize(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "o"
    rc = main(["deploy", str(conv_bn_silu_path), "-o", str(out), "--skip", "optimize", "--skip", "benchmark",
               "--json"])
    data = json.loads(capsys.readouterr().out)
    steps = {s["name"]: s for s in data["steps"]}
    assert rc == 0 and data["passed"] and data["skipped"] == ["benchmark", "optimize"]
    assert steps["optimize"]["status"] == "skipped" and steps["optimize"]["message"] == "--skip optimize"
    assert not (out / "02-optimized.onnx").exists() and (out / "03-legalized.onnx").exists()


@pytest.mark.parametrize("name,message", [
    ("optimise", "error: --skip optimise: no such step; did you mean optimize?"),
    ("export", "error: --skip export: every later step needs its model"),
])
def test_cli_skip_refuses_a_bad_name_in_one_line(conv_bn_silu_path, tmp_path, name, message):
    proc = subprocess.run([str(Path(__file__).parents[1] / ".venv" / "bin" / "onnxdeploy"), "deploy",
                           str(conv_bn_silu_path), "-o", str(tmp_path / "o"), "--skip", name],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[0] == message, proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_pipeline_is_data():
    from onnxdeploy._deploy import PIPELINE, STEPS, check_skip

    assert STEPS == ("export", "check", "optimize", "legalize", "quantize", "convert", "benchmark")
    assert all(callable(step.run) and step.description for step in PIPELINE)
    assert check_skip(["benchmark", "check"]) == {"benchmark", "check"}


def test_cli_optimize_dim_keeps_the_dim_symbolic(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "o.onnx"
    assert main(["optimize", str(conv_bn_silu_path), "-o", str(out), "--dim", "batch=1"]) == 0
    assert _input_dims(out) == ["batch", 3, "height", "width"]
    assert "these dims stay symbolic" in capsys.readouterr().err


def test_cli_optimize_fix_dims_makes_the_dim_static_and_says_so(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "o.onnx"
    assert main(["optimize", str(conv_bn_silu_path), "-o", str(out), "--dim", "batch=1", "--fix-dims",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert _input_dims(out) == [1, 3, "height", "width"]
    assert data["fixed_dims"] == {"batch": 1} and any("dims fixed as asked" in n for n in data["notes"])


def test_deploy_verifies_on_the_inputs_the_user_gives(tmp_path: Path):
    """--input files go through every step's verification and the benchmark (the shared input group)."""
    import numpy as np
    import onnx

    from onnxdeploy import examples
    from onnxdeploy.cli.main import main

    model = tmp_path / "m.onnx"
    onnx.save(examples.conv_bn_silu(), model)
    x = np.random.default_rng(3).standard_normal((2, 3, 20, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    spec = examples.conv_bn_silu().graph.input[0].name
    out = tmp_path / "out"
    assert main(["deploy", str(model), "-o", str(out), "--input", f"{spec}={tmp_path / 'x.npy'}", "--skip",
                 "benchmark", "--json"]) == 0
    import json

    data = json.loads((out / "deploy.json").read_text())
    shapes = [c for s in data["steps"] if s.get("verification") for c in s["verification"].get("shapes", [])]
    assert shapes and set(shapes) == {"the given inputs"}
