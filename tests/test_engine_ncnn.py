"""ncnn target: pnnx conversion, parity, the batch-axis and busy-wait traps, the mask rewrite, no network."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("ncnn", reason="ncnn is not installed (pip install 'onnxdeploy[ncnn]')")
pytest.importorskip("pnnx", reason="pnnx is not installed (pip install 'onnxdeploy[ncnn]')")

from onnxdeploy import targets  # noqa: E402
from engine_models import tiny_bert, tiny_bert_embeds_static, tiny_bert_static  # noqa: E402,F401 - fixture
from netguard import no_network, offline_command  # noqa: E402


@pytest.fixture
def offline_pnnx(monkeypatch):
    """pnnx is native: run it with no network namespace at all when the kernel allows it."""
    from onnxdeploy.targets.ncnn import NcnnTarget

    monkeypatch.setattr(NcnnTarget, "command_prefix", tuple(offline_command(["x"])[:-1]))


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["y"])],
        "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])], inits)
    path = tmp_path_factory.mktemp("ncnn") / "cnn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_cnn_converts_verifies_and_publishes_only_the_artefact(cnn, tmp_path, offline_pnnx):
    with no_network() as attempts:
        rep = targets.convert(cnn, "ncnn", tmp_path / "cnn.param")
    assert attempts == []
    # batch 1 and 2: ncnn blobs have no batch axis, batch 2 runs item by item, outputs come back in ONNX shapes
    assert rep.parity.passed and len(rep.parity.comparisons) == 2 and rep.parity.max_abs < 1e-5
    assert sorted(f.name for f in tmp_path.iterdir()) == ["cnn.bin", "cnn.io.json", "cnn.param"]


def test_outputs_have_onnx_shape_and_names(cnn, tmp_path):
    targets.convert(cnn, "ncnn", tmp_path / "m.param", verify=False)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    out = targets.run_artifact(tmp_path / "m.param", {"x": x})
    assert list(out) == ["y"] and out["y"].shape == (2, 4, 8, 8)


def test_passive_wait_policy_is_set_before_ncnn_loads():
    from onnxdeploy.targets.ncnn import import_ncnn

    import_ncnn()
    assert os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE"


def test_missing_sidecar_is_one_line_error(cnn, tmp_path):
    from onnxdeploy.errors import UnsupportedError

    targets.convert(cnn, "ncnn", tmp_path / "m.param", verify=False)
    (tmp_path / "m.io.json").unlink()
    with pytest.raises(UnsupportedError, match="m.io.json is missing"):
        targets.run_artifact(tmp_path / "m.param", {"x": np.zeros((1, 3, 8, 8), np.float32)})


def test_boolean_mask_is_refused_with_the_legalize_hint(tiny_bert_embeds_static, tmp_path):
    from onnxdeploy.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="legalize"):
        targets.convert(tiny_bert_embeds_static, "ncnn", tmp_path / "b.param")


def test_transformer_after_mask_rewrite(tiny_bert_embeds_static, tmp_path, offline_pnnx):
    """The mask (1, 16) keeps its leading axis in ncnn (batch_index 233): fed as (1, 1, 16), padded positions masked."""
    from onnxdeploy import legalize

    rng = np.random.default_rng(0)
    mask = np.ones((1, 16), np.int64)
    mask[:, 11:] = 0
    feeds = {"inputs_embeds": rng.standard_normal((1, 16, 32)).astype(np.float32), "attention_mask": mask}
    legal = tmp_path / "legal.onnx"
    assert legalize(tiny_bert_embeds_static, "ncnn", output=legal, inputs=feeds).report.rules_applied
    with no_network() as attempts:
        rep = targets.convert(legal, "ncnn", tmp_path / "b.param", inputs=feeds)
    assert attempts == [] and rep.parity.passed and rep.parity.max_abs < 1e-4
    spec = json.loads((tmp_path / "b.io.json").read_text())
    assert {i["name"]: i["batch_index"] for i in spec["inputs"]}["attention_mask"] == 233
    assert spec["float_inputs"] == ["attention_mask"]


def test_bert_token_ids_become_embed_after_legalize(tiny_bert_static, tmp_path, offline_pnnx):
    """ncnn has no Gather layer: legalize writes the word-embedding Gather without axis=0, which pnnx lowers to
    Embed; check names the problem and the fix first."""
    from onnxdeploy import legalize

    problems = {p.what: p for p in targets.check(tiny_bert_static, "ncnn").problems}
    assert problems["Gather"].fix.startswith("legalize: embedding lookup")
    legal = tmp_path / "legal.onnx"
    res = legalize(tiny_bert_static, "ncnn", output=legal)
    assert res.report.rules_applied["embedding-gather"] >= 1 and res.report.verification.max_abs == 0
    mask = np.ones((1, 16), np.int64)
    mask[:, 9:] = 0
    feeds = {"input_ids": np.random.default_rng(1).integers(0, 1000, (1, 16)).astype(np.int64),
             "attention_mask": mask}
    rep = targets.convert(legal, "ncnn", tmp_path / "b.param", inputs=feeds)
    assert rep.parity.passed and rep.parity.max_abs < 1e-4
    layers = {ln.split()[0] for ln in (tmp_path / "b.param").read_text().splitlines()[2:]}
    assert "Embed" in layers and "Gather" not in layers


def test_input_read_by_an_in_place_layer_does_not_crash(tmp_path):
    """ncnn dereferences the refcount of an input blob an in-place layer (Abs) reads first; a Mat over a numpy
    buffer has none: a segfault (it killed BERT's float mask). Our inputs are cloned Mats: run in a child so a
    regression fails this test instead of killing pytest."""
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Abs", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])], "abs",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    src = tmp_path / "abs.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    targets.convert(src, "ncnn", tmp_path / "abs.param", verify=False)
    assert "UnaryOp" in (tmp_path / "abs.param").read_text()
    code = ("import numpy as np; from onnxdeploy import targets; x = -np.arange(8, dtype=np.float32)[None]; "
            f"print(targets.run_artifact({str(tmp_path / 'abs.param')!r}, {{'x': x}})['y'].tolist())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"ncnn crashed (exit {proc.returncode}): {proc.stderr[-300:]}"
    assert proc.stdout.strip() == str([[float(v) for v in range(8)]])


def test_runs_use_the_passive_wait_policy_and_no_blocktime(cnn, tmp_path):
    """The busy-wait trap (2 threads, 1.15 s vs 0.1 s per run): a fresh process that runs an artefact has
    OMP_WAIT_POLICY=PASSIVE set before ncnn loaded, and the net's openmp_blocktime is 0."""
    import subprocess
    import sys

    targets.convert(cnn, "ncnn", tmp_path / "m.param", verify=False)
    code = ("import os, sys, numpy as np; from onnxdeploy import targets; from onnxdeploy.targets import ncnn as n; "
            f"p = {str(tmp_path / 'm.param')!r}; t = targets.get_target('ncnn'); t.threads = 2; "
            "t.run(p, {'x': np.zeros((1, 3, 8, 8), np.float32)}); "
            "net, _ = n._net(p, os.path.getmtime(p), 2); "
            "print(os.environ.get('OMP_WAIT_POLICY'), net.opt.openmp_blocktime, net.opt.num_threads)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-300:]
    assert proc.stdout.split() == ["PASSIVE", "0", "2"]


@pytest.mark.slow
def test_deploy_fixes_the_given_dims_of_a_dynamic_bert(tiny_bert, tmp_path):
    """pnnx leaves shape arithmetic over symbolic dims unlowered: deploy --target ncnn with --dim fixes them and
    says so; convert alone refuses with the --fix-dims hint."""
    import onnxdeploy
    from onnxdeploy.errors import UnsupportedError

    with pytest.raises(UnsupportedError) as err:
        targets.convert(onnxdeploy.legalize(tiny_bert, "ncnn").model, "ncnn", tmp_path / "d.param")
    assert "--fix-dims" in err.value.hint
    rep = onnxdeploy.deploy(tiny_bert, target="ncnn", output_dir=tmp_path / "out", dims={"batch": 1, "sequence": 16},
                            skip=["benchmark"])
    steps = {s.name: s for s in rep.steps}
    assert any("ncnn needs static shapes" in n and "batch=1, sequence=16" in n for n in steps["optimize"].notes)
    assert steps["convert"].status == "passed" and steps["convert"].verification.passed
