"""ResNet-50 and BERT-base on every engine target: converted?, error vs onnxruntime, p50 ratio at 1 and 2 threads.

Models come from ``benchmarks/corpus.py`` (transformers configs, random weights, static shapes: 1x3x224x224 images,
1x128 tokens). Per (model, engine, precision) a fresh subprocess (an engine that crashes takes only its own row
down) does what a user does: ``legalize(model, engine)`` (the attention-mask rewrite, the embedding rewrite for
ncnn), ``targets.convert(...)`` (staged, verified against onnxruntime with the precision's metric), then runs the
artefact on held-out inputs (max abs error, cosine and, for ResNet-50, top-1 agreement with onnxruntime fp32 over
``HELDOUT_IMAGES`` images) and times it against onnxruntime fp32 with the one interleaved timer
(:func:`onnxdeploy._bench.time_interleaved`, ratio per block, :func:`onnxdeploy._bench.ratio_of`) at 1 and 2 threads.
ratio = engine p50 / onnxruntime p50: below 1 the engine is faster.

``--busy-wait`` adds the ncnn trap: ResNet-50 on ncnn at 2 threads interleaved with onnxruntime, in two fresh
processes, one with ``OMP_WAIT_POLICY=ACTIVE`` (libgomp's spinning) and one with ``PASSIVE`` (what we set).

    .venv/bin/python benchmarks/engines.py                                   # everything -> results/engines.md
    .venv/bin/python benchmarks/engines.py --models resnet50 --engines mnn,ncnn --seconds 10
    .venv/bin/python benchmarks/engines.py --tiny --out /tmp/engines.md      # small configs: a smoke run

Adding an engine: add a function ``(case, precision, work) -> Built`` to :data:`ENGINES` (and its precisions to
:data:`PRECISIONS`); the table, timing and accuracy code is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

MODELS = ["resnet50", "bert"]
HELDOUT_IMAGES = 32  # ResNet-50 top-1 agreement is counted over this many held-out images
HELDOUT_TEXT = 4
CALIBRATION = 16


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    """One model as every engine entry sees it: the static ONNX file, the PyTorch module (ExecuTorch converts from
    it), calibration samples and held-out samples (drawn like real data, never the calibration ones)."""

    name: str
    onnx: Path
    tiny: bool
    calibration: list = field(default_factory=list)
    heldout: list = field(default_factory=list)

    def module(self):
        """``(torch module, example inputs, input names)``: the same random weights as the ONNX file (seed 0)."""
        from corpus import build

        return build(self.name, tiny=self.tiny)


def samples(name: str, count: int, seed: int, tiny: bool) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    if name == "resnet50":
        side = 64 if tiny else 224
        return [{"pixel_values": rng.standard_normal((1, 3, side, side)).astype(np.float32)} for _ in range(count)]
    seq, vocab = (16, 1000) if tiny else (128, 30522)
    out = []
    for k in range(count):
        mask = np.ones((1, seq), np.int64)
        mask[:, seq - 1 - (k * 7) % (seq // 2):] = 0  # padded tails of different lengths: the mask matters
        out.append({"input_ids": rng.integers(0, vocab, (1, seq)).astype(np.int64), "attention_mask": mask})
    return out


def make_case(name: str, work: Path, tiny: bool) -> Case:
    from corpus import export_corpus_model

    path = export_corpus_model(name, work / "corpus", dynamic=False, tiny=tiny)
    held = HELDOUT_IMAGES if name == "resnet50" else HELDOUT_TEXT
    return Case(name, path, tiny, samples(name, CALIBRATION, 1, tiny), samples(name, held, 2, tiny))


# ---------------------------------------------------------------- engines


@dataclass
class Built:
    """A converted artefact: its path, a runner factory ``runner(threads) -> run(feeds) -> {name: array}``, the
    conversion's own verification line, and notes."""

    path: Path
    runner: Callable[[int], Callable[[Mapping], dict]]
    verified: str = ""
    notes: list = field(default_factory=list)


def target_runner(engine: str, path: Path) -> Callable[[int], Callable[[Mapping], dict]]:
    """Run ``path`` with the target's own ``run`` at ``threads`` threads (``Target.threads`` and, for engines that
    read it, ``ONNXDEPLOY_THREADS``)."""

    def factory(threads: int):
        from onnxdeploy import targets

        os.environ["ONNXDEPLOY_THREADS"] = str(threads)
        t = targets.get_target(engine)
        t.threads = threads
        return lambda feeds: t.run(path, feeds)

    return factory


def legal_then_convert(case: Case, engine: str, precision: str, work: Path, **convert_options) -> Built:
    """What ``deploy --target ENGINE`` does for a static ONNX file: legalize for the engine (verified), convert
    (staged, verified with the precision's metric), publish."""
    from onnxdeploy import legalize, targets
    from onnxdeploy.errors import OutputsDisagree

    t = targets.get_target(engine)
    legal = work / f"{case.name}-{engine}-legal.onnx"
    res = legalize(case.onnx, engine, output=legal, inputs=case.heldout[0])
    applied = res.report.rules_applied
    out = work / f"{case.name}-{engine}-{precision}{t.suffix}"
    notes = [f"legalize: {', '.join(f'{k} x{v}' for k, v in applied.items())}"] if applied else []
    try:
        rep = targets.convert(legal, engine, out, precision=precision, keep_on_mismatch=True, inputs=case.heldout[0],
                              calibration=case.calibration if precision == "int8" else None, **convert_options)
    except OutputsDisagree as err:  # the files are kept (keep_on_mismatch): measure them, marked FAILED
        if not out.exists():
            raise
        return Built(out, target_runner(engine, out), f"FAILED: {str(err).split(': ', 1)[-1].split(' (files kept')[0][:160]}",
                     notes)
    verified = f"{'passed' if rep.parity.passed else 'FAILED'}: {rep.metric_values()}"
    return Built(out, target_runner(engine, out), verified, notes + list(rep.notes))


def mnn(case: Case, precision: str, work: Path) -> Built:
    return legal_then_convert(case, "mnn", precision, work)


def ncnn(case: Case, precision: str, work: Path) -> Built:
    return legal_then_convert(case, "ncnn", precision, work)


def tflite(case: Case, precision: str, work: Path) -> Built:
    """Legalize (attention-mask rewrite) then onnx2tf: int8 is full-integer calibrated for image inputs, dynamic-range
    for token-id inputs (onnx2tf calibrates float inputs only)."""
    if precision == "int8" and case.name != "resnet50":
        case = Case(case.name, case.onnx, case.tiny, [], case.heldout)  # no calibration: dynamic-range int8
        from onnxdeploy import legalize, targets

        legal = work / f"{case.name}-tflite-legal.onnx"
        legalize(case.onnx, "tflite", output=legal, inputs=case.heldout[0])
        out = work / f"{case.name}-tflite-int8.tflite"
        rep = targets.convert(legal, "tflite", out, precision="int8", keep_on_mismatch=True, inputs=case.heldout[0])
        verified = f"{'passed' if rep.parity.passed else 'FAILED'}: {rep.metric_values()}"
        return Built(out, target_runner("tflite", out), verified, ["legalize: attention-mask"] + list(rep.notes))
    return legal_then_convert(case, "tflite", precision, work)


def executorch(case: Case, precision: str, work: Path) -> Built:
    """The .pte from the PyTorch module (same seed-0 weights as the ONNX file), verified against PyTorch and against
    onnxruntime on the ONNX file; int8 static (calibrated) for images, dynamic for text."""
    from onnxdeploy.targets.executorch import convert_module

    module, example, names = case.module()
    out = work / f"{case.name}-executorch-{precision}.pte"
    calibration = case.calibration if precision == "int8" and case.name == "resnet50" else None
    rep = convert_module(module, example, out, reference=case.onnx, precision=precision, calibration=calibration,
                         inputs=case.heldout[0], input_names=names)
    verified = f"{'passed' if rep.parity.passed else 'FAILED'}: {rep.metric_values()}"
    return Built(out, target_runner("executorch", out), verified, list(rep.notes))


ENGINES: dict[str, Callable[[Case, str, Path], Built]] = {
    "mnn": mnn, "ncnn": ncnn, "tflite": tflite, "executorch": executorch,
}
PRECISIONS = {"mnn": ["fp32", "int8"], "ncnn": ["fp32"], "tflite": ["fp32", "int8"], "executorch": ["fp32", "int8"]}


# ---------------------------------------------------------------- one row (child process)


def accuracy(case: Case, run, reference) -> dict:
    import numpy as np

    worst_abs, worst_cos, agree = 0.0, 1.0, []
    for feeds in case.heldout:
        ref = reference.run(None, feeds)[0]
        got = np.asarray(run(feeds)[reference.get_outputs()[0].name], dtype=np.float64).reshape(ref.shape)
        worst_abs = max(worst_abs, float(np.max(np.abs(got - ref))))
        a, b = got.ravel(), ref.astype(np.float64).ravel()
        worst_cos = min(worst_cos, float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30)))
        if case.name == "resnet50":
            agree.append(int(np.argmax(got.reshape(-1)) == np.argmax(ref.reshape(-1))))
    return {"max_abs": worst_abs, "cosine": worst_cos, "top1": (sum(agree) / len(agree)) if agree else None,
            "heldout": len(case.heldout)}


def timing(case: Case, built: Built, threads: int, seconds: float) -> dict:
    from onnxdeploy._bench import StopRule, ratio_of, time_interleaved
    from onnxdeploy._run import create_session

    feeds = case.heldout[0]
    session = create_session(case.onnx, threads=threads)
    run = built.runner(threads)
    run(feeds)
    stop = StopRule(seconds=seconds, target_spread=0.10, min_blocks=5, max_blocks=200)
    timings = time_interleaved([lambda: session.run(None, feeds), lambda: run(feeds)], warmup=1, stop=stop, block=3)
    r = ratio_of(timings, 0, 1)
    return {"ratio": 1.0 / r.speedup, "low": 1.0 / r.high, "high": 1.0 / r.low, "ort_ms": r.a_ms,
            "engine_ms": r.b_ms, "noisy": r.noisy, "blocks": r.blocks}


def worker(model: str, engine: str, precision: str, work: str, tiny: bool, threads: list[int],
           seconds: float) -> dict:
    from onnxdeploy._run import create_session

    w = Path(work)
    case = make_case(model, w, tiny)
    row = {"model": model, "engine": engine, "precision": precision}
    start = time.perf_counter()
    try:
        built = ENGINES[engine](case, precision, w)
    except Exception as err:  # noqa: BLE001 - the row records why the engine failed
        return {**row, "converted": False, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
    row.update(converted=True, convert_s=time.perf_counter() - start, verified=built.verified, notes=built.notes,
               size_mb=sum(p.stat().st_size for p in w.glob(built.path.stem + ".*")) / 1e6)
    reference = create_session(case.onnx, threads=1)
    row.update(accuracy(case, built.runner(1), reference))
    row["timing"] = {str(n): timing(case, built, n, seconds) for n in threads}
    return row


def busy_wait_child(param: str, onnx_path: str, tiny: bool, seconds: float) -> dict:
    """ncnn ResNet-50 at 2 threads interleaved with onnxruntime at 2 threads, under this process's OMP_WAIT_POLICY."""
    case = Case("resnet50", Path(onnx_path), tiny, [], samples("resnet50", 1, 2, tiny))
    built = Built(Path(param), target_runner("ncnn", Path(param)))
    return {"policy": os.environ.get("OMP_WAIT_POLICY", ""), **timing(case, built, 2, seconds)}


# ---------------------------------------------------------------- driver


def child(argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 3600) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "2", **(env or {})}
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        why = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        return {"converted": False, "error": f"child died (exit {proc.returncode}): {why[:200]}"}
    return json.loads(lines[-1])


def available(engine: str) -> tuple[bool, str]:
    from onnxdeploy import targets

    if engine not in targets.TARGET_NAMES:
        return False, "no such target yet"
    return targets.get_target(engine).available()


def fmt_ratio(t: dict | None) -> str:
    if not t:
        return "-"
    return f"{t['ratio']:.2f}x ({t['engine_ms']:.1f} vs {t['ort_ms']:.1f} ms){' noisy' if t['noisy'] else ''}"


def render(rows: list[dict], busy: list[dict], header: str, args) -> str:
    lines = [header, "", "ratio = engine p50 / onnxruntime fp32 p50 on the same input, interleaved blocks (below 1: the "
             "engine is faster); errors vs onnxruntime fp32 on held-out inputs (top-1 over "
             f"{HELDOUT_IMAGES} ResNet-50 images).", "",
             "| model | engine | precision | converted | verified (convert) | max abs | cosine | top-1 | "
             "1 thread | 2 threads | notes |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r.get("converted"):
            lines.append(f"| {r['model']} | {r['engine']} | {r['precision']} | no | - | - | - | - | - | - | "
                         f"{r.get('error', '')} |")
            continue
        t = r.get("timing", {})
        top1 = f"{100 * r['top1']:.1f}%" if r.get("top1") is not None else "-"
        lines.append(f"| {r['model']} | {r['engine']} | {r['precision']} | yes ({r['convert_s']:.0f} s, "
                     f"{r['size_mb']:.1f} MB) | {r['verified']} | {r['max_abs']:.2e} | {r['cosine']:.6f} | {top1} | "
                     f"{fmt_ratio(t.get('1'))} | {fmt_ratio(t.get('2'))} | {'; '.join(r.get('notes', []))} |")
    if busy:
        lines += ["", "## ncnn busy-wait trap (ResNet-50, 2 threads, interleaved with onnxruntime at 2 threads)", "",
                  "| OMP_WAIT_POLICY | ncnn p50 ms | onnxruntime p50 ms | ratio |", "|---|---|---|---|"]
        for b in busy:
            if "ratio" in b:
                lines.append(f"| {b['policy']} | {b['engine_ms']:.1f} | {b['ort_ms']:.1f} | {b['ratio']:.2f}x |")
            else:
                lines.append(f"| {b.get('policy', '?')} | {b.get('error', 'failed')} | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--seconds", type=float, default=15.0, help="timing budget per ratio")
    ap.add_argument("--tiny", action="store_true", help="small configs (smoke run)")
    ap.add_argument("--busy-wait", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--reuse", action="store_true", help="reuse the rows of an earlier run (WORK/rows/*.json); "
                    "delete a row's file to measure it again")
    ap.add_argument("--work", default=str(ROOT / "build" / "engines"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "engines.md"))
    ap.add_argument("--worker", nargs=3, metavar=("MODEL", "ENGINE", "PRECISION"), help=argparse.SUPPRESS)
    ap.add_argument("--busy-child", nargs=2, metavar=("PARAM", "ONNX"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.worker:
        print(json.dumps(worker(*args.worker, args.work, args.tiny, threads, args.seconds)))
        return
    if args.busy_child:
        print(json.dumps(busy_wait_child(*args.busy_child, args.tiny, args.seconds)))
        return

    from _machine import machine

    header = ("# Engines: ResNet-50 and BERT-base on MNN, ncnn, TFLite, ExecuTorch vs onnxruntime\n\n"
              f"Machine: {machine('onnxruntime', 'MNN', 'ncnn', 'pnnx', 'ai-edge-litert', 'executorch', flags=True)}"
              f"\n\nLoad: 2-core machine shared by 8 engineers during the run (load average "
              f"{os.getloadavg()[0]:.1f} at start): ratios are interleaved, absolute ms are inflated.\n\n"
              f"Command: `.venv/bin/python benchmarks/engines.py {' '.join(sys.argv[1:])}`".rstrip())
    print(header, flush=True)
    work = Path(args.work)
    rows = []
    for model in args.models.split(","):
        make_case(model, work, args.tiny)  # export once, before the children (they reuse the cached file)
        for engine in args.engines.split(","):
            ok, why = available(engine)
            if not ok:
                rows.append({"model": model, "engine": engine, "precision": "-", "converted": False,
                             "error": f"not available: {why}"})
                continue
            for precision in PRECISIONS.get(engine, ["fp32"]):
                argv = ["--worker", model, engine, precision, "--work", str(work), "--threads", args.threads,
                        "--seconds", str(args.seconds)] + (["--tiny"] if args.tiny else [])
                cache = work / "rows" / f"{model}-{engine}-{precision}.json"
                if args.reuse and cache.exists():
                    row = json.loads(cache.read_text())
                else:
                    row = {"model": model, "engine": engine, "precision": precision, **child(argv)}
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    cache.write_text(json.dumps(row))
                print(json.dumps(row), flush=True)
                rows.append(row)
    busy = []
    if args.busy_wait and available("ncnn")[0]:
        busy = busy_wait(work, args)
    text = render(rows, busy, header, args)
    from onnxdeploy._io import atomic_write_text

    atomic_write_text(args.out, text)
    print(text)


def busy_wait(work: Path, args) -> list[dict]:
    case = make_case("resnet50", work, args.tiny)
    param = work / "busy" / "resnet50.param"
    param.parent.mkdir(parents=True, exist_ok=True)
    if not param.exists():
        from onnxdeploy import targets

        targets.convert(case.onnx, "ncnn", param, verify=False)
    out = []
    for policy in ("ACTIVE", "PASSIVE"):
        argv = ["--busy-child", str(param), str(case.onnx), "--seconds", str(args.seconds)] + (
            ["--tiny"] if args.tiny else [])
        cache = work / "rows" / f"busy-{policy}.json"
        if args.reuse and cache.exists():
            out.append(json.loads(cache.read_text()))
        else:
            out.append({"policy": policy, **child(argv, env={"OMP_WAIT_POLICY": policy})})
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(out[-1]))
        print(json.dumps(out[-1]), flush=True)
    return out


if __name__ == "__main__":
    main()
