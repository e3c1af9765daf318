"""Bounded work: folding never runs Loops nor allocates above its limit, deep nests and endless Loops are refused
up front, graph walks are linear, big tables are capped."""

from __future__ import annotations

import time

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from onnxdeploy.errors import UnsupportedError


def _model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _const(name, array):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array)))


def loop_model(trips: int, *, cond_passes_through: bool = True) -> onnx.ModelProto:
    body_nodes = [_const("one", np.array([1.0], np.float32)), helper.make_node("Add", ["v_in", "one"], ["v_out"])]
    if cond_passes_through:
        body_nodes.append(helper.make_node("Identity", ["c_in"], ["c_out"]))
    else:  # stops after the first iteration
        body_nodes.append(helper.make_node("Not", ["c_in"], ["c_out"]))
    body = helper.make_graph(body_nodes, "body",
                             [helper.make_tensor_value_info("i", T.INT64, []),
                              helper.make_tensor_value_info("c_in", T.BOOL, []),
                              helper.make_tensor_value_info("v_in", T.FLOAT, [1])],
                             [helper.make_tensor_value_info("c_out", T.BOOL, []),
                              helper.make_tensor_value_info("v_out", T.FLOAT, [1])])
    return _model([_const("M", np.array(trips, np.int64)), _const("c", np.array(True)),
                   _const("v0", np.array([0.0], np.float32)),
                   helper.make_node("Loop", ["M", "c", "v0"], ["vf"], body=body, name="big_loop"),
                   helper.make_node("Add", ["x", "vf"], ["y"])],
                  [helper.make_tensor_value_info("x", T.FLOAT, [1])], [helper.make_tensor_value_info("y", T.FLOAT, [1])])


def nested_if_model(depth: int) -> onnx.ModelProto:
    def branch(d, tag):
        if d == 0:
            nodes = [helper.make_node("MatMul", ["x", "W"], [f"o{tag}"])]
        else:
            other = helper.make_graph([helper.make_node("Neg", ["x"], [f"n{tag}"])], f"e{tag}", [],
                                      [helper.make_tensor_value_info(f"n{tag}", T.FLOAT, [1, 4])])
            nodes = [helper.make_node("If", ["c"], [f"o{tag}"], then_branch=branch(d - 1, tag + "t"),
                                      else_branch=other)]
        return helper.make_graph(nodes, f"b{tag}", [], [helper.make_tensor_value_info(f"o{tag}", T.FLOAT, [1, 4])])

    top = branch(depth, "r")
    return _model(list(top.node), [helper.make_tensor_value_info("x", T.FLOAT, [1, 4]),
                                   helper.make_tensor_value_info("c", T.BOOL, [])],
                  [helper.make_tensor_value_info("or", T.FLOAT, [1, 4])],
                  [numpy_helper.from_array(np.ones((4, 4), np.float32), "W")])


def chain_model(nodes: int) -> onnx.ModelProto:
    chain, cur = [], "x"
    for i in range(nodes // 2):
        chain += [helper.make_node("Add", [cur, "w"], [f"a{i}"], name=f"add{i}"),
                  helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}")]
        cur = f"r{i}"
    return _model(chain, [helper.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                  [helper.make_tensor_value_info(cur, T.FLOAT, [1, 4])],
                  [numpy_helper.from_array(np.ones((1, 4), np.float32), "w")])


# ---------------------------------------------------------------- constant folding


def test_fold_guard_refuses_control_flow_and_large_outputs():
    from onnxdeploy.passes.fold_remaining import fold_guard, predicted_elements

    model = ir.from_proto(_model(
        [_const("s", np.array([10**6, 10**6], np.int64)),
         helper.make_node("ConstantOfShape", ["s"], ["big"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
         _const("small_s", np.array([2, 3], np.int64)),
         helper.make_node("ConstantOfShape", ["small_s"], ["small"]),
         _const("r0", np.array(0, np.int64)), _const("r1", np.array(10**10, np.int64)),
         _const("r2", np.array(1, np.int64)), helper.make_node("Range", ["r0", "r1", "r2"], ["range"]),
         helper.make_node("Expand", ["x", "s"], ["expanded"]),
         helper.make_node("Add", ["big", "small"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT, [1, 1])], [helper.make_tensor_value_info("y", T.FLOAT, None)]))
    nodes = {n.outputs[0].name: n for n in model.graph}
    guard = fold_guard(1 << 18)
    assert predicted_elements(nodes["big"]) == 10**12 and guard(nodes["big"]) is False
    assert predicted_elements(nodes["small"]) == 6 and guard(nodes["small"]) is None
    assert predicted_elements(nodes["range"]) == 10**10 and guard(nodes["range"]) is False
    assert predicted_elements(nodes["expanded"]) == 10**12 and guard(nodes["expanded"]) is False
    loop = ir.from_proto(loop_model(10**12))
    assert guard(next(n for n in loop.graph if n.op_type == "Loop")) is False


def test_optimize_never_materializes_a_huge_constant(tmp_path):
    from onnxdeploy._optimize import optimize

    proto = _model(
        [_const("s", np.array([10**6, 10**6], np.int64)),
         helper.make_node("ConstantOfShape", ["s"], ["big"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0), helper.make_node("Add", ["x", "total"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT, [])], [helper.make_tensor_value_info("y", T.FLOAT, [])])
    src = tmp_path / "cos.onnx"
    onnx.save(proto, src)
    start = time.perf_counter()
    result = optimize(src, verify=False)
    assert time.perf_counter() - start < 60
    assert "ConstantOfShape" in [n.op_type for g in result.model.graphs() for n in g]
    assert all(v.const_value is None or v.const_value.size < 1 << 20
               for v in result.model.graph.initializers.values())


def test_fold_remaining_pass_skips_large_and_control_flow():
    from onnxdeploy.passes.fold_remaining import FoldRemainingConstantsPass

    proto = _model(
        [_const("s", np.array([4096, 4096], np.int64)),
         helper.make_node("ConstantOfShape", ["s"], ["big"]),
         _const("t", np.array([2, 2], np.int64)), helper.make_node("ConstantOfShape", ["t"], ["small"]),
         helper.make_node("ReduceSum", ["big"], ["r"], keepdims=0),
         helper.make_node("ReduceSum", ["small"], ["q"], keepdims=0),
         helper.make_node("Add", ["r", "q"], ["rq"]), helper.make_node("Add", ["x", "rq"], ["y"])],
        [helper.make_tensor_value_info("x", T.FLOAT, [])], [helper.make_tensor_value_info("y", T.FLOAT, [])])
    model = ir.from_proto(proto)
    FoldRemainingConstantsPass(limit_elements=1 << 18)(model)
    ops = [n.op_type for n in model.graph]
    assert "ConstantOfShape" in ops  # the 16M-element one stays
    assert ops.count("ConstantOfShape") == 1  # the tiny one folded


# ---------------------------------------------------------------- endless Loops


def test_long_loops_found_in_proto_and_ir():
    from onnxdeploy._bounds import long_loops

    assert long_loops(loop_model(10**12)) == [("big_loop", 10**12)]
    assert long_loops(ir.from_proto(loop_model(10**12))) == [("big_loop", 10**12)]
    assert long_loops(loop_model(10)) == []
    assert long_loops(loop_model(10**12, cond_passes_through=False)) == []  # its condition can stop it


def test_run_refuses_an_endless_loop_quickly(tmp_path, capsys):
    from onnxdeploy.cli.main import main

    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(10**12), path)
    start = time.perf_counter()
    rc = main(["run", str(path)])
    err = capsys.readouterr().err
    assert rc == 1 and "runs 1000000000000 iterations" in err and "Traceback" not in err
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize("verb", ["optimize", "legalize"])
def test_verbs_refuse_an_endless_loop(tmp_path, capsys, verb):
    from onnxdeploy.cli.main import main

    path = tmp_path / "loop.onnx"
    onnx.save(loop_model(10**12), path)
    start = time.perf_counter()
    rc = main([verb, str(path), "-o", str(tmp_path / "out.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and "iterations" in err and "--no-verify" in err
    assert not (tmp_path / "out.onnx").exists()
    assert time.perf_counter() - start < 60


def test_run_watchdog_stops_a_long_run(tmp_path, monkeypatch):
    from onnxdeploy._run import RUN_TIMEOUT_ENV, create_session, run_session

    monkeypatch.setenv(RUN_TIMEOUT_ENV, "1")
    proto = loop_model(10**12, cond_passes_through=False)
    # a condition the static check cannot decide (computed), but that never becomes false
    body = proto.graph.node[3].attribute[0].g
    body.node[2].op_type = "Identity"
    body.node.append(helper.make_node("Or", ["c_in", "c_in"], ["c_or"]))
    body.node[2].input[0] = "c_in"
    body.node[2].output[0] = "c_tmp"
    body.node.append(helper.make_node("Or", ["c_tmp", "c_or"], ["c_out"]))
    session = create_session(proto)
    start = time.perf_counter()
    with pytest.raises(UnsupportedError, match="did not finish within 1 s"):
        run_session(session, {"x": np.ones(1, np.float32)})
    assert time.perf_counter() - start < 15


# ---------------------------------------------------------------- nesting depth


def test_subgraph_depth_limit():
    from onnxdeploy._bounds import MAX_SUBGRAPH_DEPTH, check_subgraph_depth, subgraph_depth

    assert subgraph_depth(nested_if_model(3)) == 3
    assert subgraph_depth(ir.from_proto(nested_if_model(3))) == 3
    check_subgraph_depth(nested_if_model(MAX_SUBGRAPH_DEPTH))
    with pytest.raises(UnsupportedError, match="more than 16 levels deep"):
        check_subgraph_depth(nested_if_model(30))


@pytest.mark.parametrize("verb", [["quantize"], ["legalize", "--target", "openvino"]])
def test_deep_nest_is_refused_quickly(tmp_path, capsys, verb):
    from onnxdeploy.cli.main import main

    path = tmp_path / "nested.onnx"
    onnx.save(nested_if_model(30), path)
    start = time.perf_counter()
    rc = main([verb[0], str(path), *verb[1:], "-o", str(tmp_path / "out.onnx")])
    err = capsys.readouterr().err
    assert rc == 1 and "levels deep" in err and "Traceback" not in err
    assert time.perf_counter() - start < 60


# ---------------------------------------------------------------- linear walks, capped tables


def test_all_graphs_matches_onnx_ir():
    from onnxdeploy._bounds import all_graphs, node_count

    model = ir.from_proto(nested_if_model(5))
    assert {id(g) for g in all_graphs(model)} == {id(g) for g in model.graphs()}
    assert node_count(model) == sum(1 for g in model.graphs() for _ in g)


def test_big_tables_are_capped(capsys):
    from onnxdeploy.cli import output

    start = time.perf_counter()
    output.show(output.table("Nodes", ["name"], ([f"n{i}"] for i in range(100_000))))
    out = capsys.readouterr().out
    assert time.perf_counter() - start < 10
    assert "n0" in out and f"n{output.MAX_TABLE_ROWS - 1}" in out and "n99999" not in out
    assert f"{100_000 - output.MAX_TABLE_ROWS} more rows" in out


@pytest.mark.slow
def test_inspect_100k_nodes_under_10_s(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(100_000), path)
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "onnxdeploy"), "inspect", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start < 10
