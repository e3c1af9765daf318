"""How interleaved timing distorts a latency ratio: strict alternation vs turns in blocks vs each model alone.

Two models on onnxruntime with the same session options, timed three ways: strictly alternating one run each (the
old `time_interleaved`), in turns of one settling run plus three timed runs (`onnxdeploy._bench.time_interleaved`
now), and each model timed alone. With more intra-op threads than free cores, the previous session's spinning
threads slow the next model's first run. Writes ``benchmarks/results/interleave.md``.

    .venv/bin/onnxdeploy quantize build/corpus/bert-dynamo-opt.onnx -o build/bert-int8.onnx
    .venv/bin/python benchmarks/interleave.py build/bert-int8.onnx build/corpus/bert-dynamo-opt.onnx --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def strictly_alternating(runners, iterations: int) -> list[list[float]]:
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(iterations):
        for i, run in enumerate(runners):
            t0 = time.perf_counter()
            run()
            times[i].append(time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "interleave.md"))
    args = parser.parse_args()

    from onnxdeploy._bench import time_interleaved
    from onnxdeploy._io import atomic_write_text
    from onnxdeploy._run import create_session, prepare_inputs

    sessions = [create_session(m, threads=args.threads) for m in args.models]
    feeds = prepare_inputs(args.models[0])
    runners = [lambda s=s: s.run(None, feeds) for s in sessions]
    for run in runners:
        run()
        run()
    ways = {
        "strictly alternating": strictly_alternating(runners, args.iterations),
        "turns in blocks (settling run + 3 timed)": time_interleaved(runners, warmup=0, iterations=args.iterations),
        "each alone": [time_interleaved([run], warmup=1, iterations=args.iterations)[0] for run in runners],
    }
    names = [Path(m).name for m in args.models]
    lines = [
        "# Interleaved timing: strict alternation vs turns in blocks vs each model alone",
        "",
        f"Command: `.venv/bin/python {' '.join(['benchmarks/interleave.py'] + sys.argv[1:])}`.",
        f"Machine: {machine('onnxruntime')}. onnxruntime CPU, intra-op threads {args.threads}, "
        f"{args.iterations} timed runs per model and way, median.",
        "",
        f"| timing | {names[0]} ms | {names[1]} ms | {names[1]} / {names[0]} |",
        "|---|---:|---:|---:|",
    ]
    for way, times in ways.items():
        a, b = (float(np.median(t)) * 1000 for t in times)
        lines.append(f"| {way} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
