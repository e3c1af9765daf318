"""Benchmark the output comparison every verification runs: `diff_tensor` vs numpy on two large float32 arrays.

Issue 12's figure: one 65M-element output (the README's export at 5x3x640x640 x ~13 channels) cost 17.6 s to
compare where numpy's one-pass ``np.abs(a - b)`` costs about a second. Target: at most 1.5x that numpy pass, on the
same warm arrays in the same process (best of 3), in bounded memory.

Each row runs in a fresh subprocess: the arrays are made without temporaries, the process's peak RSS is read
before (``ru_maxrss``) and after one call, and tracemalloc reports the call's peak of Python/numpy allocations.
Peers: numpy's ``np.abs(a - b)`` (the baseline), ``np.allclose`` (the elementwise check alone), and the previous
chunked float64 implementation (``--old``, on a smaller array: it is ~15x slower). Writes
``benchmarks/results/numerics.md``.

    .venv/bin/python benchmarks/numerics.py                 # 65M elements (~1 min on 2 shared cores)
    .venv/bin/python benchmarks/numerics.py --size 8000000 --old
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

from _machine import machine  # noqa: E402

SIZE = 65_000_000


def _arrays(size: int, shape: tuple[int, ...]):
    import numpy as np

    rng = np.random.default_rng(0)
    ref = rng.standard_normal(size, dtype=np.float32).reshape(shape)
    got = rng.standard_normal(size, dtype=np.float32).reshape(shape)
    got *= np.float32(1e-5)  # in place: no temporary counts towards the peak
    got += ref
    return ref, got


def _old_source() -> str:
    """numerics.py as it was before issue 12 (the last committed version without ``Tolerance``)."""
    git = ["git", "-C", str(ROOT)]
    commits = subprocess.run(git + ["log", "--format=%H", "--", "src/onnxdeploy/numerics.py"], check=True,
                             capture_output=True, text=True).stdout.split()
    for commit in commits:
        src = subprocess.run(git + ["show", f"{commit}:src/onnxdeploy/numerics.py"], check=True,
                             capture_output=True, text=True).stdout
        if "class Tolerance" not in src:
            return src
    raise SystemExit("no version of numerics.py before issue 12 in the git history")


def _ops(which: str):
    import numpy as np

    if which == "numpy":
        return lambda a, b: np.abs(a - b)
    if which == "allclose":
        return lambda a, b: np.allclose(b, a, rtol=1e-3, atol=1e-4)
    if which == "ours":
        from onnxdeploy._numerics import diff_tensor

        return lambda a, b: diff_tensor("y", a, b, atol=1e-4, rtol=1e-3)
    if which == "ours-fp16":
        from onnxdeploy._numerics import Tolerance, diff_tensor

        tol = Tolerance(precision="fp16")
        return lambda a, b: diff_tensor("y", a, b, tolerance=tol)
    if which == "old":
        import importlib.util

        src = _old_source()
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"numerics_old_{os.getpid()}.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("numerics_old", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["numerics_old"] = mod
        spec.loader.exec_module(mod)
        path.unlink()
        return lambda a, b: mod.diff_tensor("y", a, b, atol=1e-4, rtol=1e-3)
    raise SystemExit(f"unknown op {which}")


def worker(ops: list[str], size: int, shape: tuple[int, ...], repeats: int, memory: bool) -> dict:
    """Time ``ops`` on the same warm arrays (best of ``repeats``, interleaved); with ``memory``, the one op's peaks."""
    import tracemalloc

    ref, got = _arrays(size, shape)
    funcs = {name: _ops(name) for name in ops}
    out: dict = {"times": {name: [] for name in ops}}
    if memory:
        (name,) = ops
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        tracemalloc.start()
        start = time.perf_counter()
        result = funcs[name](ref, got)
        out["times"][name].append(time.perf_counter() - start)
        out["traced_peak"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["rss_peak_extra"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        out["result"] = getattr(result, "to_dict", lambda: repr(result)[:80])()
        return out
    for name in ops:  # warm: imports, first page faults of the arrays
        funcs[name](ref[:1000], got[:1000])
    for _ in range(repeats):
        for name in ops:
            start = time.perf_counter()
            funcs[name](ref, got)
            out["times"][name].append(time.perf_counter() - start)
    return out


def _run(ops, size, shape, repeats, memory) -> dict:
    cmd = [sys.executable, __file__, "--worker", ",".join(ops), "--size", str(size), "--shape",
           "x".join(map(str, shape)), "--repeats", str(repeats)] + (["--memory"] if memory else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--shape", default="", help="e.g. 1300x50000 (default: 1-D)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old", action="store_true", help="also time the previous implementation (slow)")
    parser.add_argument("--worker", default="")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/numerics.md"))
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split("x")) if args.shape else (args.size,)
    if args.worker:
        print(json.dumps(worker(args.worker.split(","), args.size, shape, args.repeats, args.memory)))
        return

    size = args.size
    started = time.perf_counter()
    mach = machine("numpy", flags=True)
    print(mach, flush=True)
    timing_ops = ["numpy", "ours", "ours-fp16", "allclose"] + (["old"] if args.old else [])
    logits = (size // 50_000, 50_000)  # the same count as logits rows x vocabulary: top-1 measured in the pass
    timed = _run(timing_ops, size, shape, args.repeats, False)
    timed_logits = _run(["numpy", "ours"], logits[0] * logits[1], logits, args.repeats, False)
    memory = {op: _run([op], size, shape, 1, True) for op in timing_ops}
    best = {op: min(t) for op, t in timed["times"].items()}
    base = best["numpy"]
    rows = []
    labels = {
        "numpy": "numpy `np.abs(g - r)` (baseline)",
        "ours": "`diff_tensor` fp32 (atol/rtol, max abs/rel, mean, cosine, rel L2, NaN/Inf, constant)",
        "ours-fp16": "`diff_tensor` with `Tolerance(precision='fp16')` (metric verdict)",
        "allclose": "numpy `np.allclose(g, r)` (the elementwise check alone)",
        "old": "previous `diff_tensor` (before issue 12: 64K float64 chunks, ~10 passes)",
    }
    for op in timing_ops:
        m = memory[op]
        rows.append(f"| {labels[op]} | {best[op]:.3f} | {best[op] / base:.2f}x | "
                    f"{m['rss_peak_extra'] / 2**20:.1f} | {m['traced_peak'] / 2**20:.2f} |")
        print(rows[-1], flush=True)
    lb = {op: min(t) for op, t in timed_logits["times"].items()}
    ratio = best["ours"] / base
    text = f"""# Comparing two large float32 outputs: `diff_tensor` vs numpy

Command: `.venv/bin/python benchmarks/numerics.py{' --size ' + str(size) if size != SIZE else ''}{' --old' if args.old else ''}` ({time.perf_counter() - started:.0f} s).
Machine: {mach}. 2 cores shared with other jobs while it ran: timings are noisy.

Two float32 arrays of {size:,} elements ({size * 4 / 2**20:.0f} MB each; the candidate is the reference plus 1e-5
noise), shape {'x'.join(map(str, shape))}. Time: best of {args.repeats}, all ops interleaved on the same warm
arrays in one process (`OMP_NUM_THREADS=1`). Memory: a fresh process per op, one call; "peak extra RSS" is the
growth of `ru_maxrss` during the call (the arrays already resident), "traced peak" the call's tracemalloc peak.

| what | seconds | vs numpy | peak extra RSS MB | traced peak MB |
|---|---:|---:|---:|---:|
""" + "\n".join(rows) + f"""

Logits-shaped ({logits[0]}x{logits[1]}, same element count; top-1 agreement is measured in the same pass):
numpy {lb['numpy']:.3f} s, `diff_tensor` {lb['ours']:.3f} s (**{lb['ours'] / lb['numpy']:.2f}x**).

Target (issue 12, item 5): comparing costs at most 1.5x numpy's one-pass difference, in bounded memory:
**{ratio:.2f}x**, {memory['ours']['traced_peak'] / 2**20:.1f} MB traced
(numpy's baseline itself allocates {memory['numpy']['traced_peak'] / 2**20:.0f} MB).

How: 64K-element chunks (r, g and three float32 scratch buffers stay in L2), computed in float32 with the
accumulations in float64 (three BLAS dots r.r, r.d, d.d give cosine and rel L2 without cancellation); the
elementwise check is skipped when the chunk's max |d| <= atol, done in float32 with a 1e-6 safety margin
otherwise, and redone exactly in float64 only where that margin is too thin; chunks with NaN/Inf take an exact
float64 path.
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
