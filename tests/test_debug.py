"""probe / compare / reduce: intermediate tensors, model vs model, PyTorch vs ONNX, smallest disagreeing subgraph."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onnxdeploy import examples, _io as io
from onnxdeploy.cli.main import main
from onnxdeploy.debug import compare, probe, reduce
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy._run import SessionError

@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    """Rich tables as a wide terminal prints them (no folded cells), on a fresh console."""
    from onnxdeploy.cli import output

    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setattr(output, "_console", None)
    monkeypatch.setattr(output, "_err_console", None)


CHAIN = """<ir_version: 10, opset_import: ["" : 17]>
chain (float[batch,8] x) => (float[batch,8] y) {
  a = Relu (x)
  b = Asinh (a)
  c = Tanh (b)
  d = Add (c, a)
  y = Neg (d)
}"""


def chain_model(*, wrong: bool = False, rename: bool = False, node_names: bool = True) -> ir.Model:
    text = CHAIN.replace("Asinh", "Sinh") if wrong else CHAIN
    model = ir.from_onnx_text(text)
    for node in model.graph:
        node.name = f"node_{node.outputs[0].name}" if node_names else None
        if rename and not node.outputs[0].is_graph_output():
            node.outputs[0].name = f"renamed_{node.outputs[0].name}"
    return model


@pytest.fixture
def chain_paths(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    io.save(chain_model(), a)
    io.save(chain_model(wrong=True), b)
    return a, b


def _feed(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((3, 8)).astype(np.float32)}


# ---------------------------------------------------------------- probe


def test_probe_captures_every_node_output_in_one_session_file_untouched(chain_paths):
    a, _ = chain_paths
    before = a.read_bytes()
    x = _feed()["x"]
    result = probe(a, inputs={"x": x})
    assert list(result) == ["a", "b", "c", "d", "y"]
    relu = np.maximum(x, 0)
    np.testing.assert_allclose(result["b"], np.arcsinh(relu), rtol=1e-6)
    np.testing.assert_allclose(result["y"], -(np.tanh(np.arcsinh(relu)) + relu), rtol=1e-6)
    assert result.runs == 1
    info = result.info("b")
    assert (info.node, info.op, info.shape, info.dtype) == ("node_b", "Asinh", (3, 8), "float32")
    assert info.min == pytest.approx(float(np.arcsinh(relu).min()))
    assert a.read_bytes() == before


def test_probe_does_not_modify_an_ir_model_passed_in():
    model = chain_model()
    probe(model, tensors=["b"], inputs=_feed())
    assert [v.name for v in model.graph.outputs] == ["y"]
    assert len(model.graph) == 5


def test_probe_symbolic_dims_and_external_data(tmp_path: Path):
    path = tmp_path / "ext.onnx"
    io.save(examples.conv_bn_silu(), path, external_data=True, size_threshold_bytes=0)
    (data,) = tmp_path.glob("ext.onnx*.data")
    before = (path.read_bytes(), data.read_bytes())
    result = probe(path, tensors=["bn_out"], dims={"batch": 2, "height": 5, "width": 7})
    assert result["bn_out"].shape == (2, 32, 5, 7)
    assert (path.read_bytes(), data.read_bytes()) == before


def test_probe_returns_inputs_and_initializers_without_a_run(conv_bn_silu_path):
    from onnx import numpy_helper

    weight = numpy_helper.to_array(next(t for t in onnx.load(conv_bn_silu_path).graph.initializer
                                        if t.name == "conv.weight"))
    result = probe(conv_bn_silu_path, tensors=["conv.weight", "input", "bn_out"], dims={"height": 4, "width": 4})
    np.testing.assert_array_equal(result["conv.weight"], weight)
    assert result["input"].shape == (1, 3, 4, 4) and result["bn_out"].shape == (1, 32, 4, 4)
    assert [i.run for i in result.infos] == [0, 0, 1]


def test_probe_any_dtype():
    model = ir.from_onnx_text("""<ir_version: 10, opset_import: ["" : 20]>
    g (float[2,3] x) => (float[2,3] y) {
      h = Cast <to=16> (x)
      s = Cast <to=8> (x)
      i = Cast <to=7> (x)
      k = Greater (x, x)
      y = Cast <to=1> (h)
    }""")
    x = np.array([[1.5, -2.25, 3.0], [0.5, 7.0, -1.0]], np.float32)
    result = probe(model, inputs={"x": x})
    assert str(result["h"].dtype) == "bfloat16"
    np.testing.assert_array_equal(result["h"].astype(np.float32), x)
    assert result["s"].dtype == object and result["s"][0, 0] == "1.5"
    assert result["i"].dtype == np.int64 and result["k"].dtype == np.bool_
    assert result.info("h").max == 7.0


def test_probe_max_memory_runs_in_bounded_batches_and_streams_npz(tmp_path: Path):
    model = chain_model()
    out = tmp_path / "dump.npz"
    feeds = {"x": np.ones((4, 8), np.float32)}  # each tensor 128 bytes
    result = probe(model, inputs=feeds, max_memory=256, out=out)
    assert result.runs == 3
    assert len(result) == 0  # streamed to disk, not kept
    assert [i.run for i in result.infos] == [1, 1, 2, 2, 3]
    whole = probe(model, inputs=feeds)
    with np.load(out) as dump:
        assert sorted(dump.files) == sorted(whole)
        for name in whole:
            np.testing.assert_array_equal(dump[name], whole[name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump.npz"]  # no temporary left


def test_probe_failed_run_leaves_no_npz(tmp_path: Path):
    out = tmp_path / "dump.npz"
    model = ir.from_onnx_text("""<ir_version: 10, opset_import: ["" : 17]>
    g (float[2,8] x) => (float[5] y) <int64[1] s = {5}> { r = Relu (x)
    y = Reshape (r, s) }""")
    with pytest.raises(SessionError, match="Reshape"):
        probe(model, out=out)  # 16 values cannot become 5
    assert list(tmp_path.iterdir()) == []


IF_MODEL = """<ir_version: 10, opset_import: ["" : 17]>
g (bool cond, float[4] x) => (float[4] y) {
  t = Relu (x)
  r = If (cond) <
    then_branch = then_g () => (float[4] inner_out) { inner_out = Neg (t) },
    else_branch = else_g () => (float[4] other_out) { other_out = Abs (t) }
  >
  y = Exp (r)
}"""


def test_probe_says_why_tensors_inside_if_bodies_are_not_captured():
    model = ir.from_onnx_text(IF_MODEL)
    feeds = {"cond": np.array(True), "x": np.arange(4, dtype=np.float32) - 2}
    result = probe(model, inputs=feeds)
    assert set(result) == {"t", "r", "y"}
    np.testing.assert_allclose(result["r"], -np.maximum(feeds["x"], 0))
    reasons = {s.name: s.reason for s in result.skipped}
    assert set(reasons) == {"inner_out", "other_out"}
    assert "inside the 'then_branch' body of If node" in reasons["inner_out"]
    asked = probe(model, tensors=["inner_out", "t"], inputs=feeds)
    assert list(asked) == ["t"] and asked.skipped[0].name == "inner_out"


def test_probe_unknown_tensor_names_the_closest(chain_paths):
    a, _ = chain_paths
    with pytest.raises(UserInputError, match="no tensor named 'bb'") as err:
        probe(a, tensors=["bb"])
    assert "'b'" in err.value.hint


def test_probe_cli_writes_npz_and_table(chain_paths, tmp_path: Path, capsys):
    a, _ = chain_paths
    out = tmp_path / "dump.npz"
    assert main(["probe", str(a), "--all", "-o", str(out), "--dim", "batch=2"]) == 0
    text = capsys.readouterr().out
    assert "node_b" in text and "Asinh" in text and "2x8" in text
    with np.load(out) as dump:
        assert sorted(dump.files) == ["a", "b", "c", "d", "y"]
    assert main(["probe", str(a), "--tensor", "nope", "-o", str(tmp_path / "x.npz")]) == 1
    err = capsys.readouterr().err
    assert "no tensor named 'nope'" in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()
    assert main(["probe", str(a), "--tensor", "b", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tensors"][0]["name"] == "b" and data["tensors"][0]["shape"] == [1, 8]


def test_probe_max_memory_must_be_a_size(chain_paths, capsys):
    a, _ = chain_paths
    assert main(["probe", str(a), "--max-memory", "lots"]) == 1
    assert "--max-memory: cannot read 'lots' as a size" in capsys.readouterr().err
    assert main(["probe", str(a), "--tensor", "a", "--all"]) == 1
    assert "exclude each other" in capsys.readouterr().err


# ---------------------------------------------------------------- compare


def test_compare_names_the_first_tensor_beyond_tolerance(chain_paths):
    a, b = chain_paths
    result = compare(a, b)
    assert not result.passed
    first = result.first_divergence
    assert (first.name, first.node, first.op) == ("b", "node_b", "Asinh")
    assert [m.name for m in result.matches] == ["a", "b", "c", "d", "y"]
    assert result.matches[0].passed and result.matches[0].diff.max_abs == 0.0
    assert 0.9 < first.diff.cosine < 1.0
    with pytest.raises(OutputsDisagree, match="first divergence: tensor 'b'"):
        compare(a, b, check=True)


def test_compare_matches_renamed_tensors_by_node_then_by_position():
    by_node = compare(chain_model(), chain_model(wrong=True, rename=True), inputs=_feed())
    assert {m.how for m in by_node.matches} == {"node", "name"}  # y kept its name
    assert by_node.first_divergence.other == "renamed_b"
    by_position = compare(chain_model(node_names=False), chain_model(wrong=True, rename=True, node_names=False),
                          inputs=_feed())
    # Asinh vs Sinh: a different op at that position is no match; the divergence shows at the next tensor
    assert [(m.name, m.other, m.how) for m in by_position.matches] == [
        ("a", "renamed_a", "position"), ("c", "renamed_c", "position"), ("d", "renamed_d", "position"),
        ("y", "y", "name")]
    assert by_position.first_divergence.name == "c" and "b" in [u.name for u in by_position.unmatched]


def test_compare_models_that_cannot_be_matched():
    other = ir.from_onnx_text("""<ir_version: 10, opset_import: ["" : 17]>
    g (float[batch,8] x) => (float[batch,8] p, float[batch,8] q) { p = Sigmoid (x)
    q = Exp (x) }""")
    with pytest.raises(UserInputError, match="cannot match any tensor of B to A"):
        compare(chain_model(), other, inputs=_feed())
    with pytest.raises(UserInputError, match="needs a second model"):
        compare(chain_model())


def test_compare_unknown_tensor_and_tensor_subset(chain_paths):
    a, b = chain_paths
    with pytest.raises(UserInputError, match="no tensor named 'cc'"):
        compare(a, b, tensors=["cc"])
    only = compare(a, b, tensors=["a"])  # --tensor limits the intermediates shown, never the verdict
    assert [m.name for m in only.matches] == ["a"] and only.matches[0].passed
    assert not only.passed and only.first_divergence is None
    assert only.summary().startswith("outputs differ: 'y'")
    assert only.summary().endswith("no matched intermediate tensor differs")


def test_compare_one_model_two_optimization_levels(conv_bn_silu_path, capsys):
    rc = main(["compare", str(conv_bn_silu_path), "--opt-level", "disable", "--opt-level-b", "all",
               "--dim", "height=16", "--dim", "width=16"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "agree" in captured.err and "bn_out" in captured.out


def test_compare_cli_exit_code_and_json(chain_paths, capsys):
    a, b = chain_paths
    assert main(["compare", str(a), str(b)]) == 3
    captured = capsys.readouterr()
    assert "node_b" in captured.out
    assert "first divergence: tensor 'b' (Asinh node 'node_b')" in " ".join(captured.err.split())
    assert main(["compare", str(a), str(b), "--json", "--atol", "1", "--rtol", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and data["first_divergence"] is None and len(data["tensors"]) == 5


# ---------------------------------------------------------------- the verdict comes from the models as they run


def _qdq_conv(tmp_path: Path, name: str, *, axis: int) -> Path:
    """Q/DQ -> Conv -> Q/DQ with per-channel int8 weights (scales differ a lot between channels).

    ``axis`` is the weight DequantizeLinear's axis: 0 (per output channel, what QLinearConv supports) or 1 (per
    input channel). onnxruntime fuses both into QLinearConv and applies the scales per OUTPUT channel: with
    ``axis=1`` the model as it runs computes something else than its graph says. With every tensor exposed as an
    output the fusion cannot happen and the graph's meaning is computed.
    """
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(np.float32(0.02)), "xs"),
             numpy_helper.from_array(np.array(np.uint8(128)), "xz"),
             numpy_helper.from_array(rng.integers(-100, 100, (4, 4, 3, 3)).astype(np.int8), "wq"),
             numpy_helper.from_array(np.array([0.01, 0.1, 0.03, 0.5], np.float32), "ws"),
             numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
             numpy_helper.from_array(np.array(np.float32(0.05)), "ys"),
             numpy_helper.from_array(np.array(np.uint8(128)), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["x_q"], name="q_x"),
             helper.make_node("DequantizeLinear", ["x_q", "xs", "xz"], ["x_dq"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w_dq"], name="dq_w", axis=axis),
             helper.make_node("Conv", ["x_dq", "w_dq"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["conv", "ys", "yz"], ["y_q"], name="q_y"),
             helper.make_node("DequantizeLinear", ["y_q", "ys", "yz"], ["y"], name="dq_y")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    path = tmp_path / f"{name}.onnx"
    io.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9), path)
    return path


def _qdq_inputs() -> dict[str, np.ndarray]:
    # multiples of the input scale within its range: quantizing the input loses nothing
    return {"x": (np.random.default_rng(1).integers(-20, 20, (1, 4, 8, 8)) * 0.02).astype(np.float32)}


def test_compare_int8_model_wrong_as_it_runs_is_a_divergence(tmp_path: Path, capsys):
    """The same int8 model unoptimized (the graph's meaning) vs optimized (fused into QLinearConv, which applies the
    axis-1 scales per output channel): the outputs differ; every intermediate, exposed as an output, agrees."""
    int8 = _qdq_conv(tmp_path, "int8", axis=1)
    result = compare(int8, optimization_level="disable", optimization_level_b="all", inputs=_qdq_inputs())
    assert not result.passed
    assert [d.name for d in result.verdict.failures()] == ["y"] and result.verdict.max_abs > 1
    assert len(result.matches) == 6 and all(m.passed for m in result.matches)  # they could not have told
    assert result.first_divergence is None and "no matched intermediate tensor differs" in result.notes[0]
    with pytest.raises(OutputsDisagree, match="outputs differ: 'y'"):
        result.check()
    npz = tmp_path / "inputs.npz"
    np.savez(npz, **_qdq_inputs())
    assert main(["compare", str(int8), "--opt-level", "disable", "--opt-level-b", "all", "--inputs", str(npz)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "error: outputs differ: 'y'" in err and "Traceback" not in err
    with pytest.raises(UnsupportedError, match="differ only when the models run unmodified"):
        reduce(int8, None, tmp_path / "r.onnx", inputs=_qdq_inputs(), optimization_level="disable",
               optimization_level_b="all")
    assert list(tmp_path.glob("r.*")) == []


def test_compare_int8_model_right_as_it_runs_passes_with_a_note(tmp_path: Path, capsys):
    # axis 0 and axis 1 run as the same fused kernel (same outputs); exposed as outputs, their weights differ
    per_output = _qdq_conv(tmp_path, "axis0", axis=0)
    per_input = _qdq_conv(tmp_path, "axis1", axis=1)
    result = compare(per_output, per_input, inputs=_qdq_inputs())
    assert result.passed and result.verdict.max_abs == 0.0 and result.first_divergence is None
    assert {m.name for m in result.failures()} >= {"conv", "y"}
    assert "intermediate tensors differ" in result.notes[0] and "while the outputs agree" in result.notes[0]
    npz = tmp_path / "inputs.npz"
    np.savez(npz, **_qdq_inputs())
    assert main(["compare", str(per_output), str(per_input), "--inputs", str(npz)]) == 0
    captured = capsys.readouterr()
    assert "note" in captured.out and "differs" not in captured.out and "FIRST" not in captured.out
    assert "1 output agrees (max abs 0;" in captured.err


# ---------------------------------------------------------------- pairing after a rewrite


def test_compare_after_conv_bn_fusion_by_optimize(conv_bn_silu_path, tmp_path: Path, capsys):
    import onnxdeploy

    fused = tmp_path / "fused.onnx"
    io.save(onnxdeploy.optimize(conv_bn_silu_path).model, fused)
    assert "BatchNormalization" not in [n.op_type for n in onnx.load(fused).graph.node]
    dims = {"height": 16, "width": 16}
    result = compare(conv_bn_silu_path, fused, dims=dims)
    assert result.passed and result.failures() == []
    by_name = {m.name: m for m in result.matches}
    assert by_name["bn_out"].other == "bn_out" and "producer changed (BatchNormalization -> Conv)" in \
        by_name["bn_out"].note
    assert "conv_out" in [u.name for u in result.unmatched]
    assert main(["compare", str(conv_bn_silu_path), str(fused), "--dim", "height=16", "--dim", "width=16"]) == 0
    assert "differs" not in capsys.readouterr().out


def test_compare_after_conv_bn_fusion_that_keeps_the_conv_name(conv_bn_silu_path, tmp_path: Path, capsys):
    """A fusion that names the fused Conv's output like A's pre-BN Conv output: same name, another meaning."""
    import onnxdeploy

    fused = io.as_proto(onnxdeploy.optimize(conv_bn_silu_path).model)
    for node in fused.graph.node:  # the fused Conv writes "conv_out"; its consumers read it
        node.output[:] = ["conv_out" if o == "bn_out" else o for o in node.output]
        node.input[:] = ["conv_out" if i == "bn_out" else i for i in node.input]
    path = tmp_path / "fused_conv_name.onnx"
    io.save(fused, path)
    result = compare(conv_bn_silu_path, path, dims={"height": 16, "width": 16})
    assert result.passed and result.failures() == []
    by_name = {m.name: m for m in result.matches}
    assert (by_name["bn_out"].other, by_name["bn_out"].how) == ("conv_out", "value")
    assert "conv_out" not in by_name  # A's pre-BN tensor is not paired with the fused output
    reason = {u.name: u.reason for u in result.unmatched}["conv_out"]
    assert "computed differently (Conv weights" in reason and "holds the values of 'bn_out'" in reason
    assert main(["compare", str(conv_bn_silu_path), str(path), "--dim", "height=16", "--dim", "width=16"]) == 0
    captured = capsys.readouterr()
    assert "differs" not in captured.out and "unmatched: conv_out" in " ".join(captured.err.split())


# ---------------------------------------------------------------- reduce


def test_reduce_bisects_to_the_single_wrong_node(chain_paths, tmp_path: Path, capsys):
    a, b = chain_paths
    out = tmp_path / "repro.onnx"
    result = reduce(a, b, out)
    assert (result.nodes, result.ops, result.output) == (1, ["Asinh"], "b")
    assert result.inputs == ["a"] and result.original_nodes == 5
    repro = onnx.load(out)
    onnx.checker.check_model(repro, full_check=True)
    assert [n.op_type for n in onnx.load(result.path_b).graph.node] == ["Sinh"]
    with np.load(result.inputs_path) as feeds:
        assert feeds["a"].min() >= 0  # the Relu output, as the reference computed it
    assert main(["compare", str(out), str(result.path_b), "--inputs", str(result.inputs_path)]) == 3
    capsys.readouterr()


def test_reduce_keeps_enough_context_when_single_nodes_agree(tmp_path: Path):
    # B computes exp(x)*exp(x) as exp(2x) - 0.01: A is cut at its agreeing Exp output, B needs its chain from x
    text_a = """<ir_version: 10, opset_import: ["" : 17]>
    g (float[6] x) => (float[6] y) { e = Exp (x)
    m = Mul (e, e)
    y = Identity (m) }"""
    text_b = """<ir_version: 10, opset_import: ["" : 17]>
    g (float[6] x) => (float[6] y) { e = Exp (x)
    two = Constant <value = float {2.0}> ()
    x2 = Mul (x, two)
    m0 = Exp (x2)
    eps = Constant <value = float {0.01}> ()
    m = Sub (m0, eps)
    y = Identity (m) }"""
    out = tmp_path / "r.onnx"
    result = reduce(ir.from_onnx_text(text_a), ir.from_onnx_text(text_b), out, inputs={"x": np.ones(6, np.float32)})
    assert result.output == "m"
    assert result.inputs == ["e", "x"]  # A's side is cut at its agreeing Exp output; B's needs x
    assert [n.op_type for n in onnx.load(out.with_name("r.b.onnx")).graph.node][-1] == "Sub"


def test_reduce_refuses_models_that_agree(chain_paths, tmp_path: Path):
    a, _ = chain_paths
    with pytest.raises(UserInputError, match="agree within tolerance"):
        reduce(a, a, tmp_path / "r.onnx")
    assert list(tmp_path.glob("r.*")) == []


# ---------------------------------------------------------------- PyTorch vs ONNX

TARGET = textwrap.dedent("""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, asinh=False):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.asinh = asinh

        def forward(self, x):
            y = self.lin(x)
            return torch.asinh(y) * 3 if self.asinh else torch.tanh(y)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([Block(i == 1) for i in range(3)])
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.head(x)

    def make():
        torch.manual_seed(0)
        return Net().eval(), (torch.randn(2, 8),)
""")


@pytest.fixture
def torch_target(tmp_path: Path) -> str:
    pytest.importorskip("torch")
    path = tmp_path / "net.py"
    path.write_text(TARGET)
    return f"{path}:make"


def _export(target: str, path: Path, *, dynamo: bool, wrong_asinh: bool = True) -> Path:
    """Export the target; ``wrong_asinh`` maps asinh deliberately to ONNX Sinh (the wrong operator) -- only
    layers.1 of TARGET uses asinh."""
    import contextlib

    import torch

    from onnxdeploy._torch_target import load_torch_target

    t = load_torch_target(target)
    if dynamo:
        from onnxscript import opset18 as op

        def sinh(x):
            return op.Sinh(x)

        table = {torch.ops.aten.asinh.default: sinh} if wrong_asinh else None
        torch.onnx.export(t.module, t.example_inputs, dynamo=True, verbose=False,
                          custom_translation_table=table).save(str(path))
        return path
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    with contextlib.ExitStack() as stack:
        if wrong_asinh:
            register_custom_op_symbolic("aten::asinh", lambda g, x: g.op("Sinh", x), 9)
            stack.callback(unregister_custom_op_symbolic, "aten::asinh", 9)
        torch.onnx.export(t.module, t.example_inputs, str(path), dynamo=False, opset_version=17)
    return path


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_torch_vs_onnx_reports_the_first_diverging_module(torch_target, tmp_path: Path, dynamo: bool, capsys):
    onnx_path = _export(torch_target, tmp_path / "net.onnx", dynamo=dynamo)
    result = compare(torch_target, onnx_path)
    assert result.kind == "torch"
    first = result.first_divergence
    assert first.name == "layers.1" and first.op == "Mul"
    assert [m.name for m in result.matches][:3] == ["layers.0.lin", "layers.0", "layers.1.lin"]
    assert all(m.passed for m in result.matches[:3])
    assert main(["compare", torch_target, str(onnx_path)]) == 3
    captured = capsys.readouterr()
    assert "first divergence: module 'layers.1'" in " ".join(captured.err.split())


SHARED_AND_INPLACE = textwrap.dedent("""
    import torch
    from torch import nn

    class Shared(nn.Module):
        # one layer called twice (weight sharing, as ALBERT's layers)
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(8, 8)
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            y = torch.tanh(self.layer(x))
            y = torch.tanh(self.layer(y))
            return self.head(y)

    class Residual(nn.Module):
        # an in-place residual add on a submodule's output (as transformers' ResNet blocks)
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(8, 8)
            self.act = nn.ReLU()

        def forward(self, x):
            y = self.lin(x)
            y += x
            return self.act(y)

    def shared():
        torch.manual_seed(0)
        return Shared().eval(), (torch.randn(2, 8),)

    def residual():
        torch.manual_seed(0)
        return Residual().eval(), (torch.randn(2, 8),)
""")


@pytest.fixture
def shared_inplace_file(tmp_path: Path) -> Path:
    pytest.importorskip("torch")
    path = tmp_path / "nets.py"
    path.write_text(SHARED_AND_INPLACE)
    return path


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_torch_vs_onnx_module_called_twice_is_a_row_per_call(shared_inplace_file, tmp_path: Path, dynamo: bool,
                                                            capsys):
    target = f"{shared_inplace_file}:shared"
    onnx_path = _export(target, tmp_path / "shared.onnx", dynamo=dynamo, wrong_asinh=False)
    result = compare(target, onnx_path)
    assert result.passed and result.failures() == [], result.summary()
    rows = {m.name: m for m in result.matches}
    assert [m.name for m in result.matches if m.name.startswith("layer")] == ["layer#0", "layer#1"]
    first, second = (onnx.load(onnx_path).graph.node[k].output[0] for k in (0, 2))  # Gemm, Tanh, Gemm, Tanh, Gemm
    assert (rows["layer#0"].other, rows["layer#1"].other) == (first, second)  # in call order
    assert main(["compare", target, str(onnx_path)]) == 0
    assert "layer#1" in capsys.readouterr().out


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_torch_vs_onnx_in_place_residual_keeps_what_was_captured(shared_inplace_file, tmp_path: Path, dynamo: bool):
    target = f"{shared_inplace_file}:residual"
    onnx_path = _export(target, tmp_path / "residual.onnx", dynamo=dynamo, wrong_asinh=False)
    result = compare(target, onnx_path)
    assert result.passed and result.failures() == [], result.summary()
    assert {"lin", "act"} <= {m.name for m in result.matches}
    assert main(["compare", target, str(onnx_path)]) == 0


def test_torch_vs_onnx_without_exporter_metadata(torch_target, conv_bn_silu_path):
    with pytest.raises(UserInputError, match="cannot map the tensors"):
        compare(torch_target, conv_bn_silu_path)
    with pytest.raises(UserInputError, match="--tensor, --outputs-only, --provider-b and --opt-level-b apply to two"):
        compare(torch_target, conv_bn_silu_path, tensors=["values"])
    with pytest.raises(UserInputError, match="needs an ONNX model as the second argument"):
        compare(torch_target)


# ---------------------------------------------------------------- start-up


def test_cli_modules_import_nothing_heavy():
    code = ("import sys; from onnxdeploy.cli import probe, compare, reduce; "
            "print(sorted(m for m in ('onnx_ir', 'onnxruntime', 'torch', 'numpy', 'onnx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"



def test_reduce_fp16_model_against_its_fp32_original(tmp_path: Path):
    """B computes in float16 with float32 inputs/outputs: the repro feeds B's boundary through Casts."""
    a = ir.from_onnx_text("""
        <ir_version: 10, opset_import: ["" : 17]>
        agraph (float[4, 8] x) => (float[4, 8] y) <float two = {2.0}, float one = {1.0}> {
            t1 = Mul (x, two)
            t2 = Relu (t1)
            y = Add (t2, one)
        }""")
    b = ir.from_onnx_text("""
        <ir_version: 10, opset_import: ["" : 17]>
        agraph (float[4, 8] x) => (float[4, 8] y) <float two32 = {2.0}, float one32 = {1.5}> {
            x16 = Cast <to=10> (x)
            two = Cast <to=10> (two32)
            one = Cast <to=10> (one32)
            t1 = Mul (x16, two)
            t2 = Relu (t1)
            y16 = Add (t2, one)
            y = Cast <to=1> (y16)
        }""")
    pa, pb = tmp_path / "a.onnx", tmp_path / "b.onnx"
    io.save(a, pa)
    io.save(b, pb)
    result = reduce(pa, pb, tmp_path / "repro.onnx", atol=1e-2, rtol=1e-2)
    sub_b = onnx.load(result.path_b)
    assert [n.op_type for n in sub_b.graph.node][0] == "Cast"
    feeds = dict(np.load(result.inputs_path))
    import onnxruntime as ort

    out_b = ort.InferenceSession(str(result.path_b)).run(None, feeds)[0]
    out_a = ort.InferenceSession(str(result.path)).run(None, feeds)[0]
    assert np.abs(out_b.astype(np.float32) - out_a).max() > 0.4
