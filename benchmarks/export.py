"""Export + verify time of `onnxdeploy.export` against bare `torch.onnx.export`, same models, same run.

Each measurement runs in a fresh subprocess (model built from a transformers config with random weights, then only
the export call is timed with time.perf_counter); peak RSS is the child's own ru_maxrss. The three modes run
interleaved, round after round, so load from other jobs on the machine hits them alike; the table has medians.
Writes benchmarks/results/export.md. Requirement: overhead (ours / bare) <= 1.5x on ResNet-50 and BERT-base.

    .venv/bin/python benchmarks/export.py [--models resnet50 bert] [--rounds 3] [--tiny]
    .venv/bin/python benchmarks/export.py --src /path/to/old/src --out /tmp/before.md   # measure another version
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import machine

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys, time, warnings, logging
warnings.filterwarnings("ignore")
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
sys.path.insert(0, {here!r})
import torch
from corpus import build, DYNAMIC
name, mode, tiny, out = {name!r}, {mode!r}, {tiny!r}, {out!r}
model, inputs, names = build(name, tiny=tiny)
dynamic = {{n: DYNAMIC[n] for n in names}}
t0 = time.perf_counter()
if mode == "bare":
    from torch.export import Dim
    dims = {{}}
    shapes = tuple({{i: dims.setdefault(d, Dim(d)) for i, d in dynamic[n].items()}} for n in names)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        prog = torch.onnx.export(model, inputs, input_names=names, output_names=["output"], dynamo=True,
                                 dynamic_shapes=shapes, verbose=False)
    prog.save(out)
    extra = {{}}
else:
    from onnxdeploy.export import export
    rep = export(model, inputs, out, input_names=names, output_names=["output"], dynamic=dynamic,
                 exporter="dynamo", verify=(mode == "ours"), atol=1e-3, rtol=1e-2)
    extra = {{"phases": rep.seconds, "max_abs": max(c.max_abs for c in rep.parity) if rep.parity else None}}
elapsed = time.perf_counter() - t0
import resource
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(dict(seconds=elapsed, peak_rss_mb=rss, **extra)))
"""


def measure(name: str, mode: str, tiny: bool, src: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.onnx")
        code = CHILD.format(here=str(HERE), name=name, mode=mode, tiny=tiny, out=out)
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        if src:  # another onnxdeploy source tree (e.g. the previous commit) wins over the installed one
            env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        return json.loads(line[7:])


MODES = ("bare", "ours_noverify", "ours")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert"])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (bare, ours, ours+verify per round)")
    parser.add_argument("--src", help="onnxdeploy source folder to measure instead of the installed one")
    parser.add_argument("--out", default=str(HERE / "results" / "export.md"))
    opts = parser.parse_args()
    rows = []
    for name in opts.models:
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for r in range(opts.rounds):  # interleaved: noise from the shared machine hits every mode alike
            for mode in MODES:
                res = measure(name, mode, opts.tiny, opts.src)
                runs[mode].append(res)
                print(name, r, mode, json.dumps(res), flush=True)
        rows.append((name + (" (tiny)" if opts.tiny else ""), runs))
    lines = ["# Export benchmark: onnxdeploy.export vs bare torch.onnx.export", "",
             f"Machine: {machine('torch', 'onnxruntime')}", "",
             f"Command: `.venv/bin/python benchmarks/export.py --rounds {opts.rounds}` (one fresh subprocess per "
             "cell, modes interleaved round by round; dynamo exporter; dynamic batch (+sequence) dims; random weights "
             "from transformers configs; bare = `torch.onnx.export(..., dynamo=True, dynamic_shapes=...)` + "
             "`ONNXProgram.save`). Medians over the rounds, [min-max] in brackets; the overhead is the median of the "
             "per-round ratios. The 2 cores are shared with other jobs, so single runs vary by up to ~1.5x.", "",
             "| model | bare torch.onnx.export (s) | onnxdeploy.export, no verify (s) | onnxdeploy.export + verify (s) "
             "| overhead (ours+verify / bare) | our phases, median (s) | max abs err | peak RSS bare / ours (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, runs in rows:
        def cell(mode):
            secs = [r["seconds"] for r in runs[mode] if "seconds" in r]
            if not secs:
                return f"error: {runs[mode][0].get('error')}"
            return f"{statistics.median(secs):.1f} [{min(secs):.1f}-{max(secs):.1f}]"

        ratios = [o["seconds"] / b["seconds"] for b, o in zip(runs["bare"], runs["ours"])
                  if "seconds" in b and "seconds" in o]
        ratio = (f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "n/a")
        ok = [r for r in runs["ours"] if "phases" in r]
        keys = list(ok[0]["phases"]) if ok else []
        phase_txt = ", ".join(f"{k} {statistics.median(r['phases'].get(k, 0.0) for r in ok):.1f}" for k in keys)
        errs = [r["max_abs"] for r in ok if r.get("max_abs") is not None]
        rss = lambda mode: max((r.get("peak_rss_mb", 0) for r in runs[mode]), default=0)  # noqa: E731
        lines.append(f"| {name} | {cell('bare')} | {cell('ours_noverify')} | {cell('ours')} | {ratio} | "
                     f"{phase_txt} | {max(errs) if errs else 'n/a':.2g} | {rss('bare'):.0f} / {rss('ours'):.0f} |")
    out = Path(opts.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
