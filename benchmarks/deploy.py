"""Deploy benchmark: wall time and peak RSS of `onnxdeploy deploy` on the built-in example and of `onnxdeploy demo`,
each in a fresh process (limits from issue 12: at most 30 s and 1 GB on this 2-core machine); with --resnet also
onnxruntime vs OpenVINO latency on ResNet-50 (transformers config, random weights) through the deploy pipeline.
Writes benchmarks/results/deploy.md.

    .venv/bin/python benchmarks/deploy.py [--resnet] [--tiny]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine  # noqa: E402

LIMIT_S, LIMIT_MB = 30.0, 1024
# A fresh parent per measurement: RUSAGE_CHILDREN's peak is then this one command's (and its subprocesses') peak.
MEASURE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
           "p = subprocess.run(sys.argv[1:], capture_output=True, text=True); s = time.perf_counter() - t; "
           "sys.stderr.write(p.stdout + p.stderr); "
           "print(f'{s} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {p.returncode}')")


def timed(cmd: list[str]) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS MB, exit code, output) of ``cmd`` in a fresh process, one thread per library."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", MEASURE, *cmd], capture_output=True, text=True, env=env)
    seconds, rss_kb, rc = proc.stdout.split()
    return float(seconds), int(rss_kb) // 1024, int(rc), proc.stderr


def _steps(text: str) -> str:
    try:
        data = json.loads(text[text.index("{"):text.rindex("}") + 1])
    except ValueError:
        return ""
    return ", ".join(f"{st['name']} {st['seconds']:.1f}" for st in data.get("steps", []) if st["status"] != "skipped")


def example_rows(tmp: str) -> list[str]:
    rows = []
    runs = [(f"onnxdeploy deploy --target {t}", [str(BIN / "onnxdeploy"), "deploy", "--target", t, "-o",
                                                 f"{tmp}/example-{t}", "--json"]) for t in ("onnxruntime", "openvino")]
    runs.append(("onnxdeploy demo (target openvino)", [str(BIN / "onnxdeploy"), "demo", "-o", f"{tmp}/demo"]))
    for label, cmd in runs:
        s, rss, rc, text = timed(cmd)
        ok = rc == 0 and s <= LIMIT_S and rss <= LIMIT_MB
        result = ("ok" if rc == 0 else f"FAILED rc={rc}") + ("" if ok or rc else " (over the limit)")
        rows.append(f"| `{label}` | {s:.1f} | {rss} | {result} | {_steps(text)} |")
    return rows


def resnet_lines(tmp: str, tiny: bool) -> list[str]:
    from corpus import export_corpus_model

    t0 = time.perf_counter()
    model = export_corpus_model("resnet50", Path(tmp) / "corpus", tiny=tiny)
    export_s = time.perf_counter() - t0
    s, rss, rc, text = timed([str(BIN / "onnxdeploy"), "deploy", str(model), "--target", "openvino", "-o",
                              f"{tmp}/resnet", "--dim", "batch=1", "--json"])
    lines = [f"## ResNet-50{' (tiny)' if tiny else ''} (transformers ResNetForImageClassification, random weights): "
             "onnxruntime vs OpenVINO", "",
             f"Export (dynamo, verified): {export_s:.1f} s. `onnxdeploy deploy resnet50.onnx --target openvino "
             f"--dim batch=1`: {s:.1f} s wall, {rss} MB peak RSS, "
             f"{'ok' if rc == 0 else 'FAILED: ' + text.strip().splitlines()[-1]}.", ""]
    if rc == 0:
        data = json.loads(text[text.index("{"):text.rindex("}") + 1])
        lines += ["| model | engine | p50 ms | p90 ms | mean ms | runs |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['model']} | {r['engine']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['mean_ms']:.2f} | "
                  f"{r['iterations']} |" for r in data["latency"]]
    return lines + [""]


def main() -> None:
    lines = ["# deploy", "", f"Machine: {machine('torch', 'onnxruntime', 'openvino', flags=True)}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        lines += [f"## Built-in example (Conv-BN-SiLU from PyTorch, dynamic batch/height/width kept, verified at two "
                  f"shapes): a fresh process each (limits: {LIMIT_S:.0f} s, {LIMIT_MB} MB)", "",
                  "| command | wall s | peak RSS MB | result | seconds per step (in-process) |", "|---|---|---|---|---|",
                  *example_rows(tmp), "",
                  "Wall time includes Python start-up and the imports of torch, onnxruntime and OpenVINO; the steps' "
                  "seconds do not. Benchmark step: 0.5 s of timing per model (at most 2000 runs), 1 thread.", ""]
        if "--resnet" in sys.argv:
            lines += resnet_lines(tmp, "--tiny" in sys.argv)
    lines += ["MMDeploy and Olive (the peers for this pipeline) are not installable here (they pull CUDA/mmcv stacks), "
              "so they are not measured.", ""]
    out_path = ROOT / "benchmarks" / "results" / "deploy.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
