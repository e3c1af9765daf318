"""Bounded work on hostile models: wall time and peak RSS of each verb, each in a fresh process.

Models (built with onnx.helper in a temporary folder):
- ``chain-100k``: a chain of 50,000 Add + 50,000 Relu (100,000 nodes), [1, 4] float tensors;
- ``loop-1e12``: a Loop with a constant trip count of 10^12 whose condition never changes;
- ``if-nested-30``: If nodes nested 30 deep (a MatMul in the innermost branch);
- ``constant-of-shape-1e12``: ConstantOfShape([10^6, 10^6]) feeding a ReduceSum (folding would allocate 4 TB).

Targets (issue 13): inspect < 10 s and optimize < 60 s on the 100k-node model; every other run ends (exit 0, or
exit 1 with one line) well within the 300 s timeout. Run: ``.venv/bin/python benchmarks/bounded.py [--quick]``
(``--quick``: 20k nodes), writes ``benchmarks/results/bounded.md``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ONNXDEPLOY = Path(sys.executable).parent / "onnxdeploy"
TIMEOUT_S = 300


def build(folder: Path, nodes: int) -> dict[str, Path]:
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper, numpy_helper

    def model(graph):
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    paths = {}
    # chain
    chain, cur = [], "x"
    for i in range(nodes // 2):
        chain.append(helper.make_node("Add", [cur, "w"], [f"a{i}"], name=f"add{i}"))
        chain.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"))
        cur = f"r{i}"
    graph = helper.make_graph(chain, "chain", [helper.make_tensor_value_info("x", T.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(cur, T.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.ones((1, 4), np.float32), "w")])
    paths[f"chain-{nodes // 1000}k"] = folder / "chain.onnx"
    onnx.save(model(graph), paths[f"chain-{nodes // 1000}k"])
    # loop
    body = helper.make_graph(
        [helper.make_node("Constant", [], ["one"], value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("Add", ["v_in", "one"], ["v_out"]), helper.make_node("Identity", ["c_in"], ["c_out"])],
        "body", [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("c_in", T.BOOL, []),
                 helper.make_tensor_value_info("v_in", T.FLOAT, [1])],
        [helper.make_tensor_value_info("c_out", T.BOOL, []), helper.make_tensor_value_info("v_out", T.FLOAT, [1])])
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["M"], value=numpy_helper.from_array(np.array(10**12, np.int64))),
         helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.array(True))),
         helper.make_node("Constant", [], ["v0"], value=numpy_helper.from_array(np.array([0.0], np.float32))),
         helper.make_node("Loop", ["M", "c", "v0"], ["vf"], body=body), helper.make_node("Add", ["x", "vf"], ["y"])],
        "loop", [helper.make_tensor_value_info("x", T.FLOAT, [1])], [helper.make_tensor_value_info("y", T.FLOAT, [1])])
    paths["loop-1e12"] = folder / "loop.onnx"
    onnx.save(model(graph), paths["loop-1e12"])

    # nested If
    def branch(depth, tag):
        if depth == 0:
            nodes_ = [helper.make_node("MatMul", ["x", "W"], [f"o{tag}"])]
        else:
            other = helper.make_graph([helper.make_node("Neg", ["x"], [f"n{tag}"])], f"e{tag}", [],
                                      [helper.make_tensor_value_info(f"n{tag}", T.FLOAT, [1, 4])])
            nodes_ = [helper.make_node("If", ["c"], [f"o{tag}"], then_branch=branch(depth - 1, tag + "t"),
                                       else_branch=other)]
        return helper.make_graph(nodes_, f"b{tag}", [], [helper.make_tensor_value_info(f"o{tag}", T.FLOAT, [1, 4])])

    top = branch(30, "r")
    graph = helper.make_graph(list(top.node), "nested",
                              [helper.make_tensor_value_info("x", T.FLOAT, [1, 4]),
                               helper.make_tensor_value_info("c", T.BOOL, [])],
                              [helper.make_tensor_value_info("or", T.FLOAT, [1, 4])],
                              [numpy_helper.from_array(np.ones((4, 4), np.float32), "W")])
    paths["if-nested-30"] = folder / "nested.onnx"
    onnx.save(model(graph), paths["if-nested-30"])
    # ConstantOfShape bomb
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["s"], value=numpy_helper.from_array(np.array([10**6, 10**6], np.int64))),
         helper.make_node("ConstantOfShape", ["s"], ["big"],
                          value=numpy_helper.from_array(np.array([1.0], np.float32))),
         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0), helper.make_node("Add", ["x", "total"], ["y"])],
        "cos", [helper.make_tensor_value_info("x", T.FLOAT, [])], [helper.make_tensor_value_info("y", T.FLOAT, [])])
    paths["constant-of-shape-1e12"] = folder / "cos.onnx"
    onnx.save(model(graph), paths["constant-of-shape-1e12"])
    return paths


def measure(args: list[str]) -> tuple[float, int, float, str]:
    """(seconds, exit code, peak RSS MB of the child, last line of stderr)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="120")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    try:
        proc = subprocess.run([str(ONNXDEPLOY), *args], capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = -1, f"timed out after {TIMEOUT_S} s"
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    last = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "")
    return seconds, rc, max(peak, before) / 1024, last[:110]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="20k nodes instead of 100k")
    opts = parser.parse_args()
    nodes = 20_000 if opts.quick else 100_000
    rows = []
    with tempfile.TemporaryDirectory(prefix="onnxdeploy-bounded-") as tmp:
        folder = Path(tmp)
        paths = build(folder, nodes)
        chain = next(p for k, p in paths.items() if k.startswith("chain"))
        chain_name = next(k for k in paths if k.startswith("chain"))
        runs = [
            (chain_name, ["inspect", str(chain)]),
            (chain_name, ["check", str(chain)]),
            (chain_name, ["probe", str(chain), "-o", str(folder / "probe.npz")]),
            (chain_name, ["edit", str(chain), "--cleanup", "-o", str(folder / "edit.onnx")]),
            (chain_name, ["optimize", str(chain), "-o", str(folder / "opt.onnx")]),
            ("loop-1e12", ["optimize", str(paths["loop-1e12"]), "-o", str(folder / "loop-opt.onnx")]),
            ("loop-1e12", ["edit", str(paths["loop-1e12"]), "--cleanup", "-o", str(folder / "loop-edit.onnx")]),
            ("loop-1e12", ["legalize", str(paths["loop-1e12"]), "-o", str(folder / "loop-leg.onnx")]),
            ("loop-1e12", ["check", str(paths["loop-1e12"])]),
            ("if-nested-30", ["quantize", str(paths["if-nested-30"]), "-o", str(folder / "q.onnx")]),
            ("if-nested-30", ["legalize", str(paths["if-nested-30"]), "--target", "openvino", "-o",
                              str(folder / "leg.onnx")]),
            ("constant-of-shape-1e12", ["optimize", str(paths["constant-of-shape-1e12"]), "-o",
                                        str(folder / "cos-opt.onnx"), "--no-verify"]),
        ]
        for name, args in runs:
            seconds, rc, peak, last = measure(args)
            print(f"{name:24} {args[0]:9} {seconds:7.1f} s  rc={rc}  {last}", flush=True)
            rows.append((name, args[0], seconds, rc, last))
    out = ROOT / "benchmarks" / "results" / "bounded.md"
    lines = [
        "# Bounded work on hostile models",
        "",
        f"Machine: {machine('onnx', 'onnx-ir', 'onnxscript', 'onnxruntime', 'openvino')}",
        "",
        f"Command: `.venv/bin/python benchmarks/bounded.py{' --quick' if opts.quick else ''}` (each run a fresh "
        f"`onnxdeploy` process, OMP_NUM_THREADS=1, timeout {TIMEOUT_S} s; the machine is shared, so times are noisy)",
        "",
        "| model | verb | wall s | exit | result |",
        "|---|---|---:|---:|---|",
    ]
    for name, verb, seconds, rc, last in rows:
        result = last.replace("|", "\\|") if rc else "ok"
        lines.append(f"| {name} | {verb} | {seconds:.1f} | {rc} | {result} |")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
