"""ExecuTorch target: .pte from the PyTorch module (XNNPACK), verified against PyTorch and onnxruntime, int8,
an ONNX source refused plainly, no network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxdeploy import targets
from onnxdeploy.errors import UnsupportedError
from netguard import no_network

_OK, _WHY = targets.get_target("executorch").available()
needs_executorch = pytest.mark.skipif(not _OK, reason=_WHY)


def _cnn():
    import torch

    torch.manual_seed(0)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 10)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return self.fc(y.mean((2, 3))), y

    return Tiny().eval(), (torch.randn(1, 3, 16, 16),)


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    import onnxdeploy

    module, example = _cnn()
    path = tmp_path_factory.mktemp("et") / "cnn.onnx"
    onnxdeploy.export(module, example, path, input_names=["x"], output_names=["logits", "feat"])
    return module, example, path


@needs_executorch
def test_cnn_fp32_pte_matches_pytorch_and_onnxruntime(cnn_onnx, tmp_path):
    from onnxdeploy.targets.executorch import convert_module

    module, example, onnx_path = cnn_onnx
    with no_network() as attempts:
        rep = convert_module(module, example, tmp_path / "cnn.pte", reference=onnx_path)
    assert attempts == []
    assert rep.parity.passed and rep.parity.max_abs < 1e-4 and "vs PyTorch" in rep.parity.label
    assert any("vs onnxruntime" in n and "passed" in n for n in rep.notes)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cnn.pte", "cnn.pte.json"]
    assert json.loads((tmp_path / "cnn.pte.json").read_text())["outputs"] == ["logits", "feat"]
    # run --backend executorch: inputs follow the reference ONNX model
    run = targets.run_on_backend(tmp_path / "cnn.pte", "executorch", reference=onnx_path)
    assert run.parity.passed and run.outputs["feat"].shape == (1, 8, 16, 16)


@needs_executorch
def test_int8_static_with_calibration_is_built_and_reported(cnn_onnx, tmp_path):
    from onnxdeploy.targets.executorch import convert_module

    module, example, onnx_path = cnn_onnx
    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]
    with no_network() as attempts:
        rep = convert_module(module, example, tmp_path / "q.pte", reference=onnx_path, precision="int8",
                             calibration=samples)
    assert attempts == []
    assert rep.precision == "int8" and rep.parity.passed and "cosine" in rep.parity.metric
    assert any("int8 static" in n and "4 sample" in n for n in rep.notes)
    assert rep.parity.max_abs > 1e-5  # really quantized


def test_onnx_source_is_refused_plainly(cnn_onnx, tmp_path):
    _, _, onnx_path = cnn_onnx
    with pytest.raises(UnsupportedError, match="ExecuTorch converts from the PyTorch module, not from an ONNX") as err:
        targets.convert(onnx_path, "executorch", tmp_path / "m.pte")
    assert "deploy pkg.mod:factory --target executorch" in err.value.hint
    assert not list(tmp_path.iterdir())


def test_deploy_of_onnx_source_is_refused_before_any_step(cnn_onnx, tmp_path):
    import onnxdeploy

    _, _, onnx_path = cnn_onnx
    with pytest.raises(UnsupportedError, match="needs|from the PyTorch module"):
        onnxdeploy.deploy(str(onnx_path), target="executorch", output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pte_without_reference_is_refused(tmp_path):
    (tmp_path / "m.pte").write_bytes(b"x")
    from onnxdeploy.errors import UserInputError

    with pytest.raises(UserInputError, match="carries no ONNX input description") as err:
        targets.run_on_backend(tmp_path / "m.pte", "executorch")
    assert "--reference" in err.value.hint


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny BERT module, its example inputs and its ONNX export (the reference both BERT tests verify against)."""
    pytest.importorskip("transformers")
    import onnxdeploy
    from engine_models import _bert

    module, example, names = _bert(False)
    onnx_path = tmp_path_factory.mktemp("bert") / "bert.onnx"
    onnxdeploy.export(module, example, onnx_path, input_names=names, output_names=["last_hidden_state"])
    return module, example, onnx_path


@needs_executorch
@pytest.mark.slow
def test_bert_fp32(bert, tmp_path):
    from onnxdeploy.targets.executorch import convert_module

    module, example, onnx_path = bert
    with no_network() as attempts:
        fp32 = convert_module(module, example, tmp_path / "bert.pte", reference=onnx_path)
    assert attempts == []
    assert fp32.parity.passed and fp32.parity.max_abs < 1e-4


@needs_executorch
@pytest.mark.slow
def test_deploy_pytorch_target_to_executorch(tmp_path):
    import onnxdeploy

    # the .pte has the example's static shapes: --fix-dims makes the export's symbolic dims static on purpose
    rep = onnxdeploy.deploy(None, target="executorch", output_dir=tmp_path / "out", bench_seconds=0.1,
                            dims={"batch": 1, "height": 64, "width": 64}, fix_dims=True)
    assert rep.passed and rep.final_artifact.endswith(".pte")
    convert = next(s for s in rep.steps if s.name == "convert")
    assert convert.verification.passed and "vs PyTorch" in convert.verification.label


def _indexed_by_arange():
    """A Linear plus transformers-style mask indexing: ``mask[:, arange(n) + offset]`` (the pattern that broke PT2E)."""
    import torch

    torch.manual_seed(0)

    class Masked(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(8, 8)

        def forward(self, x, mask):
            keep = mask.to(torch.bool)[:, torch.arange(x.shape[1]) + 0]
            return self.fc(x) * keep.unsqueeze(-1).to(x.dtype)

    return Masked().eval(), (torch.randn(1, 6, 8), torch.tensor([[1, 1, 1, 1, 0, 0]]))


@needs_executorch
def test_int8_dynamic_keeps_integer_index_arithmetic(tmp_path):
    # XNNPACKQuantizer turns the scalar of `arange + 0` into a float constant: the prepared graph then indexed with a
    # float tensor (IndexError), which blocked ExecuTorch int8 of every transformers BERT
    from onnxdeploy.targets.executorch import convert_module

    module, example = _indexed_by_arange()
    rep = convert_module(module, example, tmp_path / "m.pte", precision="int8", input_names=["x", "mask"])
    assert rep.parity.passed and "cosine" in rep.parity.metric
    assert any("int8 dynamic" in n for n in rep.notes)
    out = targets.get_target("executorch").run(tmp_path / "m.pte", {"x": example[0].numpy(), "mask": example[1].numpy()})
    assert np.all(list(out.values())[0][0, 4:] == 0)  # the mask still masks


@needs_executorch
@pytest.mark.slow
def test_bert_int8_dynamic(bert, tmp_path):
    from onnxdeploy.targets.executorch import convert_module

    module, example, onnx_path = bert
    with no_network() as attempts:
        rep = convert_module(module, example, tmp_path / "bert8.pte", reference=onnx_path, precision="int8")
    assert attempts == []
    assert rep.parity.passed and "cosine" in rep.parity.metric and rep.parity.max_abs > 1e-5
    assert any("int8 dynamic" in n for n in rep.notes)
