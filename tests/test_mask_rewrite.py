"""The attention-mask legalize rule: boolean mask logic -> additive float mask, equal on onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import _io as io
from engine_models import tiny_bert_static  # noqa: F401 - fixture


def _mask_model():
    """scores + Where(And(Cast(mask -> bool) broadcast, const), 0, -inf): transformers' pattern in miniature."""
    nodes = [
        helper.make_node("Cast", ["mask"], ["mb"], to=TensorProto.BOOL),
        helper.make_node("Unsqueeze", ["mb", "axes"], ["m4"]),
        helper.make_node("And", ["m4", "causal"], ["both"]),
        helper.make_node("Not", ["both"], ["masked"]),
        helper.make_node("Where", ["masked", "neg", "zero"], ["add_mask"]),
        helper.make_node("Add", ["scores", "add_mask"], ["s"]),
        helper.make_node("Softmax", ["s"], ["probs"], axis=-1),
    ]
    inits = [numpy_helper.from_array(np.array([1, 2], np.int64), "axes"),
             numpy_helper.from_array(np.tril(np.ones((6, 6), bool))[None, None], "causal"),
             numpy_helper.from_array(np.array(-np.inf, np.float32), "neg"),
             numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
    graph = helper.make_graph(nodes, "mask", [
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 2, 6, 6]),
        helper.make_tensor_value_info("mask", TensorProto.INT64, [1, 6])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _feeds(seed=0):
    rng = np.random.default_rng(seed)
    mask = (rng.random((1, 6)) > 0.4).astype(np.int64)
    mask[:, 0] = 1
    return {"scores": rng.standard_normal((1, 2, 6, 6)).astype(np.float32), "mask": mask}


def test_rewrite_removes_every_bool_and_is_exact():
    import onnx_ir as ir
    import onnxruntime as ort

    from onnxdeploy._rules import rewrite_bool_masks

    proto = _mask_model()
    m = ir.serde.deserialize_model(onnx.shape_inference.infer_shapes(proto))  # legalize types the model first
    assert rewrite_bool_masks(m) == 1
    out = ir.serde.serialize_model(m)
    onnx.checker.check_model(out)
    kinds = {n.op_type for n in out.graph.node}
    assert not kinds & {"Where", "And", "Not"}
    bools = [v for v in m.graph if any(o.dtype == ir.DataType.BOOL for o in v.outputs)]
    assert bools == []
    for seed in range(3):
        f = _feeds(seed)
        a = ort.InferenceSession(proto.SerializeToString()).run(None, f)[0]
        b = ort.InferenceSession(out.SerializeToString()).run(None, f)[0]
        np.testing.assert_array_equal(a, b)  # -inf became float32 min: softmax gives the same bits


def test_check_offers_the_rule_and_legalize_applies_it_for_ncnn(tmp_path):
    from onnxdeploy import legalize, targets

    path = tmp_path / "m.onnx"
    io.save(_mask_model(), path)
    rep = targets.check(path, "ncnn")
    mask = [p for p in rep.problems if p.what == "bool attention mask"]
    assert mask and mask[0].fix.startswith("legalize: boolean attention mask")
    res = legalize(path, "ncnn", inputs=_feeds(1))
    assert res.report.rules_applied == {"attention-mask": 1}
    assert res.report.verification.passed and res.report.verification.max_abs == 0


def test_targets_without_the_flag_keep_the_mask(tmp_path):
    from onnxdeploy import legalize

    path = tmp_path / "m.onnx"
    io.save(_mask_model(), path)
    assert "attention-mask" not in legalize(path, "onnxruntime").report.rules_applied


def test_tiny_bert_from_export(tiny_bert_static):
    """A 2-layer BERT (transformers config, random weights) exported by onnxdeploy.export: exact after rewrite."""
    import onnx_ir as ir
    import onnxruntime as ort

    from onnxdeploy._rules import rewrite_bool_masks

    m = io.load(tiny_bert_static)
    assert rewrite_bool_masks(m) >= 1
    out = ir.serde.serialize_model(m)
    assert not [n for n in out.graph.node if n.op_type in ("Where", "And", "GatherND")]
    rng = np.random.default_rng(0)
    mask = (rng.random((1, 16)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    feeds = {"input_ids": rng.integers(0, 1000, (1, 16)).astype(np.int64), "attention_mask": mask}
    a = ort.InferenceSession(str(tiny_bert_static)).run(None, feeds)[0]
    b = ort.InferenceSession(out.SerializeToString()).run(None, feeds)[0]
    np.testing.assert_array_equal(a, b)


def _embedding_model(axis_attr: bool = True, table_const: bool = True):
    """Gather(table[10, 4], ids) with the exporters' explicit axis=0, plus a Gather on a computed table (untouched)."""
    attrs = {"axis": 0} if axis_attr else {}
    nodes = [helper.make_node("Gather", ["table" if table_const else "x", "ids"], ["e"], **attrs),
             helper.make_node("Gather", ["x", "ids"], ["g"], axis=0), helper.make_node("Add", ["e", "g"], ["y"])]
    graph = helper.make_graph(nodes, "embed", [
        helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 5]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [10, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 4])],
        [numpy_helper.from_array(np.arange(40, dtype=np.float32).reshape(10, 4), "table")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_embedding_gather_loses_only_its_default_axis(tmp_path):
    """ncnn has no Gather layer; pnnx lowers Gather(table, ids) to Embed only without attributes."""
    from onnxdeploy import legalize, targets

    path = tmp_path / "e.onnx"
    io.save(_embedding_model(), path)
    problems = [p for p in targets.check(path, "ncnn").problems if p.what == "Gather"]
    assert len(problems) == 1 and len(problems[0].nodes) == 1 and problems[0].fix.startswith("legalize: embedding")
    feeds = {"ids": np.array([[0, 3, 9, 2, 2]], np.int64),
             "x": np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)}
    res = legalize(path, "ncnn", inputs=feeds)
    assert res.report.rules_applied == {"embedding-gather": 1}
    assert res.report.verification.passed and res.report.verification.max_abs == 0
    gathers = [n for n in res.model.graph if n.op_type == "Gather"]
    assert [len(n.attributes) for n in gathers] == [0, 1]  # the computed-table Gather keeps axis=0
    assert not [p for p in targets.check(res.model, "ncnn").problems if p.what == "Gather"]


def test_embedding_rule_only_for_targets_that_ask(tmp_path):
    from onnxdeploy import legalize

    path = tmp_path / "e.onnx"
    io.save(_embedding_model(), path)
    assert "embedding-gather" not in legalize(path, "mnn").report.rules_applied
    plain = tmp_path / "plain.onnx"
    io.save(_embedding_model(axis_attr=False), plain)
    assert "embedding-gather" not in legalize(plain, "ncnn").report.rules_applied  # already in pnnx's form
