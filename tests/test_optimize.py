"""`onnxdeploy optimize`: pipeline behaviour, verification, skipping a broken pass, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxdeploy import examples
from onnxdeploy.errors import OutputsDisagree, UserInputError
from onnxdeploy._optimize import optimize

F = TensorProto.FLOAT


def _model(nodes, inputs, outputs, inits=(), opsets=(("", 17),)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])


def _ops(model: ir.Model) -> list[str]:
    return [n.op_type for n in model.graph]


def test_conv_bn_silu_fuses_keeps_symbolic_dims_and_verifies_at_two_shapes():
    result = optimize(examples.conv_bn_silu())
    assert "BatchNormalization" not in result.report.after.ops
    assert result.report.before.nodes == 4 and result.report.after.nodes == 3
    dims = [d.value if hasattr(d, "value") else d for d in result.model.graph.inputs[0].shape]
    assert dims == ["batch", 3, "height", "width"]
    assert len(result.report.verification) == 2  # two different shapes because dims are symbolic
    assert all(c.passed for c in result.report.verification)
    assert result.report.after.parameter_bytes < result.report.before.parameter_bytes
    onnx.checker.check_model(ir.serde.serialize_model(result.model), full_check=True)


def test_dim_fixes_shape_and_folds_shape_computation():
    proto = _model(
        [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Reshape", ["x", "s"], ["r"]),
         helper.make_node("Relu", ["r"], ["y"])],
        [("x", F, ["batch", 4])], [("y", F, ["batch", 4])],
    )
    kept = optimize(proto)
    assert "Shape" in _ops(kept.model) or "Reshape" not in _ops(kept.model)
    fixed = optimize(proto, dims={"batch": 2}, fix_dims=True)
    assert _ops(fixed.model) == ["Relu"]
    assert list(fixed.model.graph.inputs[0].shape) == [2, 4]
    with pytest.raises(UserInputError, match="no symbolic dim named 'bach'") as err:
        optimize(proto, dims={"bach": 2})
    assert "batch" in err.value.hint


def _constant_of_shape_model(rows: int):
    return _model(
        [helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", F, [1], [1.0])),
         helper.make_node("Add", ["x", "big"], ["y"])],
        [("x", F, [rows, 1024])], [("y", F, [rows, 1024])], {"shape": np.array([rows, 1024], dtype=np.int64)},
    )


def _tile_model(rows: int):
    return _model(
        [helper.make_node("Tile", ["row", "reps"], ["big"]), helper.make_node("Add", ["x", "big"], ["y"])],
        [("x", F, [rows, 1024])], [("y", F, [rows, 1024])],
        {"row": np.arange(1024, dtype=np.float32).reshape(1, 1024), "reps": np.array([rows, 1], dtype=np.int64)},
    )


def test_constant_of_shape_is_never_materialized():
    big = optimize(_constant_of_shape_model(512))  # would be a 2 MB weight
    assert "ConstantOfShape" in _ops(big.model)
    assert big.report.after.parameter_bytes < 1 << 20


def test_constant_folding_respects_size_limit():
    kept = optimize(_tile_model(512))  # Tile would fold into a 2 MB constant: above the default 1 MB limit
    assert "Tile" in _ops(kept.model)
    assert kept.report.after.parameter_bytes < 1 << 20
    folded = optimize(_tile_model(512), fold_limit_bytes=4 << 20)
    assert _ops(folded.model) == ["Add"]
    assert folded.report.after.parameter_bytes >= 2 << 20


def test_shared_weights_stay_shared():
    w = np.random.default_rng(0).standard_normal((8, 8)).astype(np.float32)
    proto = _model(
        [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("MatMul", ["a", "w"], ["b"]),
         helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]), helper.make_node("MatMul", ["b", "wt"], ["y"])],
        [("x", F, ["n", 8])], [("y", F, ["n", 8])], {"w": w},
    )
    result = optimize(proto)
    assert result.report.after.parameter_bytes <= result.report.before.parameter_bytes * 2
    users = [n for n in result.model.graph if n.op_type == "MatMul" and n.inputs[1].name == "w"]
    assert len(users) == 2  # both tied uses read the one initializer


def test_custom_domain_op_passes_through():
    proto = _model(
        [helper.make_node("Identity", ["x"], ["i"]),
         helper.make_node("MyOp", ["i"], ["y"], domain="my.domain", alpha=0.5)],
        [("x", F, [2])], [("y", F, [2])], opsets=(("", 17), ("my.domain", 1)),
    )
    result = optimize(proto, verify=False)
    node = [n for n in result.model.graph if n.domain == "my.domain"]
    assert len(node) == 1 and node[0].op_type == "MyOp" and node[0].attributes["alpha"].as_float() == 0.5
    assert result.model.opset_imports["my.domain"] == 1
    assert result.report.verification == []


class BrokenPass(ir.passes.InPlacePass):
    """Deliberately wrong: turns every Relu into a Sigmoid."""

    name = "broken"

    def call(self, model):
        changed = False
        for node in model.graph:
            if node.op_type == "Relu":
                node.op_type = "Sigmoid"  # type: ignore[misc]
                changed = True
        return ir.passes.PassResult(model, modified=changed)


def _relu_model():
    return _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2, 3])], [("y", F, [2, 3])])


@pytest.mark.parametrize("verify_each", [True, False])
def test_broken_pass_is_named_and_skipped(verify_each):
    result = optimize(_relu_model(), extra_passes=[BrokenPass()], verify_each=verify_each)
    skipped = result.report.skipped
    assert [p.name for p in skipped] == ["broken"]
    assert "broke numerics" in skipped[0].error and "MISMATCH" in skipped[0].error
    assert _ops(result.model) == ["Relu"]
    assert result.report.verified is True
    assert result.to_dict()["skipped"][0]["name"] == "broken"
    if not verify_each:
        assert "re-ran with a check after every step" in result.report.notes[0]


def test_crashing_pass_is_skipped_with_its_error():
    class Crash(ir.passes.InPlacePass):
        def call(self, model):
            raise RuntimeError("boom")

    result = optimize(_relu_model(), extra_passes=[Crash()])
    assert [(p.name, p.error) for p in result.report.skipped] == [("Crash", "RuntimeError: boom")]


def test_bad_options_are_user_errors():
    with pytest.raises(UserInputError, match="unknown level 'max'"):
        optimize(_relu_model(), level="max")
    with pytest.raises(UserInputError, match="unknown runtime 'tvm'"):
        optimize(_relu_model(), for_runtime="tvm")


def test_for_runtime_onnxruntime_runs_offline_optimizer_and_verifies():
    result = optimize(examples.conv_bn_silu(), for_runtime="onnxruntime", level="extended")
    names = [p.name for p in result.report.passes]
    assert names[-1] == "onnxruntime" and not result.report.skipped
    assert result.report.verified is True


# ---------------------------------------------------------------- CLI


def test_cli_writes_output_and_prints_table(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "opt.onnx"
    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0 and out.exists()
    assert "BatchNormalization" in captured.out and "file size" in captured.out
    assert "verified optimized @ batch=1" in captured.err
    onnx.checker.check_model(onnx.load(out), full_check=True)


def test_cli_json(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "opt.onnx"
    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(out), "--json", "--verify-each", "--dim", "batch=1"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert data["before"]["ops"]["BatchNormalization"] == 1 and "BatchNormalization" not in data["after"]["ops"]
    assert data["dims"] == {"batch": 1} and data["verified"] is True
    assert data["output_bytes"] == out.stat().st_size


def test_cli_outputs_disagree_writes_nothing(conv_bn_silu_path, tmp_path, capsys, monkeypatch):
    from onnxdeploy.cli.main import main
    from onnxdeploy._numerics import compare_outputs

    def always_off(ref, got, **kw):  # every comparison fails: no pass can be skipped to fix it
        return compare_outputs(ref, {k: v + 1 for k, v in got.items()}, **kw)

    monkeypatch.setattr("onnxdeploy._verify.compare_outputs", always_off)
    out = tmp_path / "opt.onnx"
    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == OutputsDisagree.exit_code == 3
    assert "outputs differ from the original's" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_refuses_to_overwrite_input(conv_bn_silu_path, capsys):
    from onnxdeploy.cli.main import main

    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(conv_bn_silu_path)])
    assert rc == 1 and "would overwrite the input" in capsys.readouterr().err


def test_input_model_is_not_modified(conv_bn_silu_path):
    model = ir.serde.deserialize_model(examples.conv_bn_silu())
    optimize(model, dims={"batch": 1})
    assert [n.op_type for n in model.graph] == ["Conv", "BatchNormalization", "Sigmoid", "Mul"]
    assert model.graph.inputs[0].shape[0].value == "batch"
    before = conv_bn_silu_path.read_bytes()
    optimize(conv_bn_silu_path)
    assert conv_bn_silu_path.read_bytes() == before


# ---------------------------------------------------------------- lean verification and I/O


def _mlp_proto():
    rng = np.random.default_rng(0)
    inits = {"w1": rng.standard_normal((32, 64)).astype(np.float32),
             "w2": rng.standard_normal((64, 16)).astype(np.float32)}
    return _model(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "w2"], ["y"])],
        [("x", F, ["batch", 32])], [("y", F, ["batch", 16])], inits,
    )


def test_optimize_from_a_path_keeps_weights_memory_mapped(tmp_path):
    import mmap

    path = tmp_path / "mlp.onnx"
    onnx.save(_mlp_proto(), path)
    result = optimize(path)
    assert result.report.verified is True
    array = result.model.graph.initializers["w1"].const_value.numpy()
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = base.obj if isinstance(base, memoryview) else getattr(base, "base", None)
    assert isinstance(base, mmap.mmap)  # a view of the input file, not a copy
    np.testing.assert_array_equal(array, numpy_helper.to_array(_mlp_proto().graph.initializer[0]))


def test_verification_session_reads_the_models_own_weight_buffers():
    import onnxruntime as ort

    from onnxdeploy._verify import SharedWeightSession

    model = ir.serde.deserialize_model(_mlp_proto())
    weights = {name: np.ascontiguousarray(v.const_value.numpy()) for name, v in model.graph.initializers.items()}
    for name, array in weights.items():  # in-memory tensors: the session must use these very buffers
        model.graph.initializers[name].const_value = ir.Tensor(array, name=name)
    session = SharedWeightSession(model, None)
    assert all(any(np.shares_memory(k, w) for k in session.keep if isinstance(k, np.ndarray))
               for w in weights.values())
    assert all(isinstance(v.const_value, ir.Tensor) for v in model.graph.initializers.values())  # restored
    x = np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32)
    plain = ort.InferenceSession(_mlp_proto().SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run({"x": x})["y"], plain.run(None, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_original_that_runs_on_no_input_is_a_user_error_not_a_mismatch():
    proto = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
        [("x", F, ["n", 5])], [("y", F, [6, 5])], {"shape": np.array([6, 5], np.int64)},
    )
    with pytest.raises(UserInputError, match="cannot verify: the original model does not run") as err:
        optimize(proto)
    message = str(err.value)
    assert "at n=1:" in message and "at n=2:" in message  # the sizes tried ...
    assert "cannot be reshaped to the requested shape" in message  # ... and what onnxruntime said,
    assert "onnxruntime_src" not in message  # without its source location


def test_verification_retries_at_the_default_sizes_when_small_ones_do_not_run():
    # a 30x30 kernel without padding has no output at the small sizes (16, 24)
    kernel = np.ones((1, 1, 30, 30), np.float32)
    proto = _model(
        [helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Relu", ["c"], ["y"])],
        [("x", F, [1, 1, "h", "w_"])], [("y", F, None)], {"w": kernel},
    )
    result = optimize(proto)
    labels = [c.label for c in result.report.verification]
    assert labels == ["optimized @ h=224, w_=224", "optimized @ h=168, w_=168"]
    assert all(c.passed for c in result.report.verification)


def test_cli_output_is_an_ordinary_file(conv_bn_silu_path, tmp_path):
    import os
    import stat

    from onnxdeploy.cli.main import main

    out = tmp_path / "opt.onnx"
    assert main(["optimize", str(conv_bn_silu_path), "-o", str(out)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    onnx.checker.check_model(onnx.load(out), full_check=True)


def test_verification_falls_back_to_a_self_contained_session(monkeypatch):
    import onnxruntime as ort

    from onnxdeploy._verify import SharedWeightSession

    real = ort.InferenceSession

    def refuse_shared(data, sess_options=None, **kw):
        try:
            shared = sess_options.get_session_config_entry("session.disable_prepacking") == "1"
        except Exception:  # noqa: BLE001 - onnxruntime raises for an entry that is not set
            shared = False
        if shared:
            raise RuntimeError("kernel wants the weight at load time")
        return real(data, sess_options=sess_options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", refuse_shared)
    session = SharedWeightSession(ir.serde.deserialize_model(_mlp_proto()), None)
    assert session.keep == []
    x = np.ones((2, 32), np.float32)
    assert session.run({"x": x})["y"].shape == (2, 16)


def test_folded_transposed_weights_are_stored_contiguous():
    """A folded Transpose is a strided view; it is copied once, not by every verification session and the writer."""
    w = np.arange(12 * 8, dtype=np.float32).reshape(12, 8) / 100
    proto = _model(
        [helper.make_node("Transpose", ["w"], ["wt"], perm=[1, 0]), helper.make_node("MatMul", ["x", "wt"], ["y"])],
        [("x", F, [2, 3, 8])], [("y", F, [2, 3, 12])], {"w": w},
    )
    result = optimize(proto)
    assert _ops(result.model) == ["MatMul"]
    arrays = [v.const_value.numpy() for v in result.model.graph.initializers.values()]
    assert arrays and all(a.flags.c_contiguous for a in arrays)
    np.testing.assert_array_equal(arrays[0], w.T)


def _attention_like_model():
    """LayerNormalization(x + y) written out (the onnxscript ORT fusions make it a SkipLayerNormalization)."""
    h = 8
    return _model(
        [helper.make_node("Add", ["x", "y"], ["s"]),
         helper.make_node("LayerNormalization", ["s", "g", "b"], ["z"], axis=-1, epsilon=1e-5)],
        [("x", F, [1, 4, h]), ("y", F, [1, 4, h])], [("z", F, [1, 4, h])],
        {"g": np.ones(h, np.float32), "b": np.zeros(h, np.float32)},
    )


def test_ort_fusions_are_off_for_the_cpu_unless_asked():
    auto = optimize(_attention_like_model(), for_runtime="onnxruntime")
    assert "ort-fusions" not in [p.name for p in auto.report.passes]
    assert any("--ort-fusions" in n for n in auto.report.notes)
    asked = optimize(_attention_like_model(), for_runtime="onnxruntime", ort_fusions=True)
    step = next(p for p in asked.report.passes if p.name == "ort-fusions")
    assert step.modified and asked.report.verified is True


@pytest.mark.parametrize("for_runtime", [None, "onnxruntime"])
def test_ir3_model_with_initializers_as_inputs_is_optimized_and_verified(for_runtime):
    """Old (IR 3) models list every weight as a graph input too (onnx's light_* model zoo); a pass that adds a
    weight made them invalid, and the weights-as-inputs blocked folding."""
    proto = examples.conv_bn_silu()
    proto.ir_version = 3
    proto.graph.input.extend(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                             for t in proto.graph.initializer)
    result = optimize(proto, for_runtime=for_runtime)
    assert not result.report.skipped and result.report.verified is True
    assert "BatchNormalization" not in result.report.after.ops
    assert result.model.ir_version == 4 and [v.name for v in result.model.graph.inputs] == ["input"]
    assert any("IR version 3 -> 4" in n for n in result.report.notes)


def test_verification_on_given_inputs_for_a_model_whose_inputs_must_be_valid(tmp_path, capsys):
    """Expand's shape comes from an input: synthesized values are not a valid shape, real ones are."""
    from onnxdeploy.cli.main import main

    proto = _model([helper.make_node("Expand", ["x", "shape"], ["e"]), helper.make_node("Relu", ["e"], ["y"])],
                   [("x", F, [3, 1]), ("shape", TensorProto.INT64, [2])], [("y", F, None)])
    path, out = tmp_path / "expand.onnx", tmp_path / "out.onnx"
    onnx.save(proto, path)
    assert main(["optimize", str(path), "-o", str(out)]) == 1
    assert "cannot verify" in capsys.readouterr().err and not out.exists()
    data = tmp_path / "test_data_set_0"
    data.mkdir()
    for i, (name, array) in enumerate([("x", np.ones((3, 1), np.float32)), ("shape", np.array([3, 4]))]):
        (data / f"input_{i}.pb").write_bytes(numpy_helper.from_array(array, name).SerializeToString())
    assert main(["optimize", str(path), "-o", str(out), "--inputs", str(data)]) == 0
    captured = capsys.readouterr()
    assert "verified optimized @ the given inputs: match" in " ".join((captured.out + captured.err).split())
    assert out.exists()


def test_original_that_onnxruntime_cannot_load_names_no_verify():
    proto = _model([helper.make_node("Relu", ["x"], ["y"])], [("x", F, [2])], [("y", F, [2])], opsets=(("", 1),))
    with pytest.raises(UserInputError, match="onnxruntime cannot load the original model") as err:
        optimize(proto)
    assert "--no-verify" in str(err.value.hint)


# ---------------------------------------------------------------- steps as data, skipped by name


def test_steps_return_results_with_their_counts():
    from onnxdeploy._optimize import StepResult, pipeline

    step = next(s for s in pipeline(level="extended") if s.name == "conv-bn")
    model = ir.serde.deserialize_model(examples.conv_bn_silu())
    result = step.run(model)
    assert isinstance(result, StepResult) and result.modified and result.details == {"rewrites": 1}
    report = optimize(examples.conv_bn_silu(), verify=False, skip=["fold"]).report  # (fold's rules fuse it first)
    assert next(p for p in report.passes if p.name == "conv-bn").details == {"rewrites": 1}


def test_pipeline_is_selected_from_the_step_table():
    from onnxdeploy._optimize import STEP_NAMES, pipeline

    basic = [s.name for s in pipeline(level="basic")]
    assert basic == ["fold", "fold-rest", "fold-shapes", "chains", "identity", "dedup-initializers", "dead-code",
                     "toposort"]
    ort = [s.name for s in pipeline(for_runtime="onnxruntime", ort_fusions=True)]
    assert ort[-5:] == ["ort-fusions", "merge-matmul", "conv-activation", "toposort", "onnxruntime"]
    assert set(basic) | set(ort) == set(STEP_NAMES)


def test_skip_by_name_leaves_the_step_out_and_reports_it():
    result = optimize(examples.conv_bn_silu(), skip=("fold", "conv-bn"), dims={"batch": 1})  # both fuse BN
    record = next(p for p in result.report.passes if p.name == "conv-bn")
    assert record.skipped and record.reason == "as asked" and record.error is None and not record.details
    assert "BatchNormalization" in _ops(result.model) and result.report.verified is True
    assert {"name": "conv-bn", "error": None, "reason": "as asked"} in result.to_dict()["skipped"]
    basic = optimize(_relu_model(), level="basic", skip=["conv-bn"], verify=False)  # not a basic step
    assert not basic.report.skipped and "--skip conv-bn: not a step at these options" in basic.report.notes[0]


def test_skip_takes_an_extra_pass_by_its_name():
    result = optimize(_relu_model(), extra_passes=[BrokenPass()], skip=["broken"])
    assert [(p.name, p.reason) for p in result.report.skipped] == [("broken", "as asked")]
    assert _ops(result.model) == ["Relu"] and "re-ran" not in " ".join(result.report.notes)


def test_unknown_step_name_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserInputError, match=r"^--skip fold-reset: no such optimize step; did you mean fold-rest"):
        optimize(_relu_model(), skip=["fold-reset"])


def test_cli_skip(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "opt.onnx"
    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(out), "--skip", "conv-bn", "--skip", "fold", "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["after"]["ops"]["BatchNormalization"] == 1
    assert [(s["name"], s["reason"]) for s in data["skipped"]] == [("fold", "as asked"), ("conv-bn", "as asked")]
    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(tmp_path / "t.onnx"), "--skip", "conv-bn"])
    captured = capsys.readouterr()
    assert rc == 0 and "as asked" in captured.out and "skipped pass" not in captured.err


def test_cli_unknown_step_exits_1_naming_the_closest(conv_bn_silu_path, tmp_path, capsys):
    from onnxdeploy.cli.main import main

    out = tmp_path / "opt.onnx"
    rc = main(["optimize", str(conv_bn_silu_path), "-o", str(out), "--skip", "merge-matmuls"])
    err = capsys.readouterr().err
    assert rc == 1 and not out.exists() and "Traceback" not in err
    assert "error: --skip merge-matmuls: no such optimize step; did you mean merge-matmul?" in err


def test_cli_help_lists_the_step_names_of_the_step_table():
    from onnxdeploy.cli.optimize import STEPS
    from onnxdeploy._optimize import STEP_NAMES

    assert tuple(STEPS.split(", ")) == STEP_NAMES


def test_output_declared_symbolic_stays_symbolic_when_folding_proves_it_static():
    # a TorchScript export declares [batch, dim_1, 768] where dim_1 is always 128: folding's shape inference makes
    # it static, which would change the interface (and get the fold step skipped); the declared dims are kept
    graph = helper.make_graph(
        [helper.make_node("Add", ["c1", "c2"], ["c"]),
         helper.make_node("Mul", ["x", "c"], ["m"]),
         helper.make_node("ReduceSum", ["m", "axes"], ["y"], keepdims=0)],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d"])],
        [numpy_helper.from_array(np.ones(4, np.float32), "c1"), numpy_helper.from_array(np.ones(4, np.float32), "c2"),
         numpy_helper.from_array(np.array([0]), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    result = optimize(model, verify_each=True)
    assert not result.report.skipped and result.report.verified
    assert next(p for p in result.report.passes if p.name == "fold").modified
    assert result.model.graph.outputs[0].shape == ir.Shape(["d"])
