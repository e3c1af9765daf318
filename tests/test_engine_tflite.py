"""TFLite target: onnx2tf conversion in a child process, NHWC handled at run time, int8 builds, no network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxdeploy import targets
from onnxdeploy.errors import MissingDependencyError, UnsupportedError
from netguard import no_network

_OK, _WHY = targets.get_target("tflite").available()
needs_tflite = pytest.mark.skipif(not _OK, reason=f"TFLite extra not installed: {_WHY}")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    """A 3-channel image CNN (the input onnx2tf would fetch calibration images for) with a logits and a 4-D output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.3, n) for n, s in
             (("w", (8, 3, 3, 3)), ("b", (8,)), ("fw", (8, 10)), ("fb", (10,)))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["feat"]),
             helper.make_node("GlobalAveragePool", ["feat"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10]),
                               helper.make_tensor_value_info("feat", TensorProto.FLOAT, [1, 8, 16, 16])], inits)
    path = tmp_path_factory.mktemp("tflite") / "cnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


@needs_tflite
def test_cnn_fp32_converts_offline_with_nhwc_handled(cnn, tmp_path):
    with no_network() as attempts:  # onnx2tf fetches calibration images for 3-channel inputs unless given locally
        rep = targets.convert(cnn, "tflite", tmp_path / "cnn.tflite")
    assert attempts == []
    assert rep.parity.passed and rep.parity.max_abs < 1e-4 and rep.precision == "fp32"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cnn.tflite", "cnn.tflite.json"]
    layout = json.loads((tmp_path / "cnn.tflite.json").read_text())
    assert layout["inputs"][0]["perm"] == [0, 2, 3, 1]  # NCHW -> NHWC in, NHWC -> NCHW out
    assert {o["name"]: o["perm"] for o in layout["outputs"]} == {"logits": None, "feat": [0, 3, 1, 2]}
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    out = targets.run_artifact(tmp_path / "cnn.tflite", {"x": x})
    assert out["feat"].shape == (1, 8, 16, 16) and out["logits"].shape == (1, 10)
    assert "transposed at run time" in " ".join(rep.notes)


@needs_tflite
def test_int8_full_integer_with_calibration_is_built_and_reported(cnn, tmp_path):
    rng = np.random.default_rng(2)
    samples = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(8)]
    with no_network() as attempts:
        rep = targets.convert(cnn, "tflite", tmp_path / "q.tflite", precision="int8", calibration=samples)
    assert attempts == []
    assert rep.precision == "int8" and rep.parity.passed
    assert "cosine" in rep.parity.metric  # judged with the int8 tolerance, not an fp32 atol
    assert any("full-integer" in n and "8 sample" in n for n in rep.notes)
    assert 0 < rep.parity.max_abs  # really quantized


@needs_tflite
def test_full_integer_refuses_non_float_inputs_before_converting(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((10, 4), np.float32), "table")
    graph = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"])], "g",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4])], [table])
    path = tmp_path / "ids.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(UnsupportedError, match="full-integer int8 calibrates float inputs only; ids is not float"):
        targets.convert(path, "tflite", tmp_path / "ids.tflite", precision="int8",
                        calibration=[{"ids": np.zeros((1, 3), np.int64)}])
    assert sorted(f.name for f in tmp_path.iterdir()) == ["ids.onnx"]


def test_missing_converter_is_one_line_naming_the_extra(cnn, tmp_path, monkeypatch):
    import importlib.util

    for other in ("ai_edge_litert", "tensorflow", "tf_keras"):  # only onnx2tf is missing in this test
        if importlib.util.find_spec(other) is None:
            pytest.skip(f"{other} is not installed (pip install 'onnxdeploy[tflite]')")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx2tf" else real(name, *a))
    t = targets.get_target("tflite")
    assert t.available() == (False, "missing onnx2tf (pip install 'onnxdeploy[tflite]')")
    pytest.importorskip("ai_edge_litert")
    with pytest.raises(MissingDependencyError, match="needs the 'onnx2tf' package") as err:
        t.convert(cnn, tmp_path / "x.tflite")
    assert err.value.hint.startswith("pip install 'onnxdeploy[tflite]'")


@needs_tflite
@pytest.mark.slow
def test_int8_dynamic_range_without_calibration(cnn, tmp_path):
    with no_network() as attempts:
        rep = targets.convert(cnn, "tflite", tmp_path / "d.tflite", precision="int8")
    assert attempts == [] and rep.parity.passed
    assert any("dynamic-range" in n for n in rep.notes)


@needs_tflite
@pytest.mark.slow
def test_bert_after_mask_rewrite_fp32_and_dynamic_int8(tiny_bert_static, tmp_path):
    import onnxdeploy

    legal = tmp_path / "bert-legal.onnx"
    onnxdeploy.legalize(tiny_bert_static, "tflite", output=legal)
    with no_network() as attempts:
        fp32 = targets.convert(legal, "tflite", tmp_path / "bert.tflite")
        int8 = targets.convert(legal, "tflite", tmp_path / "bert8.tflite", precision="int8")
    assert attempts == []
    assert fp32.parity.passed and fp32.parity.max_abs < 1e-4
    assert int8.parity.passed and any("dynamic-range" in n for n in int8.notes)


from engine_models import tiny_bert_static  # noqa: E402,F401 - fixture


def test_converter_killed_by_the_oom_killer_is_named():
    # BERT-base: the kernel's OOM killer stopped onnx2tf (20 GiB) with no output; the error said only "no output"
    import signal
    import subprocess

    from onnxdeploy.targets.tflite import _reason

    log = ("\x1b[07mModel conversion started\x1b[0m ======\nINFO: 380 / 380\n"
           "\x1b[07msaved_model output started\x1b[0m ==========\n")
    proc = subprocess.CompletedProcess([], -signal.SIGKILL, log, "")
    why = _reason(log, proc)
    assert why.startswith("the converter was killed by SIGKILL (most likely out of memory")
    assert "during onnx2tf's 'saved_model output' stage" in why and "peak memory" in why


def test_converter_error_line_and_exit_code_are_reported():
    import subprocess

    from onnxdeploy.targets.tflite import _reason

    log = "\x1b[07mModel conversion started\x1b[0m ===\nINFO: onnx_op_type: Erf\nERROR: Erf is not supported\n"
    assert _reason(log, subprocess.CompletedProcess([], 1, log, "")) == (
        "ERROR: Erf is not supported during onnx2tf's 'Model conversion' stage")
    assert _reason("", subprocess.CompletedProcess([], 2, "", "")) == "exit code 2: no output"

