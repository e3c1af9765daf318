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

from onnxdeploy import examples, io
from onnxdeploy.cli.main import main
from onnxdeploy.debug import compare, probe, reduce
from onnxdeploy.errors import OutputsDisagree, UserInputError
from onnxdeploy.run import SessionError

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
    data = tmp_path / "ext.onnx.data"
    assert data.exists()
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
    assert by_position.first_divergence.name == "c" and "b" in by_position.unmatched


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
    only = compare(a, b, tensors=["a"])
    assert only.passed and [m.name for m in only.matches] == ["a"]


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


def _export(target: str, path: Path, *, dynamo: bool) -> Path:
    """Export with asinh deliberately mapped to ONNX Sinh (the wrong operator) -- only layers.1 uses asinh."""
    import torch

    from onnxdeploy.torch_target import load_torch_target

    t = load_torch_target(target)
    if dynamo:
        from onnxscript import opset18 as op

        def wrong_asinh(x):
            return op.Sinh(x)

        program = torch.onnx.export(t.module, t.example_inputs, dynamo=True, verbose=False,
                                    custom_translation_table={torch.ops.aten.asinh.default: wrong_asinh})
        program.save(str(path))
    else:
        from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

        register_custom_op_symbolic("aten::asinh", lambda g, x: g.op("Sinh", x), 9)
        try:
            torch.onnx.export(t.module, t.example_inputs, str(path), dynamo=False, opset_version=17)
        finally:
            unregister_custom_op_symbolic("aten::asinh", 9)
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
