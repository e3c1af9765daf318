"""Deploy benchmark: wall time of `onnxdeploy deploy` on the built-in example (fresh subprocess, must be < 60 s on
this machine), and onnxruntime vs OpenVINO latency on ResNet-50 (transformers config, random weights) through the
deploy pipeline. Writes benchmarks/results/deploy.md.

    .venv/bin/python benchmarks/deploy.py [--tiny]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "benchmarks"))


def timed(cmd: list[str]) -> tuple[float, int, int, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(rss, before) // 1024, proc.returncode, proc.stdout + proc.stderr


def main() -> None:
    tiny = "--tiny" in sys.argv
    lines = ["# deploy", "", f"Machine: {machine('onnxruntime', 'openvino')}", ""]
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for target in ("onnxruntime", "openvino"):
            out = Path(tmp) / f"example-{target}"
            s, rss, rc, text = timed([str(BIN / "onnxdeploy"), "deploy", "--target", target, "-o", str(out), "--json"])
            data = json.loads(text[text.index("{"):]) if rc == 0 else {}
            steps = ", ".join(f"{st['name']} {st['seconds']:.1f}" for st in data.get("steps", []))
            rows.append(f"| `onnxdeploy deploy --target {target}` (built-in Conv-BN-SiLU, torch export) | {s:.1f} | "
                        f"{rss} | {'ok' if rc == 0 else 'FAILED rc=' + str(rc)} | {steps} |")
        lines += ["## Built-in example: wall time of a fresh `onnxdeploy deploy` (limit: 60 s)", "",
                  "| command | wall s | peak RSS MB | result | seconds per step |", "|---|---|---|---|---|", *rows, ""]

        from corpus import export_corpus_model

        t0 = time.perf_counter()
        model = export_corpus_model("resnet50", Path(tmp) / "corpus", tiny=tiny)
        export_s = time.perf_counter() - t0
        out = Path(tmp) / "resnet"
        s, rss, rc, text = timed([str(BIN / "onnxdeploy"), "deploy", str(model), "--target", "openvino", "-o",
                                  str(out), "--dim", "batch=1", "--json"])
        lines += [f"## ResNet-50{' (tiny)' if tiny else ''} (transformers ResNetForImageClassification, random "
                  "weights): onnxruntime vs OpenVINO", "",
                  f"Export (dynamo, verified): {export_s:.1f} s. `onnxdeploy deploy resnet50.onnx --target openvino "
                  f"--dim batch=1`: {s:.1f} s wall, {rss} MB peak RSS, "
                  f"{'ok' if rc == 0 else 'FAILED: ' + text.strip().splitlines()[-1]}.", ""]
        if rc == 0:
            data = json.loads(text[text.index("{"):])
            lines += ["| model | engine | p50 ms | p90 ms | mean ms | runs |", "|---|---|---|---|---|---|"]
            for r in data["latency"]:
                lines.append(f"| {r['model']} | {r['engine']} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                             f"{r['mean_ms']:.2f} | {r['iterations']} |")
            lines += ["", "Parity per step (max abs error vs the exported model on onnxruntime):", ""]
            for st in data["steps"]:
                if st["parity"]:
                    lines.append(f"- {st['name']}: {'match' if st['parity']['passed'] else 'MISMATCH'}, "
                                 f"max abs {st['parity']['max_abs']:.3g}")
    lines += ["", "Latency: 1 thread per engine, 1x3x224x224 input, ~1 s per model after 3 warm-up runs, on a machine "
              "shared with other jobs (noisy). MMDeploy and Olive (the peers for this pipeline) are not installable "
              "here (no network besides PyPI for our own dependencies, and they pull CUDA/mmcv stacks), so they are "
              "not measured.", ""]
    out_path = ROOT / "benchmarks" / "results" / "deploy.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
