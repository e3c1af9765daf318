"""Targets: support checks on models with known unsupported ops, conversions that match onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import examples
from onnxdeploy.errors import UnsupportedError, UserInputError
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
    from onnxdeploy.run import run

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
