"""`onnxdeploy run --backend`: converted artefacts run on their engine with parity against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxdeploy import examples, targets
from onnxdeploy.cli.main import main
from onnxdeploy.errors import OutputsDisagree, UserInputError

pytest.importorskip("openvino")
DIMS = {"batch": 1, "height": 16, "width": 16}


@pytest.fixture
def converted(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(examples.conv_bn_silu(), model)
    xml = tmp_path / "m.xml"
    targets.convert(model, "openvino", xml, dims=DIMS)
    return model, xml


def test_openvino_artefact_matches_onnxruntime(converted):
    model, xml = converted
    result = targets.run_on_backend(xml, reference=model, dims=DIMS)
    assert result.target == "openvino"
    assert result.outputs["values"].shape == (1, 32, 16, 16)
    assert result.parity is not None and result.parity.passed


def test_artefact_without_reference_is_a_clear_error(converted):
    _, xml = converted
    with pytest.raises(UserInputError, match="pass --reference"):
        targets.run_on_backend(xml, dims=DIMS)


def test_mismatch_raises(converted, monkeypatch):
    model, xml = converted
    real = targets.run_artifact
    monkeypatch.setattr(targets, "run_artifact", lambda *a, **k: {n: v + 1 for n, v in real(*a, **k).items()})
    with pytest.raises(OutputsDisagree, match="openvino outputs differ"):
        targets.run_on_backend(xml, reference=model, dims=DIMS)


def test_cli_backend_on_onnx_reports_parity(converted, capsys):
    model, _ = converted
    rc = main(["run", str(model), "--backend", "openvino", "--dim", "batch=1", "--dim", "height=16",
               "--dim", "width=16"])
    out = capsys.readouterr().out
    assert rc == 0 and "Parity with onnxruntime" in out and "1x32x16x16" in out


def test_cli_artefact_json(converted, capsys):
    import json

    model, xml = converted
    rc = main(["run", str(xml), "--reference", str(model), "--dim", "batch=1", "--dim", "height=16",
               "--dim", "width=16", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["target"] == "openvino" and data["parity"]["passed"] is True
    assert np.isclose(data["parity"]["max_abs"], 0.0, atol=1e-4)
