"""Export + verify time of `onnxdeploy._export` against bare `torch.onnx.export`, same models, same run.

Each measurement runs in a fresh subprocess (the model is built first, then only the export call is timed with
time.perf_counter); peak RSS is the child's own ru_maxrss. The modes run interleaved, round after round, so load from
other jobs on the machine hits them alike; the table has medians.

Models: ``conv_bn_silu`` is the README's command (`onnxdeploy export onnxdeploy.examples:conv_bn_silu_torch ...
--dynamic input:0=batch,2=height,3=width`: Conv-BN-SiLU at 5x3x640x640, default tolerances); for it the whole
processes are timed too (the `onnxdeploy export` command vs a python process doing the bare export). ``resnet50`` and
``bert`` come from transformers configs with random weights (benchmarks/corpus.py).
Requirement: export + verification <= 1.5x bare.

    .venv/bin/python benchmarks/export.py [--models conv_bn_silu resnet50 bert] [--rounds 3] [--tiny]
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
import time
from pathlib import Path

from _machine import machine

HERE = Path(__file__).resolve().parent
README_DYNAMIC = {"input": {0: "batch", 2: "height", 3: "width"}}

CHILD = r"""
import json, sys, time, warnings, logging
warnings.filterwarnings("ignore")
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
sys.path.insert(0, {here!r})
import torch
name, mode, tiny, out = {name!r}, {mode!r}, {tiny!r}, {out!r}
if name == "conv_bn_silu":  # the README's command: the built-in example factory, its default tolerances
    from onnxdeploy.examples import conv_bn_silu_torch
    model, inputs = conv_bn_silu_torch()
    names, outputs, dynamic, tol = ["input"], ["values"], {readme!r}, dict(atol=1e-4, rtol=1e-3)
else:
    from corpus import build, DYNAMIC
    model, inputs, names = build(name, tiny=tiny)
    outputs, dynamic, tol = ["output"], {{n: DYNAMIC[n] for n in names}}, dict(atol=1e-3, rtol=1e-2)
t0 = time.perf_counter()
if mode == "bare":
    from torch.export import Dim
    dims = {{}}
    shapes = tuple({{i: dims.setdefault(d, Dim(d)) for i, d in dynamic[n].items()}} for n in names)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        prog = torch.onnx.export(model, inputs, input_names=names, output_names=outputs, dynamo=True,
                                 dynamic_shapes=shapes, verbose=False)
    prog.save(out)
    extra = {{}}
else:
    from onnxdeploy._export import export
    rep = export(model, inputs, out, input_names=names, output_names=outputs, dynamic=dynamic,
                 exporter="dynamo", verify=(mode == "ours"), **tol)
    extra = {{"phases": rep.seconds, "max_abs": max(c.max_abs for c in rep.parity) if rep.parity else None}}
elapsed = time.perf_counter() - t0
import resource
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print("RESULT " + json.dumps(dict(seconds=elapsed, peak_rss_mb=rss, **extra)))
"""

README_CLI = ["export", "onnxdeploy.examples:conv_bn_silu_torch", "-o", "{out}", "--input-names", "input",
              "--output-names", "values", "--dynamic", "input:0=batch,2=height,3=width"]


def _env(src: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    if src:  # another onnxdeploy source tree (e.g. the previous commit) wins over the installed one
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure_process(mode: str, src: str | None = None) -> dict:
    """Wall time of a whole process: the README's `onnxdeploy export` command, or python doing the bare export."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "conv.onnx")
        if mode == "cli":
            cmd = [sys.executable, "-m", "onnxdeploy.cli.main"] + [a.format(out=out) for a in README_CLI]
        else:
            code = CHILD.format(here=str(HERE), name="conv_bn_silu", mode="bare", tiny=False, out=out,
                                readme=README_DYNAMIC)
            cmd = [sys.executable, "-c", code]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(src))
        elapsed = time.perf_counter() - t0
        if proc.returncode or not os.path.exists(out):
            return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        return {"seconds": elapsed}


def measure(name: str, mode: str, tiny: bool, src: str | None = None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.onnx")
        code = CHILD.format(here=str(HERE), name=name, mode=mode, tiny=tiny, out=out, readme=README_DYNAMIC)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(src))
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        return json.loads(line[7:])


MODES = ("bare", "ours_noverify", "ours")
PROCESS_MODES = ("bare_process", "cli")


def _median_cell(results: list[dict]) -> str:
    secs = [r["seconds"] for r in results if "seconds" in r]
    if not secs:
        return f"error: {results[0].get('error')}" if results else "n/a"
    return f"{statistics.median(secs):.2f} [{min(secs):.2f}-{max(secs):.2f}]"


def _ratio(bare: list[dict], ours: list[dict]) -> str:
    ratios = [o["seconds"] / b["seconds"] for b, o in zip(bare, ours) if "seconds" in b and "seconds" in o]
    return f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}-{max(ratios):.2f}]" if ratios else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["conv_bn_silu", "resnet50", "bert"])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (every mode once per round)")
    parser.add_argument("--src", help="onnxdeploy source folder to measure instead of the installed one")
    parser.add_argument("--out", default=str(HERE / "results" / "export.md"))
    opts = parser.parse_args()
    rows = []
    for name in opts.models:
        modes = MODES + (PROCESS_MODES if name == "conv_bn_silu" else ())
        runs: dict[str, list[dict]] = {m: [] for m in modes}
        for r in range(opts.rounds):  # interleaved: noise from the shared machine hits every mode alike
            for mode in modes:
                res = (measure_process("bare" if mode == "bare_process" else "cli", opts.src) if mode in PROCESS_MODES
                       else measure(name, mode, opts.tiny, opts.src))
                runs[mode].append(res)
                print(name, r, mode, json.dumps(res), flush=True)
        rows.append((name + (" (tiny)" if opts.tiny and name != "conv_bn_silu" else ""), runs))
    threads = os.environ.get("OMP_NUM_THREADS", "2")
    lines = ["# Export benchmark: onnxdeploy._export vs bare torch.onnx.export", "",
             f"Machine: {machine('torch', 'onnxruntime', 'onnx', 'numpy', flags=True)}; OMP_NUM_THREADS={threads}", "",
             f"Command: `.venv/bin/python benchmarks/export.py --models {' '.join(opts.models)} --rounds {opts.rounds}` "
             "(one fresh subprocess per cell, modes interleaved round by round; dynamo exporter; the model is built "
             "before the clock starts, the export call alone is timed; bare = `torch.onnx.export(..., dynamo=True, "
             "dynamic_shapes=...)` + `ONNXProgram.save`). conv_bn_silu is the README's command (Conv-BN-SiLU at "
             "5x3x640x640, dynamic batch/height/width, verified at 5x3x640x640 and 2x3x128x128, atol 1e-4, rtol "
             "1e-3); resnet50 and bert are built from transformers configs with random weights (dynamic batch "
             "(+sequence), atol 1e-3, rtol 1e-2). Medians over the rounds, [min-max] in brackets; the overhead is the "
             "median of the per-round ratios. The cores are shared with other jobs, so single runs vary.", "",
             "| model | bare torch.onnx.export (s) | onnxdeploy._export, no verify (s) | onnxdeploy._export + verify (s) "
             "| overhead (ours+verify / bare) | our phases, median (s) | max abs err | peak RSS bare / ours (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, runs in rows:
        ok = [r for r in runs["ours"] if "phases" in r]
        keys = list(ok[0]["phases"]) if ok else []
        phase_txt = ", ".join(f"{k} {statistics.median(r['phases'].get(k, 0.0) for r in ok):.2f}" for k in keys)
        errs = [r["max_abs"] for r in ok if r.get("max_abs") is not None]
        rss = lambda mode: max((r.get("peak_rss_mb", 0) for r in runs[mode]), default=0)  # noqa: E731
        lines.append(f"| {name} | {_median_cell(runs['bare'])} | {_median_cell(runs['ours_noverify'])} | "
                     f"{_median_cell(runs['ours'])} | {_ratio(runs['bare'], runs['ours'])} | {phase_txt} | "
                     f"{max(errs) if errs else 'n/a':.2g} | {rss('bare'):.0f} / {rss('ours'):.0f} |")
    for name, runs in rows:
        if "cli" not in runs:
            continue
        lines += ["", "Whole processes, the README's command (interpreter start, imports, model build, export, "
                  "verification, table): `onnxdeploy export onnxdeploy.examples:conv_bn_silu_torch -o conv.onnx "
                  "--input-names input --output-names values --dynamic input:0=batch,2=height,3=width` vs a python "
                  "process that builds the same module and runs the bare export.", "",
                  "| model | bare export, whole process (s) | `onnxdeploy export`, whole process (s) | ratio |",
                  "|---|---|---|---|",
                  f"| {name} | {_median_cell(runs['bare_process'])} | {_median_cell(runs['cli'])} | "
                  f"{_ratio(runs['bare_process'], runs['cli'])} |"]
    out = Path(opts.out)
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
