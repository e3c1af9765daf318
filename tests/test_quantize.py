"""quantize: defaults by model type, calibration sources, exclusions, verification, fallback, CLI."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy._bench import RatioMeasurement
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy._quantize import load_calibration, model_kind, quantize, synthesize_samples

qmod = importlib.import_module("onnxdeploy._quantize")


def _cnn() -> onnx.ModelProto:
    """3 Conv+Relu, global pool, Gemm to 10 logits; symbolic batch."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    c_in, x = 3, "x"
    for i, c in enumerate([16, 32, 32]):
        inits.append(numpy_helper.from_array((rng.standard_normal((c, c_in, 3, 3)) * 0.2).astype(np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), f"b{i}"))
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x, c_in = f"r{i}", c
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"))
    inits.append(numpy_helper.from_array((rng.standard_normal((32, 10)) * 0.3).astype(np.float32), "fcw"))
    inits.append(numpy_helper.from_array(np.zeros(10, np.float32), "fcb"))
    nodes.append(helper.make_node("Gemm", ["flat", "fcw", "fcb"], ["logits"], name="fc"))
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _transformer() -> onnx.ModelProto:
    """Embedding Gather, two MatMul+Add feed-forward blocks with residuals: MatMul-heavy like a transformer."""
    rng = np.random.default_rng(1)
    h, f = 64, 128
    inits = [numpy_helper.from_array(rng.standard_normal((50, h)).astype(np.float32), "emb")]
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["x0"], name="embed")]
    mask = helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT, name="mask_cast")
    unsq = helper.make_node("Unsqueeze", ["maskf", "axis"], ["mask3"], name="mask_unsqueeze")
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "axis"))
    nodes += [mask, unsq]
    x = "x0"
    for i in range(2):
        for name, shape in ((f"w1_{i}", (h, f)), (f"w2_{i}", (f, h))):
            inits.append(numpy_helper.from_array((rng.standard_normal(shape) / np.sqrt(shape[0])).astype(np.float32), name))
        inits.append(numpy_helper.from_array(np.zeros(f, np.float32), f"b1_{i}"))
        inits.append(numpy_helper.from_array(np.zeros(h, np.float32), f"b2_{i}"))
        nodes += [
            helper.make_node("MatMul", [x, f"w1_{i}"], [f"m1_{i}"], name=f"ffn{i}/fc1"),
            helper.make_node("Add", [f"m1_{i}", f"b1_{i}"], [f"a1_{i}"], name=f"ffn{i}/bias1"),
            helper.make_node("Relu", [f"a1_{i}"], [f"g_{i}"], name=f"ffn{i}/act"),
            helper.make_node("MatMul", [f"g_{i}", f"w2_{i}"], [f"m2_{i}"], name=f"ffn{i}/fc2"),
            helper.make_node("Add", [f"m2_{i}", f"b2_{i}"], [f"a2_{i}"], name=f"ffn{i}/bias2"),
            helper.make_node("Add", [x, f"a2_{i}"], [f"x{i + 1}"], name=f"ffn{i}/residual"),
        ]
        x = f"x{i + 1}"
    nodes.append(helper.make_node("Mul", [x, "mask3"], ["hidden"], name="apply_mask"))
    graph = helper.make_graph(
        nodes, "ffn",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", "sequence", h])], inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def cnn_path(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(_cnn(), path)
    return path


@pytest.fixture
def ffn_path(tmp_path: Path) -> Path:
    path = tmp_path / "ffn.onnx"
    onnx.save(_transformer(), path)
    return path


def _dq_fed_nodes(path: Path) -> set[str]:
    """Names of nodes whose weight (input 1) comes from a DequantizeLinear, i.e. that run quantized."""
    model = onnx.load(path)
    dq_outputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if len(n.input) > 1 and n.input[1] in dq_outputs}


def test_model_kind():
    assert model_kind(_cnn()) == "cnn"
    assert model_kind(_transformer()) == "transformer"


def test_cnn_defaults_static_qdq_uint8_per_channel(cnn_path, tmp_path):
    out = tmp_path / "cnn.int8.onnx"
    report = quantize(cnn_path, out, measure=False)
    onnx.checker.check_model(onnx.load(out), full_check=True)
    assert (report.mode, report.format, report.activation_type, report.weight_type) == ("static", "QDQ", "uint8", "int8")
    assert report.per_channel is True
    assert report.quantized_ops.get("QuantizeLinear", 0) >= 3 and report.quantized_ops.get("DequantizeLinear", 0) >= 3
    assert {"conv0", "conv1", "conv2"} <= _dq_fed_nodes(out)
    assert report.cosine >= 0.99 and report.top1_agreement is not None and report.top1_agreement >= 0.75
    assert report.heldout_samples == 4 and report.calibration_samples == 16
    assert report.output_bytes < report.input_bytes
    assert any("synthesized" in w for w in report.warnings)
    d = report.to_dict()
    assert {"cosine", "max_abs", "top1_agreement", "speedup", "outputs", "input_bytes", "output_bytes"} <= set(d)
    # activations of the quantized graph are uint8
    model = onnx.load(out)
    zp_types = {i.data_type for i in model.graph.initializer if i.name.endswith("zero_point") and not i.dims}
    assert TensorProto.UINT8 in zp_types
    got = ort.InferenceSession(str(out)).run(None, {"x": np.zeros((2, 3, 16, 16), np.float32)})[0]
    assert got.shape == (2, 10)  # symbolic batch kept


def test_transformer_defaults_dynamic(ffn_path, tmp_path):
    out = tmp_path / "ffn.int8.onnx"
    report = quantize(ffn_path, out, measure=False)
    assert report.model_kind == "transformer" and report.mode == "dynamic"
    ops = report.quantized_ops
    assert ops.get("DynamicQuantizeLinear", 0) + ops.get("DynamicQuantizeMatMul", 0) + ops.get("MatMulInteger", 0) >= 4
    assert report.cosine >= 0.99
    assert report.top1_agreement is None  # hidden states are not class logits
    assert not any("synthesized" in w for w in report.warnings)  # dynamic needs no calibration
    onnx.checker.check_model(onnx.load(out))


def test_synthesized_samples_look_like_real_inputs():
    samples = synthesize_samples(_transformer(), 3, seed=5)
    assert len(samples) == 3
    for s in samples:
        assert s["input_ids"].shape == (1, 128) and s["input_ids"].max() < 50  # the embedding table has 50 rows
        assert (s["attention_mask"] == 1).all()
    assert not np.array_equal(samples[0]["input_ids"], samples[1]["input_ids"])


def test_exclude_nodes_by_glob_and_ops(cnn_path, tmp_path):
    out = tmp_path / "q.onnx"
    report = quantize(cnn_path, out, exclude_nodes=["conv[01]"], exclude_ops=["Gemm"], measure=False)
    assert sorted(report.excluded_nodes) == ["conv0", "conv1", "fc"]
    quantized = _dq_fed_nodes(out)
    assert "conv2" in quantized
    assert not {"conv0", "conv1", "fc"} & quantized


def test_unknown_exclusions_name_the_closest(cnn_path, tmp_path):
    with pytest.raises(UserInputError, match="matches no node") as info:
        quantize(cnn_path, tmp_path / "q.onnx", exclude_nodes=["convv0"], measure=False)
    assert "conv0" in info.value.hint
    with pytest.raises(UserInputError, match="has no Conf node") as info:
        quantize(cnn_path, tmp_path / "q.onnx", exclude_ops=["Conf"], measure=False)
    assert "Conv" in info.value.hint
    assert not (tmp_path / "q.onnx").exists()


def test_calibration_from_npz_holds_out_samples(cnn_path, tmp_path):
    rng = np.random.default_rng(3)
    npz = tmp_path / "calib.npz"
    np.savez(npz, x=rng.standard_normal((10, 3, 16, 16)).astype(np.float32))  # a batch of 10: 10 samples
    report = quantize(cnn_path, tmp_path / "q.onnx", mode="static", calibration=npz, measure=False)
    assert (report.calibration_samples, report.heldout_samples) == (8, 2)
    assert report.calibration == str(npz)
    assert not any("synthesized" in w for w in report.warnings)


def test_calibration_from_folders(cnn_path, tmp_path):
    rng = np.random.default_rng(4)
    flat = tmp_path / "flat"
    flat.mkdir()
    for k in range(3):  # one sample per file, stacked on a leading axis
        np.save(flat / f"img{k}.npy", rng.standard_normal((2, 1, 3, 16, 16)).astype(np.float32))
    assert len(load_calibration(flat, cnn_path)) == 6
    nested = tmp_path / "nested"
    for k in range(4):  # the ONNX test-data layout: one folder per sample, TensorProto files
        (nested / f"test_data_set_{k}").mkdir(parents=True)
        tensor = numpy_helper.from_array(rng.standard_normal((1, 3, 16, 16)).astype(np.float32), "x")
        (nested / f"test_data_set_{k}" / "input_0.pb").write_bytes(tensor.SerializeToString())
    report = quantize(cnn_path, tmp_path / "q.onnx", calibration=nested, measure=False)
    assert (report.calibration_samples, report.heldout_samples) == (3, 1)


def test_calibration_errors(cnn_path, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, y=np.zeros((4, 3, 16, 16), np.float32))
    with pytest.raises(UserInputError, match="no input named 'y'"):
        load_calibration(bad, cnn_path)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((4, 3, 8, 8), np.float32))
    with pytest.raises(UserInputError, match="calibration sample 0: .*dim 2 is fixed to 16"):
        load_calibration(wrong, cnn_path)
    with pytest.raises(UserInputError, match="no such file or folder"):
        load_calibration(tmp_path / "missing.npz", cnn_path)


def test_verification_failure_writes_nothing(cnn_path, tmp_path):
    out = tmp_path / "q.onnx"
    with pytest.raises(OutputsDisagree, match="cosine similarity .* nothing written"):
        quantize(cnn_path, out, min_cosine=1.01, measure=False)
    assert not out.exists()
    assert not list(tmp_path.glob(".onnxdeploy-*"))


def test_speedup_is_measured(cnn_path, tmp_path):
    report = quantize(cnn_path, tmp_path / "q.onnx", measure_seconds=0.5, threads=1)
    assert report.fp32_ms > 0 and report.quantized_ms > 0 and report.speed.blocks >= 5
    assert report.speed.low <= report.speedup <= report.speed.high
    assert report.noisy == (report.speed.spread > 0.10)
    assert report.to_dict()["speed"]["noisy"] == report.noisy and "decision" in report.to_dict()


def _speed(speedup: float, low: float | None = None, high: float | None = None) -> RatioMeasurement:
    """A measurement: tight around ``speedup`` unless an interval is given."""
    low = speedup * 0.98 if low is None else low
    high = speedup * 1.02 if high is None else high
    return RatioMeasurement(speedup, low, high, a_ms=1.0, b_ms=1.0 / speedup, blocks=20, runs=60, seconds=1.0)


def test_auto_mode_never_writes_a_model_slower_than_fp32(cnn_path, tmp_path, monkeypatch):
    speeds = iter([_speed(0.5)])  # static twice as slow as fp32 (beyond noise), then dynamic twice as fast
    monkeypatch.setattr(qmod, "_measure", lambda *a, **k: next(speeds, _speed(2.0)))
    report = quantize(cnn_path, tmp_path / "q.onnx")
    assert [a.mode for a in report.attempts] == ["dynamic", "static"]  # the faster first: the one written
    assert report.mode == "dynamic" and any("2.00x slower than fp32 here; trying dynamic" in w for w in report.warnings)
    assert report.decision == "auto: wrote dynamic, 2.00x faster than fp32"
    monkeypatch.setattr(qmod, "_measure", lambda *a, **k: _speed(0.5))  # every quantized model "twice as slow"
    out = tmp_path / "q-slow.onnx"
    with pytest.raises(UnsupportedError, match="no int8 variant runs faster than fp32 here") as err:
        quantize(cnn_path, out)
    assert "static 2.00x slower, dynamic 2.00x slower than fp32" in str(err.value) and not out.exists()
    assert "--mode static" in err.value.hint
    # an explicit mode is not switched, and written with a loud warning
    report = quantize(cnn_path, tmp_path / "q2.onnx", mode="static")
    assert len(report.attempts) == 1 and any("2.00X SLOWER THAN FP32" in w for w in report.warnings)
    assert (tmp_path / "q2.onnx").exists()


def test_a_noisy_slower_figure_never_refuses_and_the_decision_says_it_was_noisy(cnn_path, tmp_path, monkeypatch):
    """Median below 1 but the interval reaches above 1: within noise, so written, and said so."""
    monkeypatch.setattr(qmod, "_measure", lambda *a, **k: _speed(0.9, 0.6, 1.3))
    out = tmp_path / "q.onnx"
    report = quantize(cnn_path, out)
    assert out.exists() and report.noisy and len(report.attempts) == 2
    assert "not beyond the noise (a noisy figure)" in report.decision
    assert any("within the noise" in w for w in report.warnings)
    monkeypatch.setattr(qmod, "_measure", lambda *a, **k: _speed(2.5, 1.5, 3.5))  # faster, but noisy
    report = quantize(cnn_path, tmp_path / "q2.onnx")
    assert report.noisy and "a noisy figure" in report.decision and len(report.attempts) == 1
    assert any("decision to write static was made on a noisy figure" in w for w in report.warnings)


def _relu_add() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"), helper.make_node("Add", ["r", "c"], ["y"], name="add")],
        "relu_add", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [numpy_helper.from_array(np.ones((1, 8), np.float32), "c")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_nothing_to_quantize_writes_nothing_and_exits_1(tmp_path, capsys):
    from onnxdeploy.cli.main import main

    onnx.save(_relu_add(), tmp_path / "ra.onnx")
    out = tmp_path / "ra.int8.onnx"
    for mode in ("auto", "static", "dynamic"):
        with pytest.raises(UnsupportedError, match=r"nothing to quantize: the model has no Conv, .*MatMul, Gemm"):
            quantize(tmp_path / "ra.onnx", out, mode=mode)
    rc = main(["quantize", str(tmp_path / "ra.onnx"), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists() and "Traceback" not in err
    assert "error: nothing to quantize" in err and "(it has Add 1, Relu 1)" in err


def test_everything_excluded_writes_nothing_and_exits_1(cnn_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "q.onnx"
    rc = main(["quantize", str(cnn_path), "-o", str(out), "--exclude-op", "Conv", "--exclude-node", "fc"])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists()
    assert "error: nothing to quantize: every node onnxruntime would quantize (Conv 3, Gemm 1) is excluded" in err
    with pytest.raises(UserInputError, match="is excluded"):
        quantize(cnn_path, out, exclude_nodes=["conv*", "fc"], measure=False)


def test_a_result_with_no_quantized_op_is_refused(tmp_path):
    """A MatMul of two activations has no weight for dynamic quantization: the result would be all float."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], "mm",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4, 8]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [8, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "mm.onnx")
    out = tmp_path / "q.onnx"
    with pytest.raises(UnsupportedError, match="nothing to quantize: dynamic quantization left every op in float "
                                               r"\(of MatMul 1\); nothing written"):
        quantize(tmp_path / "mm.onnx", out, mode="dynamic", measure=False)
    assert not out.exists()


def test_what_counts_as_quantized():
    from onnxdeploy._quantize import quantized_nodes

    def model(nodes, inits=()):
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], list(inits))
        return helper.make_model(graph)

    w8 = numpy_helper.from_array(np.ones((4, 4), np.int8), "w8")
    qdq_add = model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                     helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
                     helper.make_node("Add", ["d", "d"], ["y"])])
    assert quantized_nodes(qdq_add) == {}  # Q/DQ around an Add alone: not an int8 model
    qdq_mm = model([helper.make_node("DequantizeLinear", ["w8", "s"], ["w"]),
                    helper.make_node("MatMul", ["x", "w"], ["y"])], [w8])
    assert quantized_nodes(qdq_mm) == {"MatMul": 1}
    integer = model([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"]),
                     helper.make_node("MatMulInteger", ["q", "w8", "z"], ["i"]),
                     helper.make_node("MatMulNBits", ["x", "w8", "s"], ["y"], domain="com.microsoft")], [w8])
    assert quantized_nodes(integer) == {"MatMulInteger": 1, "MatMulNBits": 1}


class _Clock:
    """A fake clock that sessions advance by how long they 'take'."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_quantize_speedup_agrees_with_bench_on_the_same_files(cnn_path, tmp_path, monkeypatch):
    """Same timer, same estimator: with sessions that take 10 ms (fp32) and 4 ms (int8), +-20% jitter per run,
    quantize's speedup and `bench fp32 int8` agree (on a fake clock: deterministic)."""
    import onnxdeploy._bench as bench_mod
    import onnxdeploy._run as run_mod
    from onnxdeploy._bench import bench
    from onnxdeploy._quantize import quantized_nodes

    clock, rng, real = _Clock(), np.random.default_rng(0), run_mod.create_session
    monkeypatch.setattr(bench_mod, "clock", clock)

    class Timed:
        def __init__(self, session, cost):
            self._session, self._cost = session, cost

        def __getattr__(self, name):
            return getattr(self._session, name)

        def run(self, names, feeds, *options):
            clock.t += self._cost * rng.uniform(0.8, 1.2)
            return self._session.run(names, feeds, *options)

    def create_session(model, **kwargs):
        quantized = bool(quantized_nodes(onnx.load(str(model), load_external_data=False)))
        return Timed(real(model, **kwargs), 0.004 if quantized else 0.010)

    monkeypatch.setattr(run_mod, "create_session", create_session)
    out = tmp_path / "q.onnx"
    report = quantize(cnn_path, out)
    benched = bench([cnn_path, out]).results[1]
    assert not report.noisy and not benched.vs_first.noisy
    assert report.speedup == pytest.approx(2.5, rel=0.10) and benched.speedup == pytest.approx(2.5, rel=0.10)
    assert report.speedup == pytest.approx(benched.speedup, rel=0.10)


def test_input_model_is_not_modified(cnn_path, tmp_path):
    before = cnn_path.read_bytes()
    quantize(onnx.load(cnn_path), tmp_path / "q.onnx", measure=False)
    assert cnn_path.read_bytes() == before
    with pytest.raises(UserInputError, match="overwrite the input"):
        quantize(cnn_path, cnn_path, measure=False)


def test_cli_json_and_errors(cnn_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "q.onnx"
    rc = main(["quantize", str(cnn_path), "-o", str(out), "--no-measure", "--json", "--samples", "4"])
    assert rc == 0 and out.exists()
    data = json.loads(capsys.readouterr().out)
    assert data["mode"] == "static" and data["calibration_samples"] == 4 and data["cosine"] >= 0.99
    rc = main(["quantize", str(cnn_path), "-o", str(tmp_path / "x.onnx"), "--exclude-op", "Conf", "--no-measure"])
    captured = capsys.readouterr()
    assert rc == 1 and "error: --exclude-op 'Conf'" in captured.err and "Traceback" not in captured.err
    rc = main(["quantize", str(cnn_path), "-o", str(tmp_path / "y.onnx"), "--no-measure", "--min-cosine", "1.5"])
    assert rc == 3 and not (tmp_path / "y.onnx").exists()


# ------------------------------------------------------------------ regressions found on foreign models


def _positions_model(table: int = 16) -> onnx.ModelProto:
    """Token + position embeddings (a position table of ``table`` rows, like max_position_embeddings) and a MatMul."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((50, 8)).astype(np.float32), "tok"),
             numpy_helper.from_array(rng.standard_normal((table, 8)).astype(np.float32), "pos"),
             numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array(0, np.int64), "zero"), numpy_helper.from_array(np.array(1, np.int64), "one")]
    nodes = [helper.make_node("Gather", ["tok", "ids"], ["t"], name="tok_embed"),
             helper.make_node("Shape", ["ids"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "one"], ["seq_len"], name="seq_len", axis=0),
             helper.make_node("Range", ["zero", "seq_len", "one"], ["positions"], name="range"),
             helper.make_node("Gather", ["pos", "positions"], ["p"], name="pos_embed"),
             helper.make_node("Add", ["t", "p"], ["h"], name="add"),
             helper.make_node("MatMul", ["h", "w"], ["out"], name="proj")]
    graph = helper.make_graph(nodes, "pos", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_default_sequence_shrinks_to_what_the_model_runs(tmp_path):
    """A position table of 16 rows fails at the default sequence 128: halve until it runs, and say so."""
    onnx.save(_positions_model(16), tmp_path / "pos.onnx")
    report = quantize(tmp_path / "pos.onnx", tmp_path / "q.onnx", mode="dynamic", measure=False, samples=2)
    assert any("seq=16" in w and "--dim" in w for w in report.warnings), report.warnings
    assert (tmp_path / "q.onnx").exists()


def test_user_dims_are_not_changed_and_failures_name_dim(tmp_path):
    onnx.save(_positions_model(4), tmp_path / "pos.onnx")
    with pytest.raises(UserInputError, match="does not run on synthesized inputs") as err:
        quantize(tmp_path / "pos.onnx", tmp_path / "q.onnx", mode="dynamic", measure=False, samples=2)
    assert "--dim" in err.value.hint and not (tmp_path / "q.onnx").exists()
    report = quantize(tmp_path / "pos.onnx", tmp_path / "q.onnx", mode="dynamic", measure=False, samples=2,
                      dims={"seq": 4})
    assert not any("default sizes" in w for w in report.warnings)


def test_already_quantized_model_is_refused(cnn_path, tmp_path):
    quantize(cnn_path, tmp_path / "q.onnx", mode="static", measure=False)
    with pytest.raises(UserInputError, match=r"already quantized \(DequantizeLinear \d+, QuantizeLinear \d+\)"):
        quantize(tmp_path / "q.onnx", tmp_path / "qq.onnx")
    assert not (tmp_path / "qq.onnx").exists()


def test_float16_model_is_refused(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 4), np.float16), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "fp16",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [2, 4])], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "h.onnx")
    with pytest.raises(UserInputError, match="float16 weights") as err:
        quantize(tmp_path / "h.onnx", tmp_path / "q.onnx")
    assert "float32" in err.value.hint


def test_ir3_model_with_initializers_as_inputs(tmp_path):
    """IR 3 / opset 9 (the ONNX model zoo's old files): initializers listed as inputs, no Q/DQ axis before opset 13."""
    proto = _cnn()
    # the "light" zoo models: weights made by ConstantOfShape from int64 shape initializers (two equal ones)
    keep = [t for t in proto.graph.initializer if t.name not in ("b1", "b2")]
    del proto.graph.initializer[:]
    proto.graph.initializer.extend(keep + [numpy_helper.from_array(np.array([32], np.int64), f"b{i}__SHAPE")
                                           for i in (1, 2)])
    for i in (1, 2):
        proto.graph.node.insert(0, helper.make_node("ConstantOfShape", [f"b{i}__SHAPE"], [f"b{i}"], name=f"cos{i}",
                                                    value=numpy_helper.from_array(np.array([0.1], np.float32))))
    proto.graph.input.extend([helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                              for t in proto.graph.initializer])
    proto.ir_version = 3
    proto.opset_import[0].version = 9
    onnx.save(proto, tmp_path / "ir3.onnx")
    report = quantize(tmp_path / "ir3.onnx", tmp_path / "q.onnx", mode="static", measure=False)
    assert report.cosine > 0.99
    assert any("opset 9 converted to 13" in w for w in report.warnings)
    sess = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == [proto.graph.input[0].name]


def test_no_stray_files_in_the_current_directory(tmp_path, monkeypatch):
    """onnxruntime's symbolic shape inference, when it gives up (a Min(64, seq) broadcast), saves
    sym_shape_infer_temp.onnx and a <uuid>.data file into the current directory: the user's folder."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((50, 8)).astype(np.float32), "tok"),
             numpy_helper.from_array(rng.standard_normal((64, 8)).astype(np.float32), "pos"),
             numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([0], np.int64), "zero")]
    nodes = [helper.make_node("Gather", ["tok", "ids"], ["t"], name="tok_embed"),
             helper.make_node("Shape", ["ids"], ["seq_len"], name="shape", start=1, end=2),
             # position_ids[:seq] of a 64-row buffer, like DistilBERT's TorchScript export: Min(64, seq) rows
             helper.make_node("Slice", ["pos", "zero", "seq_len", "zero"], ["p"], name="slice"),
             helper.make_node("Add", ["t", "p"], ["h"], name="add"),
             helper.make_node("MatMul", ["h", "w"], ["out"], name="proj")]
    graph = helper.make_graph(nodes, "pos", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", 8])], inits)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "pos.onnx")
    monkeypatch.chdir(cwd)
    quantize(tmp_path / "pos.onnx", tmp_path / "q.onnx", mode="dynamic", measure=False, samples=2, dims={"seq": 8})
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert Path.cwd() == cwd


def test_output_softmax_stays_float(tmp_path):
    """Zoo classifiers end in Softmax; 8-bit probabilities lose the small ones (a flat vector entirely)."""
    proto = _cnn()
    proto.graph.node.append(helper.make_node("Softmax", ["logits"], ["prob_raw"], name="softmax", axis=1))
    proto.graph.node.append(helper.make_node("Identity", ["prob_raw"], ["prob"], name="to_output"))
    proto.graph.output[0].name = "prob"
    path, out = tmp_path / "cls.onnx", tmp_path / "cls.int8.onnx"
    onnx.save(proto, path)
    report = quantize(path, out, measure=False)
    assert "softmax" in report.excluded_nodes and "softmax" not in _dq_fed_nodes(out)
    assert {"conv0", "conv1", "conv2"} <= _dq_fed_nodes(out)
    assert report.cosine >= 0.99


def test_a_model_over_2gb_is_recognized_as_large():
    """protobuf's ByteSize() raises on a model over 2 GB (it did, with a traceback, on a 2.4 GB model)."""
    from google.protobuf.message import EncodeError

    class Huge:
        def ByteSize(self):  # noqa: N802 - protobuf's name
            raise EncodeError("Failed to serialize proto")

    assert qmod._is_large(Huge()) and not qmod._is_large(_cnn())


def test_onnxruntime_advice_to_preprocess_is_not_printed(cnn_path, tmp_path, monkeypatch, caplog):
    """Where pre-processing cannot run (e.g. a model over 2 GB) onnxruntime logs advice on the root logger; we
    already warn about it in our own words."""
    import logging

    def no_preprocess(src, dst, warnings, **_):
        warnings.append("onnxruntime's quantization pre-processing failed; quantizing the model as given")
        return src

    monkeypatch.setattr(qmod, "_preprocess", no_preprocess)
    handlers = list(logging.getLogger().handlers)
    report = quantize(cnn_path, tmp_path / "q.onnx", measure=False)
    assert not [r for r in caplog.records if "Please consider to run pre-processing" in str(r.msg)]
    assert any("pre-processing failed" in w for w in report.warnings)
    assert logging.getLogger().handlers == handlers  # no stderr handler left behind on the root logger


def _single_op(op: str, opset: int, ir_version: int, out_type=TensorProto.FLOAT, **attrs) -> onnx.ModelProto:
    """``op`` after a MatMul by a weight (something to quantize); IR < 4 lists the weight as an input too."""
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
         helper.make_node(op, ["h"], ["y"], name="op", **attrs)], op.lower(),
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", out_type, None)], [w],
    )
    if ir_version < 4:
        graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4]))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = ir_version
    return proto


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_old_opsets_quantize_where_onnxruntime_rewrote_them_badly(tmp_path, mode):
    """Found by quantizing onnx's backend-data models: an IR 3 model (onnxruntime's calibrator adds initializers
    that IR 3 must list as inputs) and an opset 6 Slice (the opset converter adds initializer inputs)."""
    for name, proto in {"elu": _single_op("Elu", 6, 3),
                        "slice": _single_op("Slice", 6, 3, axes=[0], starts=[0], ends=[1])}.items():
        onnx.save(proto, tmp_path / f"{name}.onnx")
        report = quantize(tmp_path / f"{name}.onnx", tmp_path / f"{name}.q.onnx", mode=mode, measure=False)
        assert report.cosine > 0.99 and report.quantized_nodes == {"MatMulInteger" if mode == "dynamic" else "MatMul": 1}
        sess = ort.InferenceSession(str(tmp_path / f"{name}.q.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["x"]


def test_outputs_that_are_not_numbers_are_not_compared(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["s"], to=TensorProto.STRING, name="to_text"),
         helper.make_node("MatMul", ["x", "w"], ["r"], name="mm")], "text",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("s", TensorProto.STRING, [2, 3]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "text.onnx")
    report = quantize(tmp_path / "text.onnx", tmp_path / "q.onnx", mode="dynamic", measure=False)
    assert [e.name for e in report.outputs] == ["r"]


def test_nan_in_the_fp32_output_is_a_warning_not_a_disagreement(tmp_path):
    """Random inputs outside a model's domain (Sqrt of negatives) give NaN in fp32 and int8 alike."""
    onnx.save(_single_op("Sqrt", 17, 8), tmp_path / "sqrt.onnx")
    report = quantize(tmp_path / "sqrt.onnx", tmp_path / "q.onnx", mode="static", measure=False)
    assert report.cosine > 0.99
    assert any("NaN/inf" in w for w in report.warnings)
    errors = qmod.output_errors([{"y": np.array([1.0, np.nan, 2.0])}], [{"y": np.array([1.0, 3.0, 2.0])}])
    assert not errors[0].passed and errors[0].max_abs == np.inf  # NaN in one model only disagrees
    assert any("NaN" in f for f in errors[0].flags)


def test_a_file_that_needs_no_rewrite_is_read_in_place(cnn_path, tmp_path, monkeypatch):
    """Its weights are never loaded into our process nor copied (a 2.4 GB model: 19 GB peak RSS before, 7 GB)."""
    monkeypatch.setattr(qmod, "_save_tmp", lambda *a: pytest.fail("copied a model that needed no rewrite"))
    loaded = []
    real_as_proto = qmod.as_proto
    monkeypatch.setattr(qmod, "as_proto", lambda m, **k: loaded.append(k) or real_as_proto(m, **k))
    report = quantize(cnn_path, tmp_path / "q.onnx", measure=False)
    assert report.cosine > 0.99 and not any(k.get("load_weights") for k in loaded)


def test_an_in_memory_model_is_not_changed(tmp_path):
    proto = _single_op("Slice", 6, 3, axes=[0], starts=[0], ends=[1])
    before = proto.SerializeToString()
    quantize(proto, tmp_path / "q.onnx", mode="dynamic", measure=False)
    assert proto.SerializeToString() == before


def test_a_relative_path_is_pre_processed(cnn_path, tmp_path, monkeypatch, capfd):
    """onnxruntime's tools run inside our scratch folder: a relative path given by the user must still resolve
    (it did not, and pre-processing and the transformer fusions were silently skipped)."""
    monkeypatch.chdir(cnn_path.parent)
    report = quantize(cnn_path.name, "q.onnx", measure=False)
    assert not any("failed" in w for w in report.warnings), report.warnings
    assert (cnn_path.parent / "q.onnx").exists()
    assert capfd.readouterr().err == ""


def test_dynamic_quantization_of_a_transformer_keeps_its_convolutions_float(tmp_path):
    """A ViT's patch embedding as ConvInteger is slower than in float (ViT-base: 2.06x fp32 with it, 2.71x
    without); a CNN asked for dynamic quantization still gets its convolutions quantized."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), "patch"),
             numpy_helper.from_array(np.array([1, 4, 16], np.int64), "tokens"),
             numpy_helper.from_array((rng.standard_normal((16, 256)) / 4).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((256, 16)) / 16).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "patch"], ["p"], name="patch_embed", strides=[2, 2]),
             helper.make_node("Reshape", ["p", "tokens"], ["t"], name="to_tokens"),
             helper.make_node("MatMul", ["t", "w1"], ["h"], name="fc1"),
             helper.make_node("Relu", ["h"], ["a"], name="act"),
             helper.make_node("MatMul", ["a", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "vitlike", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "vit.onnx")
    assert model_kind(tmp_path / "vit.onnx") == "transformer"
    report = quantize(tmp_path / "vit.onnx", tmp_path / "q.onnx", mode="dynamic", measure=False)
    assert "ConvInteger" not in report.quantized_ops and report.quantized_ops["MatMulInteger"] == 2
    cnn = tmp_path / "cnn.onnx"
    onnx.save(_cnn(), cnn)
    assert "ConvInteger" in quantize(cnn, tmp_path / "c.onnx", mode="dynamic", measure=False).quantized_ops


def test_cli_states_speed_in_words(cnn_path, tmp_path, capsys, monkeypatch):
    import re

    from onnxdeploy.cli.main import main

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(qmod, "_measure", lambda *a, **k: _speed(0.8, 0.6, 1.2))
    assert main(["quantize", str(cnn_path), "-o", str(tmp_path / "q.onnx"), "--mode", "static"]) == 0
    captured = capsys.readouterr()
    assert "1.25x slower (NOISY, ~99% interval 1.67x slower to 1.20x faster, 20 blocks)" in captured.out
    assert "wrote static as asked (--mode static): 1.25x slower than fp32 (a noisy figure" in captured.out
    assert "1.25X SLOWER THAN FP32" in captured.err
    assert not re.search(r"\b\d+\.\d+x\b(?! (faster|slower))", captured.out + captured.err)  # no bare "0.80x"


def test_a_constant_output_is_flagged_not_reported_as_a_perfect_cosine():
    """Issue: a model whose output is constant (all zeros) was reported with cosine 1.00000 and no warning."""
    from onnxdeploy._quantize import output_errors

    zeros = [{"y": np.zeros((2, 8), np.float32)} for _ in range(3)]
    [err] = output_errors(zeros, zeros)
    assert err.cosine != err.cosine  # NaN: cosine says nothing about a constant output
    assert any("constant" in f for f in err.flags) and err.passed
    assert err.to_dict()["cosine"] is None
