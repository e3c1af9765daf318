"""Benchmark `onnxdeploy probe` (every intermediate tensor) against a plain run, Polygraphy and the article's way.

Run: ``.venv/bin/python benchmarks/debug.py [--rounds 3] [--sample 16]``; writes ``benchmarks/results/debug.md``.

On ResNet-50 (``corpus.export_corpus_model("resnet50", ...)``, dynamo export, exporter optimizer on), batch 1x3x224x224:

1. In-process (imports and model load excluded for the plain run, included for probe): a plain onnxruntime run
   (session + run) vs ``probe(model)`` capturing every node output (session + run + stats), and with ``--max-memory``.
2. Whole CLI commands, wall time of a fresh process: ``onnxdeploy probe MODEL --all -o dump.npz`` vs
   ``polygraphy run MODEL --onnxrt --onnx-outputs mark all`` (with and without ``--save-outputs``).
3. The seed article's step 4: one new session per node whose output is wanted, measured on a sample of nodes spread
   over the graph and extrapolated to all of them (the full loop takes about a minute on this machine).

Each measurement runs in a fresh subprocess; rounds interleave the variants; the median of ``--rounds`` is reported,
with the peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent

PLAIN = """
import time, json, numpy as np, resource
import onnxruntime as ort
ort.set_default_logger_severity(3)
path = {path!r}
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
t0 = time.perf_counter()
sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
t1 = time.perf_counter()
out = sess.run(None, {{sess.get_inputs()[0].name: x}})
t2 = time.perf_counter()
print(json.dumps({{"seconds": t2 - t0, "session": t1 - t0, "run": t2 - t1}}))
"""

PROBE = """
import time, json, numpy as np
from onnxdeploy.debug import probe
import onnx
name = onnx.load({path!r}, load_external_data=False).graph.input[0].name
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
import onnxruntime, onnx_ir  # imports excluded, as for the plain run
t0 = time.perf_counter()
r = probe({path!r}, inputs={{name: x}}, max_memory={max_memory!r}, out={out!r})
t1 = time.perf_counter()
print(json.dumps({{"seconds": t1 - t0, "tensors": len(r.infos), "runs": r.runs}}))
"""

ARTICLE = """
import time, json, numpy as np, onnx
import onnxruntime as ort
ort.set_default_logger_severity(3)
model = onnx.load({path!r})
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
outputs = [o for n in model.graph.node for o in n.output[:1] if o]
step = max(1, len(outputs) // {sample})
sample = outputs[::step][:{sample}]
t0 = time.perf_counter()
for name in sample:  # the article: add the node output to the graph outputs, build a new session, run
    m = onnx.ModelProto(); m.CopyFrom(model)
    m.graph.output.extend([onnx.ValueInfoProto(name=name)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.run([name], {{model.graph.input[0].name: x}})
t1 = time.perf_counter()
print(json.dumps({{"seconds": t1 - t0, "sampled": len(sample), "nodes": len(outputs)}}))
"""


def child(code: str) -> tuple[dict, float, float]:
    """Run ``code`` in a fresh interpreter: (its JSON line, wall seconds, peak RSS MB of that child)."""
    return command([PY, "-c", code], parse=True)


LAUNCHER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "wall = time.perf_counter() - t\n"
    "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'rc': p.returncode, 'wall': wall, 'rss': rss, 'out': p.stdout[-4000:],\n"
    "                  'err': p.stderr[-2000:]}))\n"
)


def command(argv: list[str], *, parse: bool = False) -> tuple[dict, float, float]:
    """Run ``argv`` under a fresh launcher process, so the peak RSS measured is this command's own."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.run([PY, "-c", LAUNCHER, *argv], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    report = json.loads(proc.stdout)
    if report["rc"] != 0:
        raise RuntimeError(f"{argv[:3]} failed ({report['rc']}): {report['err']}")
    data = json.loads(report["out"].strip().splitlines()[-1]) if parse else {}
    return data, report["wall"], report["rss"]


def median(rows: list[tuple[dict, float, float]], key: str | None = None) -> tuple[float, float]:
    values = [r[0][key] if key else r[1] for r in rows]
    return statistics.median(values), max(r[2] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=16, help="nodes measured for the article's per-node way")
    parser.add_argument("--model", help="an .onnx file instead of the corpus ResNet-50")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "benchmarks"))
    if args.model:
        path = Path(args.model)
    else:
        from corpus import export_corpus_model

        path = export_corpus_model("resnet50", ROOT / "build" / "debugcorpus")
    path = path.resolve()
    tmp = Path(tempfile.mkdtemp(prefix="debugbench-"))
    dump = tmp / "dump.npz"
    began = time.perf_counter()
    r = args.rounds

    plain, probed, bounded, cli, poly, poly_save = [], [], [], [], [], []
    for _ in range(r):  # interleaved, so a burst of load from other jobs hits every variant alike
        plain.append(child(PLAIN.format(path=str(path))))
        probed.append(child(PROBE.format(path=str(path), max_memory=None, out=None)))
        bounded.append(child(PROBE.format(path=str(path), max_memory="64MB", out=str(dump))))
        cli.append(command([str(BIN / "onnxdeploy"), "probe", str(path), "--all", "-o", str(dump), "--json"]))
        poly.append(command([str(BIN / "polygraphy"), "run", str(path), "--onnxrt", "--onnx-outputs", "mark", "all"]))
        poly_save.append(command([str(BIN / "polygraphy"), "run", str(path), "--onnxrt", "--onnx-outputs", "mark",
                                  "all", "--save-outputs", str(tmp / "poly.json")]))
    article = child(ARTICLE.format(path=str(path), sample=args.sample))

    plain_s, plain_rss = median(plain, "seconds")
    probe_s, probe_rss = median(probed, "seconds")
    bounded_s, bounded_rss = median(bounded, "seconds")
    cli_s, cli_rss = median(cli)
    poly_s, poly_rss = median(poly)
    poly_save_s, poly_save_rss = median(poly_save)
    info = probed[0][0]
    per_node = article[0]["seconds"] / article[0]["sampled"]
    nodes = article[0]["nodes"]
    lines = [
        "# `onnxdeploy probe` vs a plain run, Polygraphy and the article's one-session-per-node way",
        "",
        f"Command: `.venv/bin/python benchmarks/debug.py --rounds {r} --sample {args.sample}` "
        f"({(time.perf_counter() - began) / 60:.1f} min).",
        f"Machine: {machine('onnx', 'onnxruntime', 'polygraphy')}. Shared with other jobs while it ran, so timings are noisy.",
        "",
        f"Model: `{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` "
        f"(ResNet-50, dynamo export, exporter optimizer on, random weights; {nodes} nodes, {info['tensors']} node "
        f"outputs), input 1x3x224x224, onnxruntime CPU with default threads. Median of {r} rounds (variants interleaved), each a fresh process; "
        "peak RSS of the largest of them.",
        "",
        "| what | how | seconds | vs baseline | peak RSS MB |",
        "|---|---|---:|---:|---:|",
        f"| plain run (baseline 1) | `InferenceSession` + `run` in process | {plain_s:.2f} | 1.00x | {plain_rss:.0f} |",
        f"| every intermediate | `probe(model)`: {info['tensors']} tensors, {info['runs']} session | {probe_s:.2f} | "
        f"{probe_s / plain_s:.2f}x | {probe_rss:.0f} |",
        f"| every intermediate, bounded | `probe(model, max_memory='64MB', out=...)`: {bounded[0][0]['runs']} runs, "
        f"streamed to .npz | {bounded_s:.2f} | {bounded_s / plain_s:.2f}x | {bounded_rss:.0f} |",
        f"| polygraphy (baseline 2) | `polygraphy run --onnxrt --onnx-outputs mark all` (whole command) | "
        f"{poly_s:.2f} | 1.00x | {poly_rss:.0f} |",
        f"| onnxdeploy CLI | `onnxdeploy probe --all -o dump.npz --json` (whole command, writes "
        f"{dump.stat().st_size / 2**20:.0f} MB) "
        f"| {cli_s:.2f} | {cli_s / poly_s:.2f}x | {cli_rss:.0f} |",
        f"| polygraphy, saving | `... --save-outputs out.json` (whole command) | {poly_save_s:.2f} | "
        f"{poly_save_s / poly_s:.2f}x | {poly_save_rss:.0f} |",
        f"| the article's way | one new session per node, {article[0]['sampled']} nodes measured: "
        f"{per_node:.2f} s per node, extrapolated to {nodes} nodes | {per_node * nodes:.1f} (extrapolated) | "
        f"{per_node * nodes / plain_s:.0f}x vs baseline 1 | {article[2]:.0f} |",
        "",
        f"Targets (issue 5): every intermediate <= 2x a plain run: **{probe_s / plain_s:.2f}x**; "
        f"the whole CLI command <= 0.5x Polygraphy's wall time: **{cli_s / poly_s:.2f}x**.",
        "",
    ]
    out = ROOT / "benchmarks" / "results" / "debug.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
