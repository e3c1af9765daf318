"""Benchmark `onnxdeploy optimize` against onnxsim, onnxslim and onnxruntime's offline optimizer.

For each corpus model (transformers configs, random weights; dynamo export, dynamo with optimize=False,
TorchScript export) every tool runs in a fresh subprocess (wall time of the optimize call, peak RSS of the whole
process from ``os.wait4``), then all outputs are timed on onnxruntime interleaved (median) and compared with the
original's outputs on the same inputs. Writes ``benchmarks/results/optimize.md``.

    .venv/bin/python benchmarks/optimize.py                 # full corpus (~30 min on 2 cores)
    .venv/bin/python benchmarks/optimize.py --quick         # tiny configs, for a smoke run
    .venv/bin/python benchmarks/optimize.py --models resnet50,bert --variants dynamo-noopt

The wide corpus (issue 19: exports we did not choose): ViT-base, BERT-base (128 tokens) and GPT-2 with
transformers' default attention (sdpa), exported by dynamo with its optimizer on and off and by TorchScript, opsets
17, 18 and 20, batch-only dynamic or static. ``--wide`` runs the representative rows of :data:`WIDE_ROWS` (every
exporter, opset, dynamism and architecture appears; the issue's three rows first), ``--wide --full`` the whole
cross-product (54 rows, hours on 2 cores). Peers: onnxsim and onnxslim; ``--no-latency`` skips the onnxruntime timing.

    .venv/bin/python benchmarks/optimize.py --wide --no-latency --out benchmarks/results/optimize_wide.md

onnxsim is not in ``.venv``: the worker imports it from ``build/peer-onnxsim`` when it is missing
(``.venv/bin/python -m pip install --no-deps --target build/peer-onnxsim onnxsim==0.8.1``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))

TOOLS = ["onnxdeploy", "onnxdeploy-ort", "onnxsim", "onnxslim", "ort-offline"]  # also: onnxdeploy-noverify
VARIANTS = {"dynamo": ("dynamo", True), "dynamo-noopt": ("dynamo", False), "torchscript": ("torchscript", True)}
CNNS = {"resnet50", "mobilenet_v2", "convnext"}
WIDE_TOOLS = ["onnxdeploy", "onnxsim", "onnxslim"]
WIDE_ARCHS = ("vit", "bert", "gpt2")
WIDE_EXPORTERS = {"dynamo+opt": ("dynamo", True), "dynamo": ("dynamo", False), "torchscript": ("torchscript", True)}
WIDE_OPSETS = (17, 18, 20)
WIDE_DYNAMIC = ("batch", "static")
# (architecture, exporter, opset, dynamic): the three rows, then each exporter, opset and dynamism at least
# once per architecture family
WIDE_ROWS = [
    ("vit", "dynamo+opt", 18, "batch"),
    ("bert", "dynamo+opt", 18, "batch"),
    ("bert", "torchscript", 18, "batch"),
    ("gpt2", "dynamo+opt", 18, "batch"),
    ("vit", "dynamo", 20, "batch"),
    ("bert", "dynamo", 17, "static"),
    ("vit", "torchscript", 17, "batch"),  # GPT-2: TorchScript cannot export aten::diff (transformers 5 masks)
    ("vit", "torchscript", 20, "static"),
    ("bert", "dynamo+opt", 20, "batch"),
    ("gpt2", "dynamo", 18, "static"),
]


def wide_rows(full: bool) -> list[tuple]:
    if not full:
        return list(WIDE_ROWS)
    return [(a, e, o, d) for a in WIDE_ARCHS for e in WIDE_EXPORTERS for o in WIDE_OPSETS for d in WIDE_DYNAMIC]
DIMS = {"batch": 1, "sequence": 128}


# ---------------------------------------------------------------- worker (one tool, fresh process)


def worker(tool: str, src: str, dst: str) -> dict:
    """Run one optimizer on ``src``, write ``dst``; return timing and node count (imports not timed)."""
    import onnx

    info: dict = {}
    if tool in ("onnxdeploy", "onnxdeploy-ort", "onnxdeploy-noverify"):
        import onnx_ir  # noqa: F401 - the tool's imports are not timed, as for the peers
        import onnxruntime  # noqa: F401
        import onnxscript.optimizer  # noqa: F401
        import onnxscript.rewriter.ort_fusions  # noqa: F401

        from onnxdeploy import _io as io
        from onnxdeploy._optimize import optimize

        info["rss_imports"] = _rss_now()
        start = time.perf_counter()
        result = optimize(src, dims=None, for_runtime="onnxruntime" if tool == "onnxdeploy-ort" else None,
                          verify=tool != "onnxdeploy-noverify")
        io.save(result.model, dst)
        info["seconds"] = time.perf_counter() - start
        info["nodes"] = result.report.after.nodes
        info["skipped"] = [p.name for p in result.report.skipped]
        info["verify_seconds"] = result.report.verify_seconds
    elif tool == "onnxsim":
        try:
            import onnxsim
        except ImportError:  # not in .venv: a --target install of its own (see the module docstring)
            sys.path.insert(0, str(ROOT / "build" / "peer-onnxsim"))
            import onnxsim

        info["rss_imports"] = _rss_now()
        start = time.perf_counter()
        model, ok = onnxsim.simplify(src)
        onnx.save(model, dst)
        info["seconds"] = time.perf_counter() - start
        info["nodes"] = len(model.graph.node)
    elif tool == "onnxslim":
        import onnxslim

        info["rss_imports"] = _rss_now()
        start = time.perf_counter()
        model = onnxslim.slim(src)
        onnx.save(model, dst)
        info["seconds"] = time.perf_counter() - start
        info["nodes"] = len(model.graph.node)
    elif tool == "ort-offline":
        import onnxruntime as ort

        info["rss_imports"] = _rss_now()
        start = time.perf_counter()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = dst
        ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
        info["seconds"] = time.perf_counter() - start
        info["nodes"] = len(onnx.load(dst, load_external_data=False).graph.node)
    else:
        raise SystemExit(f"unknown tool {tool}")
    return info


def _rss_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_tool(tool: str, src: Path, dst: Path, timeout: float) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{ROOT / 'src'}:{ROOT / 'benchmarks'}")
    info_path = dst.with_suffix(".json")
    cmd = [sys.executable, __file__, "--worker", tool, str(src), str(dst), str(info_path)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            return {"error": f"timeout after {timeout:.0f}s", "rss": usage.ru_maxrss * 1024}
        time.sleep(0.05)
    stderr = proc.stderr.read() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    result = {"rss": usage.ru_maxrss * 1024, "process_seconds": time.perf_counter() - start}
    if proc.returncode != 0 or not info_path.exists():
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        result["error"] = (lines[-1] if lines else f"exit {proc.returncode}")[:200]
        return result
    result.update(json.loads(info_path.read_text()))
    return result


# ---------------------------------------------------------------- latency and numerics


def measure(paths: dict[str, Path], rounds: int, threads: int, min_seconds: float = 0.0) -> dict[str, dict]:
    """Interleaved latency (median ms) of every model, and output agreement with ``paths['original']``."""
    import numpy as np
    import onnxruntime as ort

    from onnxdeploy._numerics import compare_outputs
    from onnxdeploy._run import synthesize_inputs

    ort.set_default_logger_severity(3)
    feeds = synthesize_inputs(str(paths["original"]), dims=DIMS, seed=0)
    sessions, outputs, results = {}, {}, {}
    for name, path in paths.items():
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            outputs[name] = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
            sess.run(None, feeds)  # warm-up
            sessions[name] = sess
            results[name] = {"times": []}
        except Exception as err:  # noqa: BLE001 - a tool's output that does not load is a result
            results[name] = {"error": f"does not run: {str(err).splitlines()[0][:150]}"}
    # fast models get more rounds: at least `min_seconds` of timed runs per model, so noise averages out
    if sessions:
        start = time.perf_counter()
        for sess in sessions.values():
            sess.run(None, feeds)
        per_round = max(time.perf_counter() - start, 1e-6)
        rounds = max(rounds, min(2000, int(min_seconds * len(sessions) / per_round) + 1))
    for _ in range(rounds):
        for name, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feeds)
            results[name]["times"].append((time.perf_counter() - start) * 1000)
    ref = outputs.get("original")
    for name, res in results.items():
        if "times" in res:
            times = res.pop("times")
            res["latency_ms"] = float(np.median(times))
            res["rounds"] = len(times)
        if ref is not None and name in outputs:
            got = outputs[name]
            names = dict(zip(ref, got)) if len(ref) == len(got) else None  # tools may rename outputs
            cmp = compare_outputs(ref, got, atol=1e-3, rtol=1e-3, names=names)
            res["match"] = cmp.passed
            res["max_abs"] = cmp.max_abs
    return results


# ---------------------------------------------------------------- report


def fmt_mb(n) -> str:
    return "" if n is None else f"{n / 2**20:.0f}"


def render(rows: list[dict], args, seconds: float) -> str:
    try:
        import onnxsim  # noqa: F401 - for its version in the machine line
    except ImportError:
        sys.path.insert(0, str(ROOT / "build" / "peer-onnxsim"))
    peers = ", ".join(t for t in args.tools.split(",") if not t.startswith("onnxdeploy")) or "nothing"
    lines = [
        f"# `onnxdeploy optimize` vs {peers}" + (" (wide corpus, issue 19)" if args.wide else ""),
        "",
        f"Command: `.venv/bin/python benchmarks/optimize.py {' '.join(args.argv)}` ({seconds / 60:.1f} min).",
        f"Machine: {machine('onnx', 'onnx-ir', 'onnxscript', 'onnxruntime', 'onnxsim', 'onnxslim')}. Shared with other jobs while it ran, so timings are noisy.",
        "",
        "Each tool ran in a fresh subprocess: wall = the optimize call plus writing the file (imports excluded; "
        "onnxdeploy includes its default verification on onnxruntime, whose share is in brackets), RSS = peak of "
        "that process (`RSS / size` in brackets: the peak minus the process's RSS after its imports, over the "
        f"model size). Latency: onnxruntime CPU, {args.threads} intra-op thread(s), all outputs of a model "
        f"interleaved for at least {args.rounds} rounds and {args.min_seconds:g} s per model, median. `match`: "
        "outputs within atol 1e-3 / rtol 1e-3 of the original's on the same inputs. Model size = the original file.",
        "",
        "| model | tool | nodes | wall s | peak RSS MB | RSS / size | latency ms | vs best peer | match |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        peers = [row["tools"].get(t, {}).get("latency_ms") for t in ("original", "onnxsim", "onnxslim", "ort-offline")]
        peers = [p for p in peers if p]
        best = min(peers) if peers else None
        for tool in ["original", *args.tools.split(",")]:
            r = row["tools"].get(tool, {})
            if tool == "original":
                r = {**r, "nodes": row["nodes"]}
            lat = r.get("latency_ms")
            ratio = f"{lat / best:.2f}x" if lat and best else ""
            err = r.get("error", "")
            match = "" if tool == "original" else ("yes" if r.get("match") else ("NO" if "match" in r else err))
            rss = r.get("rss")
            wall = f"{r['seconds']:.1f}" if "seconds" in r else ""
            if r.get("verify_seconds"):
                wall += f" ({r['verify_seconds']:.1f})"
            rel = f"{rss / row['size']:.1f}" if rss else ""
            if rss and r.get("rss_imports"):
                rel += f" ({(rss - r['rss_imports']) / row['size']:.1f})"
            latency = f"{lat:.1f}" if lat else ""
            lines.append(f"| {row['model']} | {tool} | {r.get('nodes', '')} | {wall} | {fmt_mb(rss)} | {rel} | "
                         f"{latency} | {ratio} | {match} |")
    if args.wide:
        lines += ["", "## Goals (issue 19)", ""]
        lines += wide_goal_lines(rows)
    else:
        lines += ["", "## Goals (issue 6)", ""]
        lines += goal_lines(rows)
    return "\n".join(lines) + "\n"


def wide_goal_lines(rows: list[dict]) -> list[str]:
    """Nodes <= min(onnxsim, onnxslim); wall <= 0.5x onnxsim; peak RSS <= 2x the model size above 100 MB (below,
    the imports' RSS is excused)."""
    out = []
    for row in rows:
        t = row["tools"]
        ours = t.get("onnxdeploy", {})
        notes = []
        peers = {p: t[p]["nodes"] for p in ("onnxsim", "onnxslim") if t.get(p, {}).get("nodes") is not None}
        if ours.get("nodes") is not None and peers:
            best = min(peers.values())
            notes.append(f"nodes {ours['nodes']} vs min(peers) {best} ({'ok' if ours['nodes'] <= best else 'MISSED'})")
        sim = t.get("onnxsim", {})
        big = row["size"] > 100 * 2**20
        verdict = (lambda ok: "ok" if ok else "MISSED") if big else (lambda ok: "no goal: under 100 MB")
        if ours.get("seconds") and sim.get("seconds"):
            r = ours["seconds"] / sim["seconds"]
            notes.append(f"wall {r:.2f}x onnxsim ({verdict(r <= 0.5)})")
        if ours.get("rss"):
            r = ours["rss"] / row["size"]
            notes.append(f"RSS {r:.1f}x size ({verdict(r <= 2)})")
        out.append(f"- {row['model']}: " + ("; ".join(notes) or "no result"))
    return out


def goal_lines(rows: list[dict]) -> list[str]:
    out = []
    for row in rows:
        t = row["tools"]
        ours, ours_ort = t.get("onnxdeploy", {}), t.get("onnxdeploy-ort", {})
        sim = t.get("onnxsim", {})
        notes = []
        if ours.get("nodes") is not None and sim.get("nodes") is not None:
            notes.append(f"nodes {ours['nodes']} vs onnxsim {sim['nodes']} "
                         f"({'ok' if ours['nodes'] <= sim['nodes'] else 'MISSED'})")
        if ours.get("seconds") and sim.get("seconds"):
            r = ours["seconds"] / sim["seconds"]
            notes.append(f"wall {r:.2f}x onnxsim ({'ok' if r <= 0.5 else 'MISSED'})")
            unverified = t.get("onnxdeploy-noverify", {}).get("seconds")
            if unverified:
                notes.append(f"without verification {unverified / sim['seconds']:.2f}x")
        if ours.get("rss"):
            r = ours["rss"] / row["size"]
            extra = ""
            if ours.get("rss_imports"):
                extra = f", {(ours['rss'] - ours['rss_imports']) / row['size']:.1f}x above the imports' RSS"
            notes.append(f"RSS {r:.1f}x size ({'ok' if r <= 2 else 'MISSED'}{extra})")
        peers = [t.get(p, {}).get("latency_ms") for p in ("original", "onnxsim", "onnxslim", "ort-offline")]
        peers = [p for p in peers if p]
        if peers:
            best = min(peers)
            arch = row["model"].split(" ")[0]
            if arch in CNNS:
                cands = [x for x in (ours.get("latency_ms"), ours_ort.get("latency_ms")) if x]
                if cands:
                    r = min(cands) / best
                    notes.append(f"latency {r:.2f}x best peer ({'ok' if r <= 1.03 else 'MISSED'}, goal <= 1.03)")
            elif ours_ort.get("latency_ms"):
                r = ours_ort["latency_ms"] / best
                notes.append(f"--for-runtime latency {r:.2f}x best peer ({'ok' if r <= 0.8 else 'MISSED'}, "
                             "goal <= 0.8)")
        out.append(f"- {row['model']}: " + "; ".join(notes))
    return out


# ---------------------------------------------------------------- main


def fallback_export(arch: str, out_dir: str, exporter: str, opt: bool, tiny: bool) -> Path:
    """Plain torch.onnx export of a corpus model, used when ``corpus.export_corpus_model`` fails."""
    import corpus
    import torch

    from onnxdeploy import _io as io

    path = Path(out_dir) / f"{arch}{'-tiny' if tiny else ''}-{exporter}{'-opt' if opt else ''}.onnx"
    if path.exists():
        return path
    module, inputs, names = corpus.build(arch, tiny=tiny)
    if exporter == "dynamo":
        prog = torch.onnx.export(module, inputs, input_names=names, output_names=["output"], dynamo=True,
                                 optimize=opt, verbose=False)
        io.save(prog.model, path)
    else:
        tmp = path.with_suffix(".tmp.onnx")
        torch.onnx.export(module, inputs, str(tmp), input_names=names, output_names=["output"], dynamo=False,
                          dynamic_axes={n: corpus.DYNAMIC[n] for n in names}, opset_version=17)
        io.save(io.load(tmp), path)
        tmp.unlink()
    return path



def sources(args) -> list[tuple[str, object]]:
    """(label, export) for each row: ``export()`` returns the model's path (cached in ``--corpus-dir``)."""
    import corpus

    rows = []
    if args.wide:
        for arch, exp, opset, dynamic in wide_rows(args.full):
            exporter, opt = WIDE_EXPORTERS[exp]

            def export(arch=arch, exporter=exporter, opt=opt, opset=opset, dynamic=dynamic):
                return corpus.export_corpus_model(arch, args.corpus_dir, exporter=exporter, optimize=opt,
                                                  tiny=args.quick, dynamic=dynamic if dynamic == "batch" else False,
                                                  opset=opset, verify=False, attention="sdpa")

            rows.append((f"{arch} {exp} op{opset} {dynamic}", export))
        return rows
    for variant in args.variants.split(","):
        exporter, opt = VARIANTS[variant]
        for arch in args.models.split(","):

            def export(arch=arch, exporter=exporter, opt=opt):
                try:
                    return corpus.export_corpus_model(arch, args.corpus_dir, exporter=exporter, optimize=opt,
                                                      tiny=args.quick)
                except Exception:  # noqa: BLE001 - fall back to a plain torch.onnx export
                    return fallback_export(arch, args.corpus_dir, exporter, opt, args.quick)

            rows.append((f"{arch} ({variant})", export))
    return rows


def parse_args(argv: list[str]):
    import corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(corpus.ARCHITECTURES))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--tools", default=None, help=f"default: {','.join(TOOLS)}; with --wide {','.join(WIDE_TOOLS)}")
    parser.add_argument("--wide", action="store_true", help="the wide corpus of issue 19 (WIDE_ROWS)")
    parser.add_argument("--full", action="store_true", help="with --wide: the whole cross-product")
    parser.add_argument("--no-latency", action="store_true", help="skip the onnxruntime latency and output check")
    parser.add_argument("--quick", action="store_true", help="tiny configs, 5 latency rounds")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=3.0,
                        help="timed runs per model last at least this long (more rounds for fast models)")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--corpus-dir", default=str(ROOT / "build" / "optcorpus"))
    parser.add_argument("--work-dir", default=str(ROOT / "build" / "optbench"))
    parser.add_argument("--out", default=None, help="default benchmarks/results/optimize.md (--wide: optimize_wide.md)")
    args = parser.parse_args(argv)
    args.argv = argv
    args.tools = args.tools or ",".join(WIDE_TOOLS if args.wide else TOOLS)
    args.out = args.out or str(ROOT / "benchmarks" / "results" / ("optimize_wide.md" if args.wide else "optimize.md"))
    if args.quick:
        args.rounds = min(args.rounds, 5)
    return args


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--worker":
        tool, src, dst, info = argv[1:5]
        result = worker(tool, src, dst)
        # peak RSS of this process image (VmHWM resets at exec; ru_maxrss would include the parent's at fork)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                result["rss"] = int(line.split()[1]) * 1024
        Path(info).write_text(json.dumps(result))
        return 0
    import onnx

    from onnxdeploy._io import atomic_write_text

    args = parse_args(argv)
    tools = args.tools.split(",")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for label, export in sources(args):
        try:
            src = export()
        except Exception as err:  # noqa: BLE001 - a model the exporter cannot export is reported
            print(f"{label}: export failed: {(str(err).splitlines() or ['?'])[0][:150]}", flush=True)
            rows.append({"model": label, "size": 1, "nodes": "export failed", "tools": {}})
            continue
        row = {"model": label, "size": src.stat().st_size,
               "nodes": len(onnx.load(src, load_external_data=False).graph.node), "tools": {}}
        paths = {"original": src}
        for tool in tools:
            dst = work / f"{src.stem}.{tool}.onnx"
            for stale in work.glob(f"{src.stem}.{tool}.*"):
                stale.unlink()
            res = run_tool(tool, src, dst, args.timeout)
            row["tools"][tool] = res
            if "error" not in res:
                paths[tool] = dst
            print(f"{label} {tool}: {res}", flush=True)
        if not args.no_latency:
            for name, res in measure(paths, args.rounds, args.threads, args.min_seconds).items():
                row["tools"].setdefault(name, {}).update(res)
            print(f"{label} latency: { {k: v.get('latency_ms') for k, v in row['tools'].items()} }", flush=True)
        rows.append(row)
        for f in work.glob(f"{src.stem}.*"):
            f.unlink()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, render(rows, args, time.perf_counter() - start))
        (work / "results.json").write_text(json.dumps(rows, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
