"""Export + verify time of `onnxdeploy.export` against bare `torch.onnx.export`, same models, same run.

Each measurement runs in a fresh subprocess (model built from a transformers config with random weights, then only
the export call is timed with time.perf_counter); peak RSS from RUSAGE_CHILDREN. Writes benchmarks/results/export.md.
Requirement: overhead (ours / bare) <= 1.5x on ResNet-50 and BERT-base.

    .venv/bin/python benchmarks/export.py [--models resnet50 bert] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

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
print("RESULT " + json.dumps(dict(seconds=elapsed, **extra)))
"""


def measure(name: str, mode: str, tiny: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "model.onnx")
        code = CHILD.format(here=str(HERE), name=name, mode=mode, tiny=tiny, out=out)
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        result = json.loads(line[7:])
        result["peak_rss_mb"] = max(rss, before) / 1024
        return result


def machine() -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    import onnxruntime
    import torch

    return (f"{os.cpu_count()} CPUs (nproc), {cpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=["resnet50", "bert"])
    parser.add_argument("--tiny", action="store_true")
    opts = parser.parse_args()
    rows = []
    for name in opts.models:
        res = {mode: measure(name, mode, opts.tiny) for mode in ("bare", "ours_noverify", "ours")}
        bare = res["bare"].get("seconds")
        ours = res["ours"].get("seconds")
        ratio = f"{ours / bare:.2f}x" if bare and ours else "n/a"
        phases = ", ".join(f"{k} {v:.1f}" for k, v in res["ours"].get("seconds_detail", res["ours"].get("seconds_", {})).items())
        detail = res["ours"].get("seconds") and res["ours"]
        rows.append((name + (" (tiny)" if opts.tiny else ""), res, ratio))
        print(name, json.dumps(res), ratio, flush=True)
    lines = ["# Export benchmark: onnxdeploy.export vs bare torch.onnx.export", "",
             f"Machine: {machine()}", "",
             "Command: `.venv/bin/python benchmarks/export.py` (one fresh subprocess per cell; dynamo exporter; "
             "dynamic batch (+sequence) dims; random weights from transformers configs).", "",
             "| model | bare torch.onnx.export (s) | onnxdeploy.export, no verify (s) | onnxdeploy.export + verify (s) "
             "| overhead (ours+verify / bare) | our phases (s) | max abs err | peak RSS bare / ours (MB) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, res, ratio in rows:
        ours = res["ours"]
        phases = ", ".join(f"{k} {v:.1f}" for k, v in (ours.get("seconds") and ours.get("detail", {}) or {}).items())
        sec = lambda r: f"{r['seconds']:.1f}" if "seconds" in r else f"error: {r.get('error')}"  # noqa: E731
        phase_txt = ", ".join(f"{k} {v:.1f}" for k, v in (ours.get("phases") or {}).items())
        lines.append(f"| {name} | {sec(res['bare'])} | {sec(res['ours_noverify'])} | {sec(ours)} | {ratio} | "
                     f"{phase_txt} | {ours.get('max_abs', 'n/a')} | "
                     f"{res['bare'].get('peak_rss_mb', 0):.0f} / {ours.get('peak_rss_mb', 0):.0f} |")
    out = HERE / "results" / "export.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
