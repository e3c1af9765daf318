"""Every model shipped in onnx's `onnx/backend/test/data/` folders: load -> save -> load keeps it intact, and the
saved copy runs on onnxruntime to the expected `test_data_set_0` outputs, and `optimize` (default and
`--for-runtime onnxruntime`) verifies each on its own test data and still computes the expected outputs (skipped, with
the reason, where onnxruntime cannot run the model at all)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxdeploy import _io as io

DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
FOLDERS = ("node", "real", "simple", "pytorch-converted", "pytorch-operator", "light")
# folder/<case>/model.onnx + test_data_set_0/, and light/light_<name>.onnx + light_<name>_output_0.pb
MODELS = sorted(
    [p for folder in FOLDERS if (DATA / folder).is_dir() for p in (DATA / folder).glob("*/model.onnx")]
    + list((DATA / "light").glob("light_*.onnx"))
)
# the light models (full-size CNNs: VGG-19, AlexNet, ...) take seconds each to run: the full sweep of them is slow
FAST_LIGHT = {"light_squeezenet", "light_shufflenet"}


def _id(path: Path) -> str:
    if path.name == "model.onnx":
        return f"{path.parent.parent.name}/{path.parent.name}"
    return f"light/{path.stem}"


def _params():
    for path in MODELS:
        slow = path.name != "model.onnx" and path.stem not in FAST_LIGHT
        yield pytest.param(path, id=_id(path), marks=[pytest.mark.slow] if slow else [])


def _light_data(path: Path, model: onnx.ModelProto) -> tuple[dict, dict]:
    """Inputs as onnx's backend runner makes them for light models (arange / n), and the stored outputs."""
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds[vi.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    expected = {}
    for i, vi in enumerate(model.graph.output):
        file = path.with_name(f"{path.stem}_output_{i}.pb")
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        expected[vi.name] = numpy_helper.to_array(tensor)
    return feeds, expected


def _tensors(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def test_the_corpus_is_there():
    assert len(MODELS) > 100, f"expected the onnx backend test models under {DATA}"


@pytest.mark.parametrize("path", _params())
def test_round_trip(path: Path, tmp_path: Path):
    before = path.read_bytes()
    original = io.load_proto(path, load_weights=True)
    saved = io.save(io.load(path), tmp_path / "model.onnx")
    copy = io.load_proto(saved, load_weights=True)
    assert path.read_bytes() == before  # the input file is never modified
    assert [(n.op_type, n.domain, list(n.input), list(n.output)) for n in copy.graph.node] == [
        (n.op_type, n.domain, list(n.input), list(n.output)) for n in original.graph.node
    ]
    assert [i.name for i in copy.graph.input] == [i.name for i in original.graph.input]
    assert [o.name for o in copy.graph.output] == [o.name for o in original.graph.output]
    assert {o.domain or "": o.version for o in copy.opset_import} == {
        o.domain or "": o.version for o in original.opset_import
    }
    ref, got = _tensors(original), _tensors(copy)
    assert ref.keys() == got.keys()
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)

    from onnxdeploy._numerics import compare_outputs
    from onnxdeploy._run import SessionError, create_session, input_specs, output_specs, read_test_data_dir, run_session

    if path.name != "model.onnx":
        feeds, expected = _light_data(path, copy)
    else:
        data = path.parent / "test_data_set_0"
        if not data.is_dir():
            return
        feeds = read_test_data_dir(data, input_specs(copy), "input")
        expected = read_test_data_dir(data, output_specs(copy), "output")
    try:
        session = create_session(saved)
        outputs = run_session(session, feeds, [o.name for o in session.get_outputs()])
    except SessionError as err:
        pytest.skip(f"onnxruntime cannot run it: {err.message}")
    # old test data may name outputs by position only
    if not set(expected) <= set(outputs):
        expected = dict(zip(list(outputs), expected.values()))
    comparison = compare_outputs(expected, outputs, atol=1e-3, rtol=1e-3)
    assert comparison.passed, comparison.summary()


def _data(path: Path, model: onnx.ModelProto) -> tuple[dict, dict] | None:
    """The inputs and expected outputs that come with a corpus model (None when it has none)."""
    from onnxdeploy._run import input_specs, output_specs, read_test_data_dir

    if path.name != "model.onnx":
        return _light_data(path, model)
    data = path.parent / "test_data_set_0"
    if not data.is_dir():
        return None
    return read_test_data_dir(data, input_specs(model), "input"), read_test_data_dir(data, output_specs(model), "output")


@pytest.mark.parametrize("for_runtime", [None, "onnxruntime"])
@pytest.mark.parametrize("path", _params())
def test_optimize(path: Path, for_runtime: str | None):
    """Models none of us wrote: optimize never crashes, verifies on the model's own test data, and the optimized
    model still computes the expected outputs stored beside it."""
    from onnxdeploy.errors import UserInputError
    from onnxdeploy._numerics import compare_outputs
    from onnxdeploy._optimize import optimize
    from onnxdeploy._run import SessionError, create_session, run_session

    original = io.load_proto(path, load_weights=True)
    data = _data(path, original)
    if data is None:
        pytest.skip("no test data beside the model")
    feeds, expected = data
    try:
        create_session(original)
    except SessionError as err:
        pytest.skip(f"onnxruntime cannot run it: {err.message}")
    try:
        result = optimize(path, for_runtime=for_runtime, inputs=feeds)
    except UserInputError as err:
        pytest.skip(f"onnxruntime cannot run the original on its test data: {err}")
    assert result.report.verified is True
    proto = io.as_proto(result.model)
    outputs = run_session(create_session(proto), {k: v for k, v in feeds.items()
                                                  if k in {i.name for i in proto.graph.input}})
    if not set(expected) <= set(outputs):
        expected = dict(zip(list(outputs), expected.values()))
    comparison = compare_outputs(expected, outputs, atol=1e-3, rtol=1e-3)
    assert comparison.passed, comparison.summary()


@pytest.mark.parametrize("mode", ["static", "dynamic"])
@pytest.mark.parametrize("path", _params())
def test_quantize(path: Path, mode: str, tmp_path: Path):
    """Models none of us wrote: quantize writes a verified model or stops with a one-line error, never a traceback
    (the sweep that added this found IR 3 models, opset-6 Slice, string outputs and NaN outputs crashing it)."""
    from onnxdeploy.errors import OnnxDeployError, OutputsDisagree
    from onnxdeploy._quantize import quantize
    from onnxdeploy._run import SessionError, create_session

    try:
        create_session(io.load_proto(path, load_weights=True))
    except SessionError as err:
        pytest.skip(f"onnxruntime cannot run it: {err.message}")
    try:
        quantize(path, tmp_path / "q.onnx", mode=mode, measure=False, samples=4, heldout=2)
    except OutputsDisagree:
        raise  # verified below the default cosine: a quantization that breaks the model is a failure here
    except OnnxDeployError as err:  # e.g. a shape input that random data cannot fill
        assert "\n" not in err.message and err.hint
        return
    create_session(tmp_path / "q.onnx")
