"""bench: statistics, interleaving, batch sizes, profiles, SVG, CLI."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxdeploy._bench as bench_mod
from onnxdeploy._bench import (bench, latency_stats, measure_ratio, median_interval, parse_profile, profile_svg,
                              time_interleaved)
from onnxdeploy.errors import UserInputError


def _mlp(batch="batch") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((32, 32)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"), helper.make_node("Relu", ["h"], ["y"], name="relu")],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 32])], [w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def mlp_path(tmp_path: Path) -> Path:
    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp(), path)
    return path


def test_latency_stats_known_values():
    s = latency_stats("m", 4, [k / 1000 for k in range(1, 101)])  # 1..100 ms
    assert s.iterations == 100
    assert (s.p50, s.p90, s.p99) == pytest.approx((50.5, 90.1, 99.01))
    assert s.min == pytest.approx(1.0) and s.max == pytest.approx(100.0) and s.mean == pytest.approx(50.5)
    assert s.throughput == pytest.approx(4 * 1000 / 50.5)
    with pytest.raises(UserInputError, match="no timed runs"):
        latency_stats("m", 1, [])


def test_time_interleaved_takes_turns_in_blocks_and_counts():
    calls: list[str] = []
    times = time_interleaved([lambda: calls.append("a"), lambda: calls.append("b")], warmup=2, iterations=5)
    assert [len(t) for t in times] == [5, 5]
    # 2 warm-up rounds, then turns: one settling run and up to 3 timed runs each, until 5 timed runs each
    assert calls == ["a", "b"] * 2 + ["a"] * 4 + ["b"] * 4 + ["a"] * 3 + ["b"] * 3
    single: list[str] = []
    assert len(time_interleaved([lambda: single.append("a")], warmup=0, iterations=4)[0]) == 4
    assert single == ["a"] * 4  # alone: no settling runs
    stopped = time_interleaved([lambda: None], warmup=0, iterations=1_000_000, duration=0.05)
    assert 1 <= len(stopped[0]) < 1_000_000
    with pytest.raises(UserInputError, match="iterations must be at least 1"):
        time_interleaved([lambda: None], iterations=0)


def test_bench_two_models_interleaved_and_batch_sizes(mlp_path, tmp_path):
    other = tmp_path / "mlp2.onnx"
    onnx.save(_mlp(), other)
    report = bench([mlp_path, other], warmup=1, iterations=7, batch_sizes=[1, 4], threads=1)
    assert [(r.model, r.batch) for r in report.results] == [
        ("mlp.onnx", 1), ("mlp2.onnx", 1), ("mlp.onnx", 4), ("mlp2.onnx", 4)]
    for r in report.results:
        assert r.iterations == 7
        assert r.min <= r.p50 <= r.p90 <= r.p99 <= r.max
        assert r.throughput == pytest.approx(r.batch * 1000 / r.mean)
    assert report.results[0].vs_first is None and report.results[2].vs_first is None  # first of each batch size
    m = report.results[1].vs_first
    assert m.low <= m.speedup <= m.high and m.runs == report.results[1].iterations
    assert report.settings["interleaved"] and report.settings["batch_sizes"] == [1, 4]
    assert json.dumps(report.to_dict())


def test_fixed_batch_dim_is_refused(tmp_path):
    path = tmp_path / "fixed.onnx"
    onnx.save(_mlp(batch=2), path)
    with pytest.raises(UserInputError, match="fixed batch dim of 2; cannot run batch size 8"):
        bench(path, iterations=1, batch_sizes=[8])


def test_profile_table_and_svg(mlp_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # onnxruntime writes its trace into the working folder; we must remove it
    svg = tmp_path / "ops.svg"
    report = bench(mlp_path, warmup=1, iterations=3, profile=True, profile_runs=3, svg=svg)
    ops = report.profiles["mlp.onnx"]
    assert ops and {o.op_type for o in ops} >= {"MatMul"}
    assert all(o.ms >= 0 and o.calls >= 1 for o in ops)
    assert sum(o.percent for o in ops) == pytest.approx(100.0)
    root = ET.parse(svg).getroot()  # well-formed XML
    assert root.tag.endswith("svg")
    texts = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert "MatMul" in texts and "mlp.onnx" in texts
    assert report.svg == str(svg)
    assert not list(tmp_path.glob("onnxruntime_profile*"))
    with pytest.raises(UserInputError, match="needs profiling"):
        bench(mlp_path, iterations=1, svg=tmp_path / "x.svg")


def test_parse_profile_skips_warmup_runs(tmp_path):
    def node(ts, op, dur):
        return {"cat": "Node", "name": f"n_{ts}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        node(10, "Conv", 90_000),  # warm-up run: must be left out
        {"cat": "Session", "name": "model_run", "ts": 1000, "dur": 100},
        node(1010, "Conv", 2000), node(1050, "Relu", 1000),
        {"cat": "Session", "name": "model_run", "ts": 2000, "dur": 100},
        node(2010, "Conv", 4000), node(2050, "Relu", 1000),
    ]
    trace = tmp_path / "trace.json"
    trace.write_text(json.dumps(events))
    ops, runs = parse_profile(trace, skip_runs=1)
    assert runs == 2
    assert [(o.op_type, o.ms, o.calls) for o in ops] == [("Conv", 3.0, 1), ("Relu", 1.0, 1)]
    assert ops[0].percent == pytest.approx(75.0)


def test_svg_escapes_names():
    from onnxdeploy._bench import OpTime

    text = profile_svg({"a<b>&c.onnx": [OpTime("Op<&>", 1.0, 1, 100.0)]})
    ET.fromstring(text)


def test_cli_table_json_and_errors(mlp_path, tmp_path, capsys, monkeypatch):
    from onnxdeploy.cli.main import main

    other = tmp_path / "mlp2.onnx"
    onnx.save(_mlp(), other)
    assert main(["bench", str(mlp_path), str(other), "-n", "3", "--warmup", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "p50" in out and "mlp2.onnx" in out and "reference" in out and "vs 1st" in out
    assert "x faster" in out or "x slower" in out
    assert main(["bench", str(mlp_path), "-n", "2", "--batch", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["results"][0]["batch"] == 3 and data["results"][0]["iterations"] == 2
    monkeypatch.chdir(tmp_path)
    assert main(["bench", str(mlp_path), "-n", "2", "--profile"]) == 0
    assert "Time per op type" in capsys.readouterr().out
    rc = main(["bench", str(tmp_path / "missing.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and "missing.onnx" in err and "hint: check the path" in err and "Traceback" not in err


def test_cli_modules_import_no_heavy_packages():
    import subprocess
    import sys

    code = (
        "import sys, onnxdeploy.cli.bench, onnxdeploy.cli.quantize; "
        "heavy = [m for m in ('onnxruntime', 'onnx_ir', 'torch', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_timed_input_shapes_are_reported_and_dims_left_at_1_warned(tmp_path, capsys, monkeypatch):
    """A transformer timed at sequence length 1 looks 100x faster than it is: say what was timed."""
    from onnxdeploy.cli.main import main

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "seq",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])])
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    report = bench([path], iterations=2, warmup=0, threads=1)
    assert report.results[0].inputs == {"x": "1x1x4"}
    assert len(report.warnings) == 1 and "seq" in report.warnings[0] and "--dim seq=N" in report.warnings[0]
    assert "batch" not in report.warnings[0]  # a batch of 1 is a fine default
    report = bench([path], iterations=2, warmup=0, threads=1, dims={"seq": 8}, batch_sizes=[2])
    assert report.results[0].inputs == {"x": "2x8x4"} and report.warnings == []
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["bench", str(path), "-n", "2", "--warmup", "0"]) == 0
    captured = capsys.readouterr()
    assert "inputs: x 1x1x4" in captured.out and "warning: symbolic dim(s) timed at default sizes: seq=1" in captured.err


def test_median_interval_known_values():
    assert median_interval([1, 2, 3, 4, 5]) == (3.0, 1.0, 5.0)  # 5 values: min..max
    mid, low, high = median_interval(list(range(1, 101)))
    assert mid == 50.5 and (low, high) == (38.0, 63.0)  # order statistics 37..62 (0-based) of 100


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _Session:
    """Takes the next of ``costs`` seconds on the fake clock per run; no outputs."""

    def __init__(self, clock: _Clock, costs) -> None:
        self.clock, self.costs = clock, iter(costs)

    def get_outputs(self):
        return []

    def run(self, names, feeds, *options):
        self.clock.t += next(self.costs)
        return []


def test_measure_ratio_stops_once_stable(monkeypatch):
    import itertools

    clock = _Clock()
    monkeypatch.setattr(bench_mod, "clock", clock)
    a, b = _Session(clock, itertools.repeat(0.010)), _Session(clock, itertools.repeat(0.004))
    m = measure_ratio(a, b, {}, min_blocks=5, max_seconds=60, warmup=1)
    assert m.blocks == 5 and m.runs == 15 and not m.noisy  # identical blocks: stable at the minimum
    assert (m.speedup, m.low, m.high) == pytest.approx((2.5, 2.5, 2.5)) and m.a_ms == pytest.approx(10.0)


def test_measure_ratio_reports_noise_when_the_budget_runs_out(monkeypatch):
    import itertools

    clock = _Clock()
    monkeypatch.setattr(bench_mod, "clock", clock)
    rng = np.random.default_rng(0)
    a = _Session(clock, itertools.repeat(0.010))
    b = _Session(clock, (float(rng.uniform(0.002, 0.008)) for _ in itertools.count()))  # 5x to 1.25x
    m = measure_ratio(a, b, {}, min_blocks=5, max_seconds=2.0, warmup=1)
    assert m.noisy and m.spread > 0.10 and m.seconds >= 2.0 and m.blocks > 5
    m = measure_ratio(a, b, {}, min_blocks=5, max_blocks=7, max_seconds=1000, warmup=1)
    assert m.blocks == 7


def test_bench_of_several_models_times_until_the_ratios_are_stable(monkeypatch):
    """Neither --iterations nor --duration: the default runs, then more blocks while the ratio is noisy."""
    import itertools

    clock = _Clock()
    monkeypatch.setattr(bench_mod, "clock", clock)
    rng = np.random.default_rng(0)
    steady = itertools.repeat(0.010)
    noisy_then_steady = itertools.chain([float(rng.uniform(0.002, 0.008)) for _ in range(200)],
                                        itertools.repeat(0.005))
    runners = [lambda: setattr(clock, "t", clock.t + next(steady)),
               lambda: setattr(clock, "t", clock.t + next(noisy_then_steady))]
    timings = time_interleaved(runners, warmup=0, stop=bench_mod.default_stop_rule(None, None, 2))
    assert len(timings.blocks) > 50 and bench_mod.ratio_of(timings).spread <= 0.10


def test_ratios_are_words_never_bare_factors():
    from onnxdeploy.cli.output import fmt_ratio

    assert fmt_ratio(2.9) == "2.90x faster" and fmt_ratio(1 / 1.3) == "1.30x slower"
    assert fmt_ratio(1.0) == "1.00x faster" and fmt_ratio(None) == ""


def test_a_ratio_that_drifts_during_the_run_is_noisy_even_with_a_narrow_interval():
    """Load comes in spells: a ratio creeping from 2.0x to 2.6x over the run has a narrow median interval (blocks
    are not independent), but its two halves disagree."""
    from onnxdeploy._bench import Timings, ratio_of

    blocks = [[[0.010] * 3, [0.010 / r] * 3] for r in np.linspace(2.0, 2.6, 100)]
    m = ratio_of(Timings(blocks, seconds=1.0))
    assert m.spread < 0.10 and m.drift > 0.10 and m.noisy
    steady = ratio_of(Timings([[[0.010] * 3, [0.004] * 3]] * 100, seconds=1.0))
    assert steady.drift == 0.0 and not steady.noisy
