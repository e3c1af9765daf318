"""Tests of onnxdeploy._export: named dynamic dims, parity, custom operator mappings, unsupported-op report, CLI."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnxdeploy.errors import OutputsDisagree, UserInputError  # noqa: E402
from onnxdeploy._export import OpMapping, UnsupportedOperators, export  # noqa: E402
from onnxdeploy._run import run  # noqa: E402

BOTH = ["dynamo", "torchscript"]
DYN = {"input": {0: "batch", 2: "height", 3: "width"}}


class ConvBnSiLU(torch.nn.Module):
    """The seed article's module: Conv2d(3->32, k3, pad1) + BatchNorm2d + SiLU."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(32)
        self.act = torch.nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


@torch.library.custom_op("onnxdeploy_test::my_asinh", mutates_args=())
def my_asinh(x: torch.Tensor) -> torch.Tensor:
    return torch.asinh(x)


@my_asinh.register_fake
def _(x):
    return torch.empty_like(x)


class Body(torch.nn.Module):
    def forward(self, x):
        return torch.ops.onnxdeploy_test.my_asinh(x)


class AsinhModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Body()

    def forward(self, x):
        return self.body(x) * 2


def dims_of(path, which="input"):
    proto = onnx.load(path)
    value = (proto.graph.input if which == "input" else proto.graph.output)[0]
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


@pytest.mark.parametrize("exporter", BOTH)
def test_article_module_dynamic_dims_and_parity(tmp_path, exporter):
    torch.manual_seed(0)
    model = ConvBnSiLU().eval()
    out = tmp_path / "m.onnx"
    report = export(model, (torch.randn(5, 3, 64, 64),), out, input_names=["input"], output_names=["values"],
                    dynamic=DYN, exporter=exporter)
    assert report.exporter == exporter
    assert dims_of(out) == ["batch", 3, "height", "width"]
    assert dims_of(out, "output")[:2] == ["batch", 32]
    assert report.input_names == ["input"] and report.output_names == ["values"]
    assert len(report.parity) == 2 and all(c.passed for c in report.parity)
    assert "2x3x32x32" in report.parity[1].label
    # the file runs at yet another shape and matches PyTorch
    x = torch.randn(1, 3, 20, 28)
    got = run(out, {"input": x.numpy()})["values"]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=1e-4, rtol=1e-3)
    d = report.to_dict()
    assert d["exporter"] == exporter and d["dynamic_dims"]["input"] == {"0": "batch", "2": "height", "3": "width"}
    assert set(d["seconds"]) >= {"convert", "verify", "save"}


@pytest.mark.slow
def test_article_module_at_640(tmp_path):
    report = export(ConvBnSiLU().eval(), (torch.randn(5, 3, 640, 640),), tmp_path / "m.onnx", input_names=["input"],
                    output_names=["values"], dynamic=DYN, exporter="dynamo")
    assert "5x3x640x640" in report.parity[0].label and report.passed
    assert "2x3x128x128" in report.parity[1].label  # the second shape is small: it costs little next to the first


def test_second_shape_sizes():
    from onnxdeploy._export import _other_value

    assert [_other_value(v) for v in (1, 3, 5, 64, 128, 224, 256, 300, 448, 512, 640)] == [
        2, 4, 2, 32, 64, 112, 64, 72, 64, 128, 128]


def test_wrong_dynamic_key_is_an_error_naming_real_names(tmp_path):
    out = tmp_path / "m.onnx"
    with pytest.raises(UserInputError, match=r"'in', which is neither an input nor an output.*inputs: input; "
                                             r"outputs: values") as info:
        export(ConvBnSiLU().eval(), (torch.randn(1, 3, 8, 8),), out, input_names=["input"], output_names=["values"],
               dynamic={"in": {2: "height", 3: "width"}})
    assert "did you mean 'input'" in info.value.hint
    assert not out.exists()


def test_dim_index_out_of_range(tmp_path):
    with pytest.raises(UserInputError, match="rank 4"):
        export(ConvBnSiLU().eval(), (torch.randn(1, 3, 8, 8),), None, input_names=["input"], dynamic={"input": {5: "x"}})


class Specializes(torch.nn.Module):
    def forward(self, x):
        return x + torch.ones(2, 8)


def test_specialized_dim_names_dim_and_code_dynamo():
    with pytest.raises(UserInputError, match=r"dim batch \(x:0\) cannot be dynamic: the model specialized it to 2 "
                                             r"at .*torch.ones\(2, 8\)"):
        export(Specializes(), (torch.randn(2, 8),), None, dynamic={"x": {0: "batch"}}, exporter="dynamo")


def test_specialized_dim_caught_by_second_shape_torchscript():
    with pytest.raises(UserInputError, match=r"PyTorch cannot run the model at the second shape \(x=3x8\), so dims "
                                             r"batch are not really dynamic"):
        export(Specializes(), (torch.randn(2, 8),), None, dynamic={"x": {0: "batch"}}, exporter="torchscript")


@pytest.mark.parametrize("exporter", BOTH)
def test_asinh_mapping_one_to_one(tmp_path, exporter):
    out = tmp_path / "asinh.onnx"
    report = export(AsinhModel(), (torch.randn(2, 8),), out, exporter=exporter, dynamic={"x": {0: "batch"}},
                    custom_ops=[OpMapping("onnxdeploy_test::my_asinh", "Asinh")])
    ops = [n.op_type for n in onnx.load(out).graph.node]
    assert "Asinh" in ops and report.passed
    x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(3, 8)
    np.testing.assert_allclose(run(out, {"x": x})["output"], np.arcsinh(x) * 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("exporter", BOTH)
def test_mapping_to_composition(tmp_path, exporter):
    def asinh(g, x):
        return g.op("Log", g.op("Add", x, g.op("Sqrt", g.op("Add", g.op("Mul", x, x), g.const(1.0, like=x)))))

    out = tmp_path / "c.onnx"
    report = export(AsinhModel(), (torch.randn(2, 8),), out, exporter=exporter,
                    custom_ops={"onnxdeploy_test::my_asinh": asinh})
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"Log", "Sqrt", "Add", "Mul"} <= ops and "Asinh" not in ops
    assert report.passed


@pytest.mark.parametrize("exporter", BOTH)
def test_mapping_to_custom_domain(tmp_path, exporter):
    class Gelu(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.gelu(x)

    out = tmp_path / "g.onnx"
    report = export(Gelu(), (torch.randn(2, 8),), out, exporter=exporter,
                    custom_ops=[OpMapping("aten::gelu", "Gelu", domain="com.microsoft")])
    proto = onnx.load(out)
    assert [(n.domain, n.op_type) for n in proto.graph.node] == [("com.microsoft", "Gelu")]
    assert {o.domain: o.version for o in proto.opset_import}["com.microsoft"] == 1
    assert report.passed  # onnxruntime implements com.microsoft::Gelu


def test_register_op_decorator_global_registry(tmp_path):
    from onnxdeploy._export import custom_op, registered_ops
    from onnxdeploy._export_ops import unregister_op

    @custom_op(torch.ops.onnxdeploy_test.my_asinh)
    def asinh(g, x):
        return g.op("Asinh", x)

    try:
        assert any(m.torch_op == "onnxdeploy_test::my_asinh" for m in registered_ops())
        report = export(AsinhModel(), (torch.randn(2, 8),), tmp_path / "a.onnx", exporter="dynamo")
        assert report.passed and report.custom_ops == ["onnxdeploy_test::my_asinh -> asinh()"]
    finally:
        unregister_op("onnxdeploy_test::my_asinh")


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript", "auto"])
def test_unsupported_op_report(tmp_path, exporter):
    out = tmp_path / "u.onnx"
    with pytest.raises(UnsupportedOperators, match=r"cannot convert 1 operator: onnxdeploy_test::my_asinh in body") as info:
        export(AsinhModel(), (torch.randn(2, 8),), out, exporter=exporter)
    err = info.value
    assert [m.op for m in err.ops] == ["onnxdeploy_test::my_asinh"]
    assert err.ops[0].module_path.startswith("body")
    assert "register_op('onnxdeploy_test::my_asinh'" in err.hint
    if exporter != "torchscript":
        assert err.ops[0].location == f"{Path(__file__).name}:{Body.forward.__code__.co_firstlineno + 1}"
    if exporter == "auto":
        assert "torchscript fallback" in err.hint
    assert not out.exists()


def test_auto_falls_back_and_says_why(tmp_path, monkeypatch):
    import onnxdeploy._export as mod

    def broken(*a, **k):
        raise mod._ExportFailed("torch.export", RuntimeError("graph break"))

    monkeypatch.setattr(mod, "_export_dynamo", broken)
    report = export(ConvBnSiLU().eval(), (torch.randn(1, 3, 8, 8),), tmp_path / "m.onnx", exporter="auto")
    assert report.exporter == "torchscript"
    assert "dynamo failed (torch.export failed: RuntimeError: graph break)" in report.exporter_reason


class Drifts(torch.nn.Module):
    """Differs between PyTorch and ONNX: adds a tiny amount only in eager mode."""

    def forward(self, x):
        y = x * 2
        if not torch.onnx.is_in_onnx_export() and not torch.compiler.is_compiling():
            y = y + 0.5
        return y


def test_mismatch_raises_and_writes_nothing(tmp_path):
    out = tmp_path / "d.onnx"
    with pytest.raises(OutputsDisagree, match="no model file was written") as info:
        export(Drifts(), (torch.randn(2, 4),), out, exporter="torchscript")
    assert not out.exists()
    assert info.value.report.parity[0].max_abs == pytest.approx(0.5)
    with pytest.raises(OutputsDisagree, match="kept at"):
        export(Drifts(), (torch.randn(2, 4),), out, exporter="torchscript", keep_on_mismatch=True)
    assert out.exists()


def test_batch_one_example_stays_dynamic(tmp_path):
    """A size-1 example dim is traced at 2 (no 0/1 specialization) and verified at 1 (the example) and 2."""
    out = tmp_path / "m.onnx"
    report = export(ConvBnSiLU().eval(), (torch.randn(1, 3, 16, 16),), out, input_names=["input"],
                    dynamic={"input": {0: "batch"}}, exporter="dynamo")
    assert dims_of(out) == ["batch", 3, 16, 16]
    assert [c.label for c in report.parity] == ["example (input=1x3x16x16)", "other shape (input=2x3x16x16)"]
    assert report.passed and "serialize" in report.seconds


def test_missing_output_folder_fails_before_export(tmp_path):
    with pytest.raises(UserInputError, match="output folder does not exist"):
        export(ConvBnSiLU().eval(), (torch.randn(1, 3, 8, 8),), tmp_path / "nope" / "m.onnx")


def test_no_verify(tmp_path):
    report = export(Drifts(), (torch.randn(2, 4),), tmp_path / "d.onnx", exporter="torchscript", verify=False)
    assert report.parity == [] and not report.verified and (tmp_path / "d.onnx").exists()


def test_wrong_number_of_names():
    with pytest.raises(UserInputError, match="2 output names for 1 outputs"):
        export(ConvBnSiLU().eval(), (torch.randn(1, 3, 8, 8),), None, output_names=["a", "b"])
    with pytest.raises(UserInputError, match="unknown exporter 'onnx'"):
        export(ConvBnSiLU().eval(), (torch.randn(1, 3, 8, 8),), None, exporter="onnx")


# ------------------------------------------------------------------------------------------------ CLI
TARGET = '''
import torch
class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 32, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(32)
        self.act = torch.nn.SiLU()
    def forward(self, x):
        return self.act(self.bn(self.conv(x)))
def build():
    return Model()
'''


def test_cli_export(tmp_path, capsys):
    import json

    from onnxdeploy.cli.main import main

    (tmp_path / "article.py").write_text(TARGET)
    out = tmp_path / "m.onnx"
    rc = main(["export", f"{tmp_path / 'article.py'}:build", "-o", str(out), "--shape", "input=2x3x16x16",
               "--dynamic", "input:0=batch,2=height,3=width", "--output-names", "values", "--json"])
    assert rc in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and data["input_names"] == ["input"] and data["output_names"] == ["values"]
    assert dims_of(out) == ["batch", 3, "height", "width"]


def test_cli_wrong_dynamic_key(tmp_path, capsys):
    from onnxdeploy.cli.main import main

    (tmp_path / "article.py").write_text(TARGET)
    rc = main(["export", f"{tmp_path / 'article.py'}:build", "-o", str(tmp_path / "m.onnx"), "--input",
               "input=1x3x8x8", "--dynamic", "in:2=height"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "'in', which is neither an input nor an output" in err and "did you mean 'input'" in err
    assert not (tmp_path / "m.onnx").exists()


def test_cli_needs_shapes(tmp_path, capsys):
    from onnxdeploy.cli.main import main

    (tmp_path / "article.py").write_text(TARGET)
    rc = main(["export", f"{tmp_path / 'article.py'}:build", "-o", str(tmp_path / "m.onnx")])
    assert rc == 1 and "--shape x=1x3x224x224[:dtype]" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ typed inputs
LM_TARGET = '''
import torch
class LM(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)
        self.lin = torch.nn.Linear(8, 4)
    def forward(self, tokens):
        return self.lin(self.emb(tokens))
def build():
    torch.manual_seed(0)
    return LM()
'''


def test_typed_shape_parser():
    from onnxdeploy.cli.common import parse_typed_shape, parse_typed_shapes

    assert parse_typed_shape("4x32:int64", option="--shape") == ([4, 32], "int64")
    assert parse_typed_shape("1x3x224x224", option="--shape") == ([1, 3, 224, 224], None)
    assert parse_typed_shapes(["tokens=4x32:long", "x=1x3"], option="--shape") == {
        "tokens": ([4, 32], "int64"), "x": ([1, 3], None)}
    assert parse_typed_shapes(["input:1x3x8x8,mask:1x8:bool"], option="--shapes") == {  # trtexec's spelling
        "input": ([1, 3, 8, 8], None), "mask": ([1, 8], "bool")}
    with pytest.raises(UserInputError, match="unknown dtype 'int46'"):
        parse_typed_shape("4x32:int46", option="--shape")


def test_random_inputs_dtypes_and_safe_integer_range():
    from onnxdeploy._export import random_inputs

    emb = torch.nn.Sequential(torch.nn.Embedding(10, 4))
    made = random_inputs({"tokens": ([64, 32], "int64"), "x": [2, 3], "mask": ([2, 5], "bool")}, module=emb)
    assert list(made) == ["tokens", "x", "mask"]
    assert made["tokens"].dtype == torch.int64 and made["tokens"].shape == (64, 32)
    assert int(made["tokens"].min()) >= 0 and int(made["tokens"].max()) < 10  # inside the embedding table
    assert made["x"].dtype == torch.float32 and made["mask"].dtype == torch.bool
    big = random_inputs({"ids": ([1000], "int32")})
    assert big["ids"].dtype == torch.int32 and 0 <= int(big["ids"].min()) and int(big["ids"].max()) < 100


def test_cli_integer_inputs_from_typed_shape(tmp_path, capsys):
    import json

    from onnxdeploy.cli.main import main

    (tmp_path / "lm.py").write_text(LM_TARGET)
    out = tmp_path / "lm.onnx"
    rc = main(["export", f"{tmp_path / 'lm.py'}:build", "-o", str(out), "--shape", "tokens=4x32:int64",
               "--dynamic", "tokens:0=batch,1=sequence", "--json"])
    assert rc in (0, None)
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] and len(data["parity"]) == 2
    assert data["output_dims"] == {"output": ["batch", "sequence", 4]}
    proto = onnx.load(out)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT64
    assert dims_of(out) == ["batch", "sequence"]


def test_cli_float_shape_for_token_model_is_one_line_error(tmp_path):
    import subprocess

    (tmp_path / "lm.py").write_text(LM_TARGET)
    exe = Path(sys.executable).with_name("onnxdeploy")
    proc = subprocess.run([str(exe), "export", f"{tmp_path / 'lm.py'}:build", "-o", str(tmp_path / "lm.onnx"),
                           "--input", "tokens=4x32"], capture_output=True, text=True,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr
    # the old spelling still works, with a note naming the new flag
    assert any("--input NAME=SHAPE is now --shape" in ln for ln in lines)
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and "float example input tokens" in errors[0] and "integers" in errors[0]
    assert any(ln.startswith("hint:") and "--shape tokens=4x32:int64" in ln for ln in lines)
    assert not (tmp_path / "lm.onnx").exists()


def test_cli_module_only_token_model_hint_names_int64(tmp_path, capsys):
    from onnxdeploy.cli.main import main

    (tmp_path / "lm.py").write_text(LM_TARGET)
    rc = main(["export", f"{tmp_path / 'lm.py'}:build", "-o", str(tmp_path / "lm.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and "returned only a module" in err and "--shape tokens=1x16:int64" in err


def test_api_float_example_for_embedding_model():
    model = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 4)).eval()
    with pytest.raises(UserInputError, match="float example input input") as info:
        export(model, (torch.randn(4, 32),), None, input_names=["input"])
    assert "--shape input=4x32:int64" in info.value.hint


# ------------------------------------------------------------------------------------------------ output dim names
class PastAndNew(torch.nn.Module):
    def forward(self, past, x):
        y = torch.cat([past, x], dim=1)
        return y * 2, y.sum(-1, keepdim=True), x + 1


def test_output_dims_get_consistent_names_from_input_dims(tmp_path):
    out = tmp_path / "m.onnx"
    report = export(PastAndNew(), (torch.randn(2, 5, 4), torch.randn(2, 3, 4)), out, input_names=["past", "x"],
                    output_names=["a", "b", "c"], exporter="dynamo",
                    dynamic={"past": {0: "batch", 1: "past_sequence"}, "x": {0: "batch", 1: "sequence"}})
    assert report.output_dims == {"a": ["batch", "past_sequence + sequence", 4],
                                  "b": ["batch", "past_sequence + sequence", 1],
                                  "c": ["batch", "sequence", 4]}
    proto = onnx.load(out)
    written = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.output}
    assert written["a"][1] == written["b"][1] == "past_sequence + sequence"
    inner = {d.dim_param for v in proto.graph.value_info for d in v.type.tensor_type.shape.dim if d.dim_param}
    assert not any(re.search(r"\bs\d+\b", d) for d in inner), inner  # no raw torch symbol left anywhere


def test_dim_namer_canonical_order_and_unnamed_symbols():
    from onnxdeploy._export import _DimNamer

    namer = _DimNamer({"s15": "past_sequence", "s95": "past_sequence", "s70": "sequence"})
    assert namer("s15 + s70") == namer("s70 + s95") == "past_sequence + sequence"
    assert namer("2*s70") == "2*sequence"
    assert namer("u0") == "dim_0" and namer("u0 + s70") == "dim_0 + sequence" and namer("u1") == "dim_1"
    assert namer("batch") == "batch" and namer("Add_dim_0") == "Add_dim_0"  # names the exporter did not take from torch


def test_import_without_torch(tmp_path):
    import subprocess

    code = ("import sys; sys.modules['torch'] = None\n"
            "import onnxdeploy._export as e\n"
            "try:\n    e.export(object(), (), None)\nexcept Exception as err:\n"
            "    print(type(err).__name__, err.hint)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "MissingDependencyError pip install 'onnxdeploy[torch]'" in proc.stdout, proc.stderr


# ------------------------------------------------------------------------------------------------ real architectures
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


@pytest.mark.slow
@pytest.mark.parametrize("exporter", BOTH)
@pytest.mark.parametrize("arch", ["resnet50", "vit", "bert", "gpt2"])
def test_transformers_models(tmp_path, arch, exporter):
    corpus = pytest.importorskip("corpus")
    pytest.importorskip("transformers")
    model, inputs, names = corpus.build(arch, tiny=arch != "resnet50", batch=2)
    dynamic = {n: corpus.DYNAMIC[n] for n in names}
    if arch == "vit":
        dynamic = {"pixel_values": {0: "batch"}}
    if arch == "gpt2" and exporter == "torchscript":
        # transformers 5 builds GPT-2's causal mask with aten::diff, which the TorchScript exporter cannot convert:
        # the report must say so (PyTorch cannot export this one with TorchScript).
        with pytest.raises(UnsupportedOperators, match="aten::diff"):
            export(model, inputs, tmp_path / f"{arch}.onnx", input_names=names, output_names=["output"],
                   dynamic=dynamic, exporter=exporter)
        return
    report = export(model, inputs, tmp_path / f"{arch}.onnx", input_names=names, output_names=["output"],
                    dynamic=dynamic, exporter=exporter, atol=1e-3, rtol=1e-2)
    assert report.passed and len(report.parity) == 2


@pytest.mark.slow
def test_bert_dynamic_batch_and_sequence(tmp_path):
    """Tiny BERT from a config, batch-1 example: batch and sequence stay symbolic, parity at two shapes and beyond."""
    corpus = pytest.importorskip("corpus")
    pytest.importorskip("transformers")
    model, inputs, names = corpus.build("bert", tiny=True)  # batch 1, 16 tokens; max_position_embeddings 128
    assert tuple(inputs[0].shape) == (1, 16)
    out = tmp_path / "bert.onnx"
    report = export(model, inputs, out, input_names=names, output_names=["output"],
                    dynamic={n: corpus.DYNAMIC[n] for n in names}, exporter="dynamo", atol=1e-3, rtol=1e-2)
    assert report.passed and len(report.parity) == 2
    assert "input_ids=1x16" in report.parity[0].label and "input_ids=2x8" in report.parity[1].label
    assert dims_of(out) == ["batch", "sequence"]
    assert dims_of(out, "output")[:2] == ["batch", "sequence"]
    ids = torch.randint(0, 1000, (3, 40))
    mask = torch.ones(3, 40, dtype=torch.int64)
    got = run(out, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})["output"]
    with torch.no_grad():
        want = model(ids, mask).numpy()
    np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-2)


@pytest.mark.slow
def test_corpus_models_are_dynamic(tmp_path):
    corpus = pytest.importorskip("corpus")
    pytest.importorskip("transformers")
    path = corpus.export_corpus_model("gpt2", tmp_path, tiny=True)
    assert dims_of(path) == ["batch", "sequence"]
    static = corpus.export_corpus_model("gpt2", tmp_path, tiny=True, dynamic=False)
    assert static != path and dims_of(static) == [1, 16]
