"""Precision as a choice of every target (fp32/bf16/fp16/int8) and ``--precision auto`` (onnxdeploy._precision)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import targets
from onnxdeploy._numerics import Tolerance
from onnxdeploy._precision import Budget, Candidate, choose_precision, parse_top1_drop, plan_candidates, pick
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy.targets.base import Target

from netguard import no_network

openvino = pytest.importorskip("openvino")


def _caps() -> tuple[str, ...]:
    from onnxdeploy.targets.openvino import cpu_capabilities

    return cpu_capabilities()


needs_bf16 = pytest.mark.skipif("BF16" not in _caps(), reason="the CPU has no bf16 units OpenVINO uses (AMX or "
                                "AVX512-BF16): OpenVINO builds fp32 only here")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm: logits 1x10, a CNN in miniature."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    g = numpy_helper.from_array(rng.standard_normal((10, 8)).astype(np.float32), "g")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], [w, g])
    path = tmp_path_factory.mktemp("cnn") / "cnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@pytest.fixture(scope="module")
def transformer(tmp_path_factory) -> Path:
    """One attention block: x (1x8x32) -> q, k, v -> softmax(q k^T) v -> + x -> LayerNorm -> MatMul -> 1x8x10."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32) * 0.2, n) for n in "qkv"]
    inits += [numpy_helper.from_array(rng.standard_normal((32, 10)).astype(np.float32) * 0.2, "o"),
              numpy_helper.from_array(np.ones(32, np.float32), "gamma"),
              numpy_helper.from_array(np.zeros(32, np.float32), "beta")]
    nodes = [helper.make_node("MatMul", ["x", n], [n + "_"]) for n in "qkv"]
    nodes += [helper.make_node("Transpose", ["k_"], ["kt"], perm=[0, 2, 1]),
              helper.make_node("MatMul", ["q_", "kt"], ["s"]), helper.make_node("Softmax", ["s"], ["a"], axis=-1),
              helper.make_node("MatMul", ["a", "v_"], ["h"]), helper.make_node("Add", ["h", "x"], ["res"]),
              helper.make_node("LayerNormalization", ["res", "gamma", "beta"], ["n"], axis=-1),
              helper.make_node("MatMul", ["n", "o"], ["y"])]
    graph = helper.make_graph(nodes, "attn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 10])], inits)
    path = tmp_path_factory.mktemp("attn") / "attn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _samples(shape, n, seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


# ---------------------------------------------------------------- the contract


def test_every_target_declares_its_precisions_and_takes_the_keyword():
    import inspect as pyinspect

    assert Target.precisions == ("fp32",)
    params = pyinspect.signature(Target.convert).parameters
    assert params["precision"].default == "fp32" and params["calibration"].default is None
    for name in ("onnxruntime", "openvino", "ort-mobile", "tensorrt", "ascend"):
        t = targets.get_target(name)
        assert t.precisions[0] == "fp32", name
        assert "precision" in pyinspect.signature(t.convert).parameters, name
    assert set(targets.get_target("onnxruntime").precisions) == {"fp32", "fp16", "int8"}


def test_a_precision_the_target_does_not_build_is_refused_naming_the_ones_it_does(cnn, tmp_path):
    with pytest.raises(UnsupportedError) as err:
        targets.convert(cnn, "onnxruntime", tmp_path / "m.onnx", precision="bf16")
    assert err.value.message == "target onnxruntime cannot build bf16 here; it builds fp32, fp16, int8"
    with pytest.raises(UserInputError, match="unknown precision 'int4'") as err:
        targets.convert(cnn, "openvino", tmp_path / "m.xml", precision="int4")
    assert "int8" in err.value.hint
    assert not list(tmp_path.iterdir())  # nothing written


# ---------------------------------------------------------------- artefacts at each precision


@needs_bf16
def test_openvino_bf16_is_built_verified_by_cosine_and_run_at_bf16(cnn, tmp_path):
    from onnxdeploy.targets.openvino import artifact_precision

    rep = targets.convert(cnn, "openvino", tmp_path / "m.xml", precision="bf16")
    assert rep.precision == "bf16" and rep.parity.passed
    assert rep.parity.metric.startswith("cosine >= 0.999")
    assert rep.metric_values().startswith("cosine 0.99")
    assert artifact_precision(tmp_path / "m.xml") == ("bf16", "bf16")
    # `run` compiles at the stored hint: the outputs differ from an f32 compile, and are judged by the bf16 metric
    run = targets.run_on_backend(tmp_path / "m.xml", reference=cnn)
    assert run.precision == "bf16" and run.parity.metric.startswith("cosine")
    fp32 = targets.convert(cnn, "openvino", tmp_path / "f.xml")
    assert fp32.parity.metric.startswith("max abs/rel") and artifact_precision(tmp_path / "f.xml")[1] == "f32"


def test_openvino_int8_by_nncf_touches_no_network_and_leaves_the_environment(cnn, tmp_path):
    pytest.importorskip("nncf", reason="OpenVINO int8 needs nncf: pip install 'onnxdeploy[openvino]'")
    before = {k: os.environ.get(k) for k in ("CI", "NNCF_CI")}
    with no_network() as attempts:
        rep = targets.convert(cnn, "openvino", tmp_path / "q.xml", precision="int8",
                              calibration=_samples((1, 3, 16, 16), 4, seed=5))
    assert attempts == []
    assert {k: os.environ.get(k) for k in ("CI", "NNCF_CI")} == before
    assert rep.parity.passed and "top-1 >= 0.9" in rep.parity.metric
    assert any("nncf.quantize on 4 calibration sample(s)" in n for n in rep.notes)
    xml = (tmp_path / "q.xml").read_text()
    assert "FakeQuantize" in xml or "FakeConvert" in xml  # int8 in the IR


def test_onnxruntime_int8_of_a_transformer_is_verified_with_the_int8_metric(transformer, tmp_path):
    rep = targets.convert(transformer, "onnxruntime", tmp_path / "q.onnx", precision="int8",
                          calibration=_samples((1, 8, 32), 8, seed=3))
    assert rep.parity.passed and rep.parity.metric.startswith("cosine >= 0.99, rel L2 <= 0.1")
    assert "cosine 0.9" in rep.metric_values()
    ops = {n.op_type for n in onnx.load(tmp_path / "q.onnx").graph.node}
    assert ops & {"QuantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul"}


def test_an_artefact_outside_a_tight_budget_is_rejected_and_not_written(cnn, tmp_path):
    with pytest.raises(OutputsDisagree, match="cosine"):
        targets.convert(cnn, "onnxruntime", tmp_path / "q.onnx", precision="int8",
                        tolerance=Tolerance(precision="int8", min_cosine=0.9999999, max_rel_l2=1e-6))
    assert not (tmp_path / "q.onnx").exists()


# ---------------------------------------------------------------- --precision auto


def test_budget_parsing():
    assert parse_top1_drop("0.5%") == pytest.approx(0.005) and parse_top1_drop(0.01) == 0.01
    assert parse_top1_drop(None) is None
    with pytest.raises(UserInputError, match="expected a percentage"):
        parse_top1_drop("half")
    assert Budget(0.999, "1%").describe() == "cosine >= 0.999, top-1 agreement >= 99%"
    with pytest.raises(UserInputError, match="--min-cosine 2"):
        Budget(2)
    # top-1 agreement counts only when the budget names it, also in the per-output copies the verifier judges with
    loose = Budget(0.999).tolerance("int8").for_output("hidden")
    assert loose.min_top1 is None and loose.min_cosine == 0.999 and loose.uses_metrics
    assert Budget(0.999, "1%").tolerance("int8").for_output("logits").min_top1 == pytest.approx(0.99)


def test_auto_target_iterates_the_registry_and_skips_unavailable_engines_with_the_reason():
    from onnxdeploy.targets.base import TARGET_NAMES

    plan = plan_candidates("auto", "fp32")
    assert {c.target for c in plan} >= {n for n in TARGET_NAMES if n in ("onnxruntime", "openvino", "tensorrt")}
    skipped = [c for c in plan if c.status == "skipped"]
    assert all(c.reason for c in skipped)
    assert any(c.target == "ascend" for c in skipped)  # its artefact cannot run (or be timed) here


def test_auto_keeps_the_fastest_within_the_budget_by_measurement(cnn, tmp_path):
    from onnxdeploy.targets.onnxruntime import OnnxRuntimeTarget

    run = OnnxRuntimeTarget().runner(cnn, threads=1)

    def slower(feeds):  # same outputs, 20 ms later (a margin no load on a shared CI machine closes)
        out = run(feeds)
        time.sleep(0.02)
        return out

    def inaccurate(feeds):  # fastest of all, but far from fp32
        return {k: v + np.float32(1.0) for k, v in run(feeds).items()}

    fakes = [Candidate("fake", "int8", runner=slower), Candidate("fake", "fp16", runner=inaccurate)]
    choice = choose_precision(cnn, target="onnxruntime", precision="fp32", output_dir=tmp_path,
                              extra_candidates=fakes, bench_seconds=0.3)
    by = {c.label: c for c in choice.candidates}
    assert by["fake fp16"].status == "rejected" and by["fake fp16"].reason.startswith("cosine")
    assert by["fake int8"].status == "ok" and by["fake int8"].p50_ms > by["onnxruntime fp32"].p50_ms + 10.0
    assert choice.winner is by["onnxruntime fp32"]
    assert choice.why.startswith("onnxruntime fp32 is the fastest of 2 candidate(s) within the budget")
    assert "outside the budget: fake fp16 (cosine" in choice.why
    assert choice.held_out == 8 and "synthesized" in choice.held_out_source
    # the choice itself is by p50 among the candidates within the budget
    a, b = Candidate("a", "fp32", "ok", p50_ms=2.0), Candidate("b", "int8", "ok", p50_ms=1.0)
    assert pick([a, b, Candidate("c", "int8", "rejected", "cosine", p50_ms=0.5)], Budget(), 4.0)[0] is b


def test_timing_leaves_onnxruntime_threads_time_to_spin_down_before_the_next_runner():
    from onnxdeploy import _precision

    last: dict[str, float] = {}
    gaps: list[float] = []

    def reference(feeds):  # stands for onnxruntime fp32, whose threads spin on after a run
        last["end"] = time.perf_counter()
        return {}

    def candidate(feeds):
        gaps.append(time.perf_counter() - last["end"])
        return {}

    cand = Candidate("openvino", "int8", runner=candidate)
    base = _precision.measure([cand], reference, {"x": np.zeros(1, np.float32)}, seconds=0.05, warmup=0)
    assert min(gaps) >= _precision.SPIN_DOWN_S  # an idle turn between them, every time
    assert cand.p50_ms < 5 and base < 5  # the idle turn is timed by no one
    assert cand.runs >= 15  # 5 blocks at least


def test_auto_with_a_tight_budget_rejects_int8_on_held_out_inputs(cnn, tmp_path):
    samples = _samples((1, 3, 16, 16), 12, seed=9)
    choice = choose_precision(cnn, target="onnxruntime", precision="auto", output_dir=tmp_path,
                              calibration=samples, min_cosine=0.999999, max_top1_drop="0%", bench_seconds=0.2)
    by = {c.label: c for c in choice.candidates}
    assert by["onnxruntime int8"].status == "rejected", by["onnxruntime int8"].reason
    assert choice.winner is not None and choice.winner.precision in ("fp32", "fp16")
    assert choice.held_out == 3 and choice.calibration == 9  # disjoint: a quarter held out of the given 12


def test_deploy_precision_auto_cli_writes_the_table_the_pareto_chart_and_why(cnn, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "out"
    rc = main(["deploy", str(cnn), "-t", "openvino", "--precision", "auto", "--min-cosine", "0.99", "-o", str(out),
               "--skip", "check", "--skip", "legalize", "--skip", "benchmark", "--bench-seconds", "0.2"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "precision candidates" in text and "<- chosen" in text and "chosen:   openvino" in text
    data = json.loads((out / "deploy.json").read_text())
    choice = next(s["details"]["precision_choice"] for s in data["steps"] if s["name"] == "convert")
    assert {c["precision"] for c in choice["candidates"]} == set(targets.get_target("openvino").precisions)
    assert choice["winner"].startswith("openvino") and data["final_artifact"] == choice["winner_path"]
    html = (out / "report.html").read_text()
    assert 'aria-label="Pareto chart of the candidates"' in html and "<script" not in html
    assert "Why:" in html and "fastest of" in html


# ---------------------------------------------------------------- OpenVINO compile config and shapes


def test_openvino_artefact_records_the_compile_config_it_is_compiled_with(cnn, tmp_path):
    pytest.importorskip("nncf", reason="OpenVINO int8 needs nncf: pip install 'onnxdeploy[openvino]'")
    import openvino as ov

    from onnxdeploy.targets.openvino import artifact_precision, compile_artifact, recorded_compile_config

    rep = targets.convert(cnn, "openvino", tmp_path / "q.xml", precision="int8",
                          calibration=_samples((1, 3, 16, 16), 4, seed=5))
    config = recorded_compile_config(ov.Core().read_model(str(tmp_path / "q.xml")))
    hint = "f32"  # int8: what NNCF leaves in float runs at f32 (faster than bf16 on BERT-base, and closer)
    assert config == {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                      "ENABLE_CPU_PINNING": "YES"}
    assert artifact_precision(tmp_path / "q.xml") == ("int8", hint)
    said = f"precision int8: compiled with INFERENCE_PRECISION_HINT {hint}, PERFORMANCE_HINT LATENCY, NUM_STREAMS 1, "
    assert any(n.startswith(said + "ENABLE_CPU_PINNING YES") for n in rep.notes), rep.notes
    compiled = compile_artifact(tmp_path / "q.xml", threads=1)  # what run/bench/deploy time
    assert compiled.get_property("NUM_STREAMS") == 1 and compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("LATENCY")
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32  # OpenVINO's default is bf16 on AMX


def test_openvino_runner_reuses_one_request_and_returns_copies(cnn, tmp_path):
    from onnxdeploy.targets.openvino import OpenVINOTarget

    targets.convert(cnn, "openvino", tmp_path / "m.xml")
    run = OpenVINOTarget().runner(tmp_path / "m.xml", threads=1)
    a, b = _samples((1, 3, 16, 16), 2, seed=7)
    first = run(a)["logits"]
    kept = first.copy()
    second = run(b)["logits"]
    np.testing.assert_array_equal(first, kept)  # the second run did not overwrite the first result
    assert not np.allclose(first, second)


def test_openvino_keeps_dynamic_dims_unless_they_were_fixed(tmp_path):
    import openvino as ov

    from onnxdeploy import examples, optimize, save

    dynamic = tmp_path / "dyn.onnx"
    onnx.save(examples.conv_bn_silu(), dynamic)
    dims = {"batch": 1, "height": 8, "width": 8}
    rep = targets.convert(dynamic, "openvino", tmp_path / "dyn.xml", dims=dims)  # dims to verify at only
    assert ov.Core().read_model(str(tmp_path / "dyn.xml")).inputs[0].get_partial_shape().is_dynamic
    assert any(n.startswith("dynamic dims kept as the ONNX model declares them (input)") and "--fix-dims" in n
               for n in rep.notes), rep.notes
    fixed = tmp_path / "fixed.onnx"
    save(optimize(dynamic, dims=dims, fix_dims=True).model, fixed)  # what `deploy --fix-dims` runs first
    rep = targets.convert(fixed, "openvino", tmp_path / "fixed.xml")
    shape = ov.Core().read_model(str(tmp_path / "fixed.xml")).inputs[0].get_partial_shape()
    assert shape.is_static and list(shape.to_shape()) == [1, 3, 8, 8]
    assert any(n.startswith("input shapes static:") for n in rep.notes), rep.notes


def test_deploy_refuses_a_bad_budget_before_any_step_runs(cnn, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    rc = main(["deploy", str(cnn), "--precision", "auto", "--max-top1-drop", "200%", "-o", str(tmp_path / "out")])
    assert rc == 1 and "--max-top1-drop '200%': must be between 0% and 100%" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
