"""Targets: support checks on models with known unsupported ops, conversions that match onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import examples
from onnxdeploy.errors import OutputsDisagree, UnsupportedError, UserInputError
from onnxdeploy.targets import TARGETS, check, convert, get_target, run_artifact


def _model(nodes, inputs, outputs, *, opset=17, inits=(), extra_opsets=()):
    g = helper.make_graph(nodes, "m", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])
    return m


def _vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


@pytest.fixture
def custom_op_path(tmp_path: Path) -> Path:
    m = _model([helper.make_node("FooBar", ["x"], ["y"], name="foo0", domain="my.dom")], [_vi("x", [2, 3])],
               [_vi("y", [2, 3])], extra_opsets=[helper.make_opsetid("my.dom", 1)])
    path = tmp_path / "custom.onnx"
    onnx.save(m, path)
    return path


@pytest.fixture
def det_path(tmp_path: Path) -> Path:
    m = _model([helper.make_node("Det", ["x"], ["y"], name="det0")], [_vi("x", [3, 3])], [_vi("y", [])])
    path = tmp_path / "det.onnx"
    onnx.save(m, path)
    return path


@pytest.fixture
def ascend_path(tmp_path: Path) -> Path:
    """Gelu (opset 20, not in ATC's list), Det (no rule), an int64 input and an int64 Gather index constant."""
    nodes = [helper.make_node("Gelu", ["x"], ["g"], name="gelu"),
             helper.make_node("Gather", ["g", "idx"], ["gath"], name="gather", axis=1),
             helper.make_node("Cast", ["ids"], ["idsf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["gath", "idsf"], ["y"], name="add"),
             helper.make_node("Det", ["sq"], ["d"], name="det")]
    m = _model(nodes, [_vi("x", [2, 4]), _vi("ids", [2, 2], TensorProto.INT64), _vi("sq", [3, 3])],
               [_vi("y", [2, 2]), _vi("d", [])], opset=20,
               inits=[numpy_helper.from_array(np.array([0, 3], dtype=np.int64), "idx")])
    onnx.checker.check_model(m, full_check=True)
    path = tmp_path / "ascend.onnx"
    onnx.save(m, path)
    return path


def test_every_target_resolves_and_describes_itself():
    for name in TARGETS:
        info = get_target(name).info()
        assert info["name"] == name and info["opsets"][0] <= info["opsets"][1]


def test_unknown_target_names_the_closest():
    with pytest.raises(UserInputError, match="unknown target 'openvno'") as err:
        get_target("openvno")
    assert "openvino" in err.value.hint


@pytest.mark.parametrize("target", ["onnxruntime", "ort-mobile", "tensorrt", "ascend"])
def test_custom_domain_op_is_unsupported_everywhere(custom_op_path, target):
    report = check(custom_op_path, target)
    assert not report.supported
    ops = [p for p in report.problems if p.kind == "op"]
    assert ops[0].what == "my.dom::FooBar" and ops[0].nodes == ["foo0"] and ops[0].fix is None


def test_openvino_reports_what_its_frontend_cannot_convert(det_path):
    report = check(det_path, "openvino")
    assert [(p.what, p.nodes) for p in report.problems] == [("Det", ["det0"])]


def test_tensorrt_refuses_det_and_says_it_cannot_build_here(det_path):
    report = check(det_path, "tensorrt")
    assert [(p.what, p.nodes) for p in report.errors] == [("Det", ["det0"])]
    if not get_target("tensorrt").available()[0]:
        assert not report.can_convert_here and "cannot build a TensorRT engine here" in report.convert_note


def test_ascend_check_lists_ops_opset_and_int64_with_fixes(ascend_path):
    report = check(ascend_path, "ascend")
    by = {(p.kind, p.what): p for p in report.problems}
    assert by[("opset", "20")].fix == "legalize: convert to opset 18"
    assert by[("op", "Gelu")].nodes == ["gelu"] and "Erf" in by[("op", "Gelu")].fix
    assert by[("op", "Det")].fix is None
    int64 = [p for p in report.problems if p.what == "int64"]
    assert {n for p in int64 for n in p.nodes} == {"ids", "gather[1]=idx"}
    assert "ATC" in " ".join(report.notes)


def test_onnxruntime_accepts_function_ops_and_the_example(conv_bn_silu_path, tmp_path):
    m = _model([helper.make_node("Mish", ["x"], ["y"], name="mish")], [_vi("x", [2])], [_vi("y", [2])], opset=18)
    onnx.save(m, tmp_path / "mish.onnx")
    assert check(tmp_path / "mish.onnx", "onnxruntime").supported  # Mish runs through its function body
    for target in ("onnxruntime", "openvino", "ort-mobile", "tensorrt", "ascend"):
        assert check(conv_bn_silu_path, target).supported, target


def test_openvino_conversion_matches_onnxruntime(conv_bn_silu_path, tmp_path):
    report = convert(conv_bn_silu_path, "openvino", tmp_path / "m.xml", dims={"height": 16, "width": 16})
    assert report.converted and report.parity.passed
    assert (tmp_path / "m.xml").exists() and (tmp_path / "m.bin").exists()
    feeds = {"input": np.ones((1, 3, 8, 8), np.float32)}
    from onnxdeploy._run import run

    np.testing.assert_allclose(run_artifact(tmp_path / "m.xml", feeds)["values"], run(conv_bn_silu_path, feeds)["values"],
                               atol=1e-4)


def test_ort_mobile_conversion_writes_ort_and_reduced_config(conv_bn_silu_path, tmp_path):
    report = convert(conv_bn_silu_path, "ort-mobile", tmp_path / "m.ort", dims={"height": 8, "width": 8})
    assert report.parity.passed
    config = (tmp_path / "m.required_operators.config").read_text()
    assert "Conv" in config and "Sigmoid" in config and "--include_ops_by_config" in report.command


def test_ascend_convert_prints_atc_command_and_does_not_claim_an_om(conv_bn_silu_path, tmp_path):
    report = convert(conv_bn_silu_path, "ascend", tmp_path / "m.om", dims={"batch": 1, "height": 224, "width": 224})
    assert not report.converted and not (tmp_path / "m.om").exists()
    assert report.command == (f"atc --model={tmp_path / 'm.onnx'} --framework=5 --output={tmp_path / 'm'} "
                              '--soc_version=Ascend310P3 --input_shape="input:1,3,224,224"')
    assert any("no .om file was produced" in n for n in report.notes)


def test_tensorrt_convert_says_plainly_it_cannot_build_here(conv_bn_silu_path, tmp_path):
    if get_target("tensorrt").available()[0]:
        pytest.skip("this machine can build TensorRT engines")
    with pytest.raises(UnsupportedError, match="cannot build a TensorRT engine here") as err:
        convert(conv_bn_silu_path, "tensorrt", tmp_path / "m.engine")
    assert "trtexec --onnx=" in err.value.hint


def test_run_artifact_refuses_unknown_suffix(tmp_path):
    (tmp_path / "m.bin2").write_bytes(b"x")
    with pytest.raises(UserInputError, match="cannot tell the target"):
        run_artifact(tmp_path / "m.bin2", {})


def test_cli_check_lists_problems_and_fails(ascend_path, capsys):
    from onnxdeploy.cli.main import main

    rc = main(["check", str(ascend_path), "--target", "ascend"])
    captured = capsys.readouterr()
    assert rc == 1 and "Gelu" in captured.out and "4 fixable" in captured.err
    assert main(["check", str(ascend_path), "--target", "onnxruntime", "--json"]) == 0
    assert '"supported": true' in capsys.readouterr().out


@pytest.mark.slow
def test_transformers_resnet_on_openvino_and_ort_mobile(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    corpus = pytest.importorskip("corpus")
    path = corpus.export_corpus_model("resnet50", tmp_path, tiny=True)
    for target, name in (("openvino", "r.xml"), ("ort-mobile", "r.ort")):
        report = convert(path, target, tmp_path / name, dims={"batch": 1}, atol=1e-3, rtol=1e-2)
        assert report.parity.passed, report.parity.summary()


# ------------------------------------------------------------------ regressions found on foreign models


def test_fp16_nodes_without_fp16_kernel_are_warnings_on_onnxruntime(tmp_path, capsys):
    """onnxruntime runs a float16 Add through inserted Casts (InsertCastTransformer): not a refusal."""
    from onnxdeploy.cli.main import main
    from onnxdeploy._run import create_session, run_session

    m = _model([helper.make_node("Add", ["x", "x"], ["y"], name="add16")], [_vi("x", [2, 3], TensorProto.FLOAT16)],
               [_vi("y", [2, 3], TensorProto.FLOAT16)])
    path = tmp_path / "fp16.onnx"
    onnx.save(m, path)
    x = np.ones((2, 3), np.float16)
    assert run_session(create_session(path), {"x": x})["y"].tolist() == (x + x).tolist()  # it does run
    report = check(path, "onnxruntime")
    assert report.supported and report.errors == []
    [warning] = report.problems
    assert warning.severity == "warning" and warning.nodes == ["add16"] and "float32" in warning.detail
    assert main(["check", str(path)]) == 0
    assert "dtype (warning)" in capsys.readouterr().out


def _shape_arith_model() -> onnx.ModelProto:
    """Reshape(x, Concat(Shape(x)[0:1], [-1])): int64 shape arithmetic, its constant tied to the Shape output."""
    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape", end=1),
             helper.make_node("Concat", ["s", "minus1"], ["new_shape"], name="concat", axis=0),
             helper.make_node("Reshape", ["x", "new_shape"], ["y"], name="reshape")]
    return _model(nodes, [_vi("x", ["n", 2, 3])], [_vi("y", ["n", 6])],
                  inits=[numpy_helper.from_array(np.array([-1], np.int64), "minus1")])


def test_ascend_int64_shape_arithmetic_is_a_warning_not_a_refusal(tmp_path):
    path = tmp_path / "shape.onnx"
    onnx.save(_shape_arith_model(), path)
    report = check(path, "ascend")
    assert report.supported, [p.detail for p in report.errors]
    [warning] = report.problems
    assert warning.what == "int64" and warning.severity == "warning"
    # the constant shares Concat's type with the computed Shape output: legalize cannot narrow it alone,
    # so it must not be announced as "fixable by legalize"
    assert any("concat[1]=minus1" in n for n in warning.nodes) and warning.fix is None


def test_convert_widens_tolerance_for_float16_outputs(tmp_path, monkeypatch):
    """Two engines round float16 differently (~1e-3): the default 1e-4 tolerance must not fail them."""
    import onnxdeploy.targets as targets_mod

    m = _model([helper.make_node("Add", ["x", "x"], ["y"], name="add")], [_vi("x", [2, 3], TensorProto.FLOAT16)],
               [_vi("y", [2, 3], TensorProto.FLOAT16)])
    path = tmp_path / "fp16.onnx"
    onnx.save(m, path)
    real = targets_mod.run_artifact
    monkeypatch.setattr(targets_mod, "run_artifact",
                        lambda p, feeds, t=None: {k: v + np.float16(2e-3) for k, v in real(p, feeds, t).items()})
    report = convert(path, "ort-mobile", tmp_path / "m.ort")
    assert report.parity.passed and any("float16 outputs" in n for n in report.notes)


def test_convert_reports_an_artefact_that_does_not_run(tmp_path, monkeypatch):
    import onnxdeploy.targets as targets_mod

    def broken(p, feeds, t=None):
        raise ValueError("Required inputs (['w__SHAPE']) are missing from input feed (['x']).")

    monkeypatch.setattr(targets_mod, "run_artifact", broken)
    with pytest.raises(UnsupportedError, match="artefact does not run: .*Required inputs") as err:
        convert(examples.conv_bn_silu(), "ort-mobile", tmp_path / "m.ort")
    assert "--no-verify" in err.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a failed convert leaves nothing behind"
    with pytest.raises(UnsupportedError, match="files kept for inspection"):
        convert(examples.conv_bn_silu(), "ort-mobile", tmp_path / "m.ort", keep_on_mismatch=True)
    assert (tmp_path / "m.ort").exists()


def test_convert_mismatch_leaves_nothing_behind(tmp_path, monkeypatch):
    import onnxdeploy.targets as targets_mod

    real = targets_mod.run_artifact
    monkeypatch.setattr(targets_mod, "run_artifact",
                        lambda p, feeds, t=None: {k: v + 1 for k, v in real(p, feeds, t).items()})
    with pytest.raises(OutputsDisagree, match="nothing was written"):
        convert(examples.conv_bn_silu(), "openvino", tmp_path / "m.xml", dims={"batch": 1, "height": 8, "width": 8})
    assert list(tmp_path.iterdir()) == []


def test_ort_mobile_converts_ir3_model_with_initializers_as_inputs(tmp_path):
    """IR 3 lists initializers as graph inputs; the .ort file used to demand them as inputs nobody feeds."""
    half = numpy_helper.from_array(np.array([0.5], np.float32))
    nodes = [helper.make_node("ConstantOfShape", ["a__SHAPE"], ["a"], name="c1", value=half),
             helper.make_node("ConstantOfShape", ["b__SHAPE"], ["b"], name="c2", value=half),
             helper.make_node("Add", ["x", "a"], ["y0"], name="add"),
             helper.make_node("Mul", ["y0", "b"], ["y"], name="mul")]
    # two equal initializers: onnxruntime shares them and the .ort file then requires 'a__SHAPE' as an input
    inits = [numpy_helper.from_array(np.array([2, 3], np.int64), n) for n in ("a__SHAPE", "b__SHAPE")]
    g = helper.make_graph(nodes, "m", [_vi("x", [2, 3]), _vi("a__SHAPE", [2], TensorProto.INT64),
                                       _vi("b__SHAPE", [2], TensorProto.INT64)], [_vi("y", [2, 3])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=3)
    path = tmp_path / "ir3.onnx"
    onnx.save(m, path)
    report = convert(path, "ort-mobile", tmp_path / "ir3.ort")
    assert report.parity.passed
    x = np.zeros((2, 3), np.float32)
    assert np.allclose(run_artifact(tmp_path / "ir3.ort", {"x": x})["y"], 0.25)


def test_openvino_failure_names_the_transformation_and_node():
    from onnxdeploy.targets.openvino import _engine_reason

    stderr = ("Traceback (most recent call last):\nRuntimeError: Exception from src/inference/src/cpp/core.cpp:256:\n"
              "[AddTransformation] END: node: opset1::Add /enc/pwconv2/Add (opset1::Multiply a:f32[8]) -> (f32[8]) "
              "CALLBACK HAS THROWN: Check 'index < m_inputs.size()' failed at src/core/src/node.cpp:304:\n"
              "index '0' out of range\n\n")
    assert _engine_reason(stderr) == "AddTransformation on node /enc/pwconv2/Add in the CPU plugin: index '0' out of range"
    assert _engine_reason("boom\nlast line\n") == "last line"


def test_openvino_check_falls_back_to_the_converted_ir(tmp_path, monkeypatch):
    """OpenVINO's CPU plugin can fail on a QDQ .onnx read as is yet run the IR `convert` writes (ConvNeXt QDQ):
    check must say so as a warning, not refuse the model that `convert` handles."""
    ov = pytest.importorskip("openvino")
    from onnxdeploy.targets.openvino import OpenVINOTarget

    path = tmp_path / "m.onnx"
    onnx.save(examples.conv_bn_silu(), path)
    real = ov.Core.query_model
    calls = []

    def flaky(self, model, device, *args, **kwargs):
        calls.append(model)
        if len(calls) == 1:
            raise RuntimeError("Exception from src/core/src/pass/graph_rewrite.cpp:298:\n[AddTransformation] END: node: "
                               "opset1::Add add_1 (a) -> (f32[?]) CALLBACK HAS THROWN: Check failed\nindex '0' out of range")
        return real(self, model, device, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "query_model", flaky)
    monkeypatch.setattr(OpenVINOTarget, "_last_warning", None, raising=False)
    missing, refused = OpenVINOTarget.query_in_process(path)
    assert (missing, refused) == ({}, []) and len(calls) == 2
    assert "AddTransformation on node add_1" in OpenVINOTarget._last_warning
    assert "deploy the .xml" in OpenVINOTarget._last_warning
