"""MNN target: conversion through MNN's converter module (never its console scripts), parity, int8, no network."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("MNN", reason="MNN is not installed (pip install 'onnxdeploy[mnn]')")

from onnxdeploy import targets  # noqa: E402
from netguard import no_network  # noqa: E402
from engine_models import tiny_bert  # noqa: E402,F401 - fixture


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    fc = numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "fc")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
         helper.make_node("GlobalAveragePool", ["r"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("MatMul", ["f", "fc"], ["logits"])], "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 5])], [w, b, fc])
    path = tmp_path_factory.mktemp("mnn") / "cnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_cnn_converts_verifies_and_touches_no_network(cnn, tmp_path):
    with no_network() as attempts:
        rep = targets.convert(cnn, "mnn", tmp_path / "cnn.mnn")
    assert attempts == []
    assert rep.parity.passed and rep.parity.max_abs < 1e-5
    assert [p.rsplit("/", 1)[-1] for p in rep.files] == ["cnn.mnn"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cnn.mnn"]  # nothing else published


def test_int8_weight_quantization_judged_by_int8_metric(cnn, tmp_path):
    rep = targets.convert(cnn, "mnn", tmp_path / "q.mnn", precision="int8")
    assert rep.precision == "int8" and rep.parity.passed
    assert "cosine" in rep.parity.metric
    assert (tmp_path / "q.mnn").stat().st_size > 0


def test_run_artifact_by_suffix_keeps_onnx_names(cnn, tmp_path):
    targets.convert(cnn, "mnn", tmp_path / "m.mnn", verify=False)
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    out = targets.run_artifact(tmp_path / "m.mnn", {"x": x})
    assert list(out) == ["logits"] and out["logits"].shape == (1, 5)


def test_supported_ops_come_from_the_converter():
    ops = targets.get_target("mnn").supported_ops()
    assert ("", "Conv") in ops and ("", "LayerNormalization") in ops and len(ops) > 100


def test_converter_is_not_the_console_script():
    """The console scripts import MNN.tools.utils.log (pip-installs a logging SDK, phones home): never used."""
    import inspect

    from onnxdeploy.targets import mnn

    src = inspect.getsource(mnn)
    assert "_tools.mnnconvert" in src and "MNN.tools" not in src.replace("MNN/tools/utils/log.py", "")


def test_unconvertible_model_is_one_line_error(tmp_path):
    from onnxdeploy.errors import UnsupportedError

    import onnx
    from onnx import TensorProto, helper

    bad = tmp_path / "bad.onnx"  # an operator of a domain MNN does not know
    graph = helper.make_graph([helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")], "bad",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                      helper.make_opsetid("com.example", 1)]), bad)
    with pytest.raises(UnsupportedError, match="MNN could not convert"):
        targets.get_target("mnn").convert(bad, tmp_path / "bad.mnn")


@pytest.mark.slow
def test_tiny_bert_converts_and_verifies(tiny_bert, tmp_path):
    with no_network() as attempts:
        rep = targets.convert(tiny_bert, "mnn", tmp_path / "bert.mnn")
    assert attempts == [] and rep.parity.passed


@pytest.fixture(scope="module")
def gelu_model(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Gelu", ["h"], ["y"])], "gelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 600, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 600, 8])], [w])
    path = tmp_path_factory.mktemp("mnn") / "gelu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    return path


def test_exact_gelu_stays_exact(gelu_model, tmp_path):
    # MNN's GELU kernel is off by up to 4.7e-4 from the exact GELU (what put BERT-base 1.06e-3 off onnxruntime):
    # fp32 converts the erf form with --useGeluApproximation 0 instead
    x = np.linspace(-6, 6, 4800, dtype=np.float32).reshape(1, 600, 8) @ np.linalg.pinv(
        np.random.default_rng(0).standard_normal((8, 8))).astype(np.float32)
    rep = targets.convert(gelu_model, "mnn", tmp_path / "g.mnn", inputs={"x": x}, atol=1e-5, rtol=0)
    assert rep.parity.passed and rep.parity.max_abs < 1e-5
    assert any("GELU x1" in n and "useGeluApproximation 0" in n for n in rep.notes)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["g.mnn"]


def test_exact_gelu_rewrite_is_exact_on_onnxruntime(gelu_model, tmp_path):
    import onnxruntime as ort

    from onnxdeploy.targets.mnn import exact_gelu

    rewritten, count = exact_gelu(gelu_model, tmp_path)
    assert count == 1 and rewritten != gelu_model
    x = {"x": np.random.default_rng(2).standard_normal((1, 600, 8)).astype(np.float32) * 3}
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, x)[0]
            for p in (gelu_model, rewritten))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert exact_gelu(rewritten, tmp_path / "again") == (rewritten, 0)  # no Gelu left: the input path itself
