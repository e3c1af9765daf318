"""The one verifier: input sets, two shapes, interface changes, runners, IR 3 weights-as-inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy.errors import OutputsDisagree
from onnxdeploy._verify import Inputs, Verifier, interface_changes, verify


def _scale_model(scale: float, *, batch: str | int = "batch", ir_version: int = 8) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    w = numpy_helper.from_array(np.full((4,), scale, np.float32), "w")
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "g", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir_version)


def test_symbolic_dims_are_verified_at_two_shapes():
    result = verify(_scale_model(2.0), _scale_model(2.0))
    assert result.passed
    assert len(result.comparisons) == 2
    assert result.shapes == ["batch=1", "batch=2"]
    assert "atol" in result.metric


def test_a_wrong_candidate_fails_and_raises_exit_code_3():
    result = verify(_scale_model(2.0), _scale_model(2.5))
    assert not result.passed
    assert "MISMATCH" in result.failures()[0]
    with pytest.raises(OutputsDisagree):
        result.raise_if_failed()


def test_a_fixed_dim_is_an_interface_change_unless_asked_for():
    result = verify(_scale_model(2.0), _scale_model(2.0, batch=1))
    assert not result.passed  # numerically equal, but the artefact no longer takes any batch
    assert any("fixed to 1, was symbolic 'batch'" in c for c in result.interface_changes)
    asked = verify(_scale_model(2.0), _scale_model(2.0, batch=1), Inputs(dims={"batch": 1}), interface={"dims"})
    assert asked.passed and asked.allowed_changes and not asked.interface_changes


def test_renamed_output_is_an_interface_change():
    other = _scale_model(2.0)
    other.graph.output[0].name = "z"
    other.graph.node[0].output[0] = "z"
    assert any("output 'y' is gone" in c for c in interface_changes(_scale_model(2.0), other))


def test_given_inputs_give_one_input_set_and_are_used_as_given(tmp_path: Path):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    result = verify(_scale_model(2.0), _scale_model(2.0), Inputs(arrays={"x": x}))
    assert result.passed and result.shapes == ["the given inputs"]


def test_runner_reference_with_expected_outputs():
    x = np.ones((2, 4), np.float32)
    expected = {"y": np.full((2, 4), 2.0, np.float32)}
    ok = verify(lambda feeds: expected, _scale_model(2.0), Inputs(arrays={"x": x}), specs_from=_scale_model(2.0))
    assert ok.passed
    bad = verify(lambda feeds: expected, _scale_model(3.0), Inputs(arrays={"x": x}), specs_from=_scale_model(2.0))
    assert not bad.passed


def test_candidate_runner_for_another_engine():
    ref = _scale_model(2.0)
    result = verify(ref, ref, candidate_runner=lambda feeds: {"y": feeds["x"] * 2.0})
    assert result.passed and len(result.comparisons) == 2


def test_ir3_weights_listed_as_inputs_are_never_synthesized():
    model = _scale_model(2.0, ir_version=3)
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]))
    seen = []

    def runner(feeds):
        seen.append(sorted(feeds))
        return {"y": feeds["x"] * 2.0}

    assert verify(model, model, candidate_runner=runner).passed
    assert seen and all(names == ["x"] for names in seen)


def test_verifier_runs_the_reference_once_for_many_candidates():
    calls = []
    ref = _scale_model(2.0)

    def reference(feeds):
        calls.append(1)
        return {"y": feeds["x"] * 2.0}

    verifier = Verifier(reference, specs_from=ref)
    assert verifier.check(_scale_model(2.0)).passed
    assert not verifier.check(_scale_model(1.0)).passed
    assert len(calls) == 2  # one per input set, not per candidate


def test_typed_shape_makes_integer_inputs():
    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, ["b", "s"])
    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = Inputs(shapes={"ids": ([2, 5], "int64")}).feeds(model)
    assert feeds["ids"].shape == (2, 5) and feeds["ids"].dtype == np.int64


def test_reference_that_cannot_run_is_a_user_error():
    from onnxdeploy.errors import UserInputError

    def broken(feeds):
        raise RuntimeError("boom")

    with pytest.raises(UserInputError, match="cannot verify"):
        verify(broken, _scale_model(2.0), specs_from=_scale_model(2.0))


def test_legalize_and_convert_verify_at_two_shapes_with_the_shared_inputs(tmp_path: Path):
    from onnxdeploy._legalize import legalize
    from onnxdeploy.targets import convert

    path = tmp_path / "m.onnx"
    onnx.save(_scale_model(2.0), path)
    rep = legalize(path, "onnxruntime").report
    assert rep.verification.passed and rep.verification.shapes == ["batch=1", "batch=2"]
    conv = convert(path, "ort-mobile", tmp_path / "m.ort", inputs=Inputs(dims={"batch": 3}))
    assert conv.parity.passed and conv.parity.shapes == ["batch=3", "batch=2"]


def test_convert_cli_takes_the_shared_input_options(tmp_path: Path, capsys):
    from onnxdeploy.cli.main import main

    path = tmp_path / "m.onnx"
    onnx.save(_scale_model(2.0), path)
    np.save(tmp_path / "x.npy", np.ones((5, 4), np.float32))
    rc = main(["convert", str(path), "--target", "ort-mobile", "-o", str(tmp_path / "m.ort"),
               "--input", f"x={tmp_path / 'x.npy'}", "--json"])
    assert rc in (0, None)
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["parity"]["passed"] and data["parity"]["shapes"] == ["the given inputs"]


def test_edit_verifies_at_two_shapes_when_dims_are_symbolic(conv_bn_silu_path: Path):
    from onnxdeploy._edit import Editor

    editor = Editor(conv_bn_silu_path)
    conv = next(n for n in editor.model.graph if n.op_type == "Conv")
    editor.rename_tensor(editor.model.graph.outputs[0].name, "renamed_output")
    editor.extract([editor.model.graph.inputs[0].name], [conv.outputs[0].name])
    report = editor.finish()
    checks = [v for v in report.verifications if v.comparison is not None]
    assert checks and all(v.passed for v in checks)
    assert len(checks[0].comparison.shapes) == 2


def test_sizes_the_user_gives_are_verified_and_varied_unless_the_dims_are_fixed():
    given = verify(_scale_model(2.0), _scale_model(2.0), Inputs(dims={"batch": 4}))
    assert given.passed and given.shapes == ["batch=4", "batch=3"]
    fixed = verify(_scale_model(2.0), _scale_model(2.0, batch=4), Inputs(dims={"batch": 4}), interface={"dims"})
    assert fixed.passed and fixed.shapes == ["batch=4"]


def test_an_openvino_artefact_keeps_its_dynamic_dims_and_is_verified_at_two_shapes(conv_bn_silu_path: Path, tmp_path):
    pytest.importorskip("openvino")
    from onnxdeploy.targets import convert

    rep = convert(conv_bn_silu_path, "openvino", tmp_path / "m.xml")
    assert rep.parity.passed and len(rep.parity.shapes) == 2 and rep.parity.interface_changes == []


def test_an_ir3_model_converts_without_feeding_its_weights(tmp_path: Path):
    """IR 3: initializers also listed as graph inputs keep their stored values on every engine."""
    pytest.importorskip("openvino")
    from onnxdeploy.targets import convert

    model = _scale_model(2.0, ir_version=3)
    model.opset_import[0].version = 8
    model.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [4]))
    path = tmp_path / "ir3.onnx"
    onnx.save(model, path)
    rep = convert(path, "openvino", tmp_path / "ir3.xml")
    assert rep.parity.passed and rep.parity.max_abs < 1e-6
