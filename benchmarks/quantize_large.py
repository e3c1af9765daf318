"""Benchmark `onnxdeploy quantize` on a model over protobuf's 2 GB limit (weights in an external-data file).

Builds a stack of ``--layers`` blocks (MatMul hidden x hidden, bias Add, LayerNormalization, Relu; 36 x 4096 is
2.4 GB of float32 weights), then runs ``onnxdeploy quantize MODEL -o OUT --json`` in a fresh process and records its
wall time and peak RSS (``getrusage`` of the child) next to what it reports: speedup over fp32, cosine similarity,
output size. Writes ``benchmarks/results/quantize-large.md``.

    .venv/bin/python benchmarks/quantize_large.py                  # ~3 min on 2 cores, needs ~8 GB RAM, 5 GB disk
    .venv/bin/python benchmarks/quantize_large.py --layers 4 --hidden 1024 --out /tmp/small.md   # a quick check
    .venv/bin/python benchmarks/quantize_large.py --quantize-options=--transformer-fusion --out /tmp/fused.md
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]

NOTES = """## Where the memory goes (measured on this model, 2 cores)

- Before this benchmark existed (commit 5d8fa6e, `/usr/bin/time -v onnxdeploy quantize` on the same stack without
  LayerNormalization): 141 s and 19.1 GB peak (7.9x). The whole model was read into our process and copied to a
  scratch file first (12.6 s), symbolic shape inference ran and failed on it (protobuf's 2 GB limit), and
  onnxruntime's transformer optimizer left 9 GB of garbage in reference cycles until the process ended.
- Now a file that needs no rewrite (opset >= 13, IR >= 4) is read in place, pre-processing skips symbolic shape
  inference and writes external data, garbage is collected after each onnxruntime tool, and the transformer fusions
  are skipped over 2 GB (with them: 109 s, 14.0 GB,
  2.61x; measured with `--quantize-options=--transformer-fusion`).
- What is left is onnxruntime's: `quant_pre_process` holds two copies of the weights (4.8 GB), `quantize_dynamic`
  three (7.0 GB, the peak), timing fp32 against int8 one plus the int8 model.
"""


def build(path: Path, layers: int, hidden: int) -> None:
    """Write the model with all its weights in ``<name>.data``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        weight = rng.standard_normal((hidden, hidden), dtype=np.float32) / np.float32(np.sqrt(hidden))
        inits += [numpy_helper.from_array(weight, f"w{i}"),
                  numpy_helper.from_array(np.zeros(hidden, np.float32), f"b{i}"),
                  numpy_helper.from_array(np.ones(hidden, np.float32), f"g{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w{i}"], [f"m{i}"], name=f"layer{i}/matmul"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], name=f"layer{i}/bias"),
                  helper.make_node("LayerNormalization", [f"a{i}", f"g{i}", f"b{i}"], [f"n{i}"], axis=-1,
                                   name=f"layer{i}/norm"),
                  helper.make_node("Relu", [f"n{i}"], [f"r{i}"], name=f"layer{i}/relu")]
        x = f"r{i}"
    graph = helper.make_graph(nodes, "matmul_stack",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", hidden])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "sequence", hidden])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path), save_as_external_data=True, location=path.name + ".data")


def run_quantize(model: Path, out: Path, options: list[str]) -> dict:
    cli = Path(sys.executable).with_name("onnxdeploy")
    start = time.perf_counter()
    proc = subprocess.run([str(cli), "quantize", str(model), "-o", str(out), "--json", *options],
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if proc.returncode != 0:
        raise SystemExit(f"onnxdeploy quantize failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {"wall": wall, "peak_mb": peak_mb, "report": json.loads(proc.stdout)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=36)
    parser.add_argument("--hidden", type=int, default=4096)
    parser.add_argument("--work", default=str(ROOT / "build" / "quantize-large"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quantize-large.md"))
    parser.add_argument("--quantize-options", default="", help="extra options, e.g. '--transformer-fusion'")
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = work / f"stack{args.layers}x{args.hidden}.onnx"
    if not (model.exists() and Path(f"{model}.data").exists()):
        build(model, args.layers, args.hidden)
    size = model.stat().st_size + Path(f"{model}.data").stat().st_size
    result = run_quantize(model, work / "stack.int8.onnx", args.quantize_options.split())
    report = result["report"]
    command = " ".join(["benchmarks/quantize_large.py"] + sys.argv[1:])
    lines = [
        "# `onnxdeploy quantize` on a model over 2 GB",
        "",
        f"Command: `.venv/bin/python {command}`.",
        f"Machine: {machine('onnx', 'onnxruntime')}.",
        "",
        f"Model: {args.layers} blocks of MatMul {args.hidden}x{args.hidden} + Add + LayerNormalization + Relu, "
        f"weights in an external-data file; options: {args.quantize_options or 'the defaults'} (`auto`: dynamic "
        "int8 for a MatMul model). Wall time and "
        "peak RSS are those of the whole `onnxdeploy quantize` process, imports included.",
        "",
        "| model size | wall s | peak RSS MB | RSS / size | speedup vs fp32 | cosine | output size |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {size / 1e6:.0f} MB | {result['wall']:.0f} | {result['peak_mb']:.0f} | "
        f"{result['peak_mb'] * 2**20 / size:.1f} | {report.get('speedup') or float('nan'):.2f}x | "
        f"{report.get('cosine') or float('nan'):.5f} | {report['output_bytes'] / 1e6:.0f} MB |",
        "",
        NOTES,
    ]
    from onnxdeploy._io import atomic_write_text

    atomic_write_text(args.out, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
