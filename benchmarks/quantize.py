"""Benchmark `onnxdeploy quantize` defaults against onnxruntime's default quantization on six real architectures.

Per model (transformers configs with random weights, dynamo export from ``benchmarks/corpus.py``), in one fresh
subprocess: quantize with onnxruntime's defaults (``quantize_dynamic(in, out)`` and ``quantize_static(in, out,
reader)``: QDQ, int8 activations and weights, per-tensor) and with onnxdeploy's default (``onnxdeploy._quantize``),
all calibrated on the same samples; then time fp32 and every quantized model interleaved in one onnxruntime run
(median, same session options) and compare outputs with fp32 on held-out inputs drawn like the calibration data.
Writes ``benchmarks/results/quantize.md``.

    .venv/bin/python benchmarks/quantize.py                      # ResNet-50, MobileNetV2, ConvNeXt, ViT, BERT, GPT-2
    .venv/bin/python benchmarks/quantize.py --models resnet50,bert --threads 2 --out /tmp/q2.md
    .venv/bin/python benchmarks/quantize.py --agreement     # quantize's speedup vs `bench A B`, run twice each

``--agreement`` builds two small models (a 4-Conv CNN at 64x64, a 2-block 256-wide feed-forward stack at sequence
128), then runs ``onnxdeploy quantize M -o Q --json`` and ``onnxdeploy bench M Q --json`` twice each in fresh
subprocesses: the speedups must agree within 10% (same timer, same estimator, until stable or reported noisy).
Writes ``benchmarks/results/quantize_agreement.md``.
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

MODELS = ["resnet50", "mobilenet_v2", "convnext", "vit", "bert", "gpt2"]
IMAGE_MODELS = {"resnet50", "mobilenet_v2", "convnext", "vit"}
CALIBRATION = 16
HELDOUT = 8
VARIANTS = ["fp32", "ort-dynamic", "ort-static", "onnxdeploy"]

NOTES = """## How the defaults were chosen (exploration runs on this machine, threads 1, same noise caveat)

- CPU flags: AVX-512 VNNI, no AMX (AMD EPYC). onnxruntime's int8 CPU kernels are fast for uint8 activations x int8
  weights (u8s8, VNNI); int8 activations (s8s8) and ConvInteger (dynamic quantization of Conv) are not.
- ResNet-50 (sequential runs, 10 iterations, quant_pre_process first): static QDQ u8 activations + per-channel s8
  weights 3.47x (cosine 0.9998); the same as QOperator 3.49x; static s8 activations per-channel 1.55x; dynamic 0.25x.
  So CNNs get static QDQ, uint8 activations, int8 per-channel weights.
- BERT-base (one interleaved run, 12 iterations, load average 5): onnxruntime transformer optimizer (SkipLayerNorm,
  Gelu) + dynamic int8 2.88x (cosine 0.99957, our default); plain `quantize_dynamic` 2.72x; per-channel dynamic
  2.53x; onnxscript ORT fusions (Attention 12, SkipLayerNorm, BiasGelu) + dynamic 1.71x (the fused fp32 model itself
  ran 0.88x); weight-only `MatMulNBits` 8-bit (accuracy level 4) 0.90x, 4-bit 0.91x (cosine 0.995); static QDQ
  uint8 on MatMuls 1.28x. Attention is not fused by onnxruntime's optimizer on this dynamo export.
- On BERT our default is within noise of plain `quantize_dynamic` (2.93x vs 2.87x in the run above, 2.64x vs 2.73x
  in an earlier run): once the MatMuls are int8 they dominate (profile of the int8 model: DynamicQuantizeMatMul +
  MatMulIntegerToFloat about 75% of the time), so graph fusions around them matter little. Both beat the 2.5x goal.
- `quantize()` measures the speedup itself (interleaved, same session options); in `auto` mode a result slower than
  fp32 makes it try the other mode and keep the faster, and a result still slower is reported with a loud warning.
"""


def _samples(name: str, count: int, seed: int) -> list[dict]:
    """Inputs drawn like the model's real data: normalized images, or token ids over the vocabulary, full masks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if name in IMAGE_MODELS:
        return [{"pixel_values": rng.standard_normal((1, 3, 224, 224)).astype(np.float32)} for _ in range(count)]
    vocab = {"bert": 30522, "gpt2": 50257}[name]
    samples = [{"input_ids": rng.integers(0, vocab, (1, 128)).astype(np.int64)} for _ in range(count)]
    if name == "bert":
        for sample in samples:
            sample["attention_mask"] = np.ones((1, 128), np.int64)
    return samples


def worker(name: str, corpus: str, work: str, threads: int, iterations: int) -> dict:
    """Quantize ``name`` every way, time all variants interleaved, measure cosine on held-out inputs."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, quantize_dynamic, quantize_static

    from corpus import export_corpus_model
    from onnxdeploy._bench import bench
    from onnxdeploy._quantize import output_errors, quantize
    from onnxdeploy._run import create_session

    src = str(export_corpus_model(name, corpus))
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    calib = _samples(name, CALIBRATION, seed=1)
    held = _samples(name, HELDOUT, seed=2)
    calib_npz = work_dir / f"{name}-calib.npz"
    # onnxdeploy holds out the last fifth of its calibration file: give it the same 16 samples plus 4 extra
    extra = calib + _samples(name, CALIBRATION // 4, seed=3)
    np.savez(calib_npz, **{k: np.concatenate([s[k] for s in extra]) for k in extra[0]})

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

    paths = {"fp32": src}
    info: dict = {"model": name, "source": Path(src).name, "fp32_bytes": os.path.getsize(src), "variants": {}}
    for variant in VARIANTS[1:]:
        dst = str(work_dir / f"{name}-{variant}.onnx")
        start = time.perf_counter()
        entry: dict = {}
        if variant == "ort-dynamic":
            quantize_dynamic(src, dst)
        elif variant == "ort-static":
            quantize_static(src, dst, Reader())
        else:
            report = quantize(src, dst, calibration=calib_npz, threads=threads)
            entry.update(mode=report.mode, activation_type=report.activation_type, per_channel=report.per_channel,
                         fusions=report.transformer_fusions, own_speedup=report.speedup, noisy=report.noisy,
                         warnings=report.warnings)
        entry["quantize_s"] = time.perf_counter() - start
        entry["bytes"] = os.path.getsize(dst)
        paths[variant] = dst
        info["variants"][variant] = entry

    # accuracy on held-out inputs
    outputs = {}
    for variant, path in paths.items():
        session = create_session(path, threads=threads)
        outputs[variant] = [dict(zip([o.name for o in session.get_outputs()], session.run(None, s))) for s in held]
    for variant in VARIANTS[1:]:
        err = output_errors(outputs["fp32"], outputs[variant])[0]
        info["variants"][variant].update(cosine=err.cosine, max_abs=err.max_abs, top1=err.top1_agreement)

    # latency: every variant interleaved in one run, same session options
    report = bench([paths[v] for v in VARIANTS], labels=VARIANTS, warmup=3, iterations=iterations, threads=threads,
                   inputs=held[0])
    info["latency"] = {r.model: {"p50": r.p50, "p90": r.p90, "mean": r.mean, "runs": r.iterations} for r in report.results}
    return info


def render(results: list[dict], threads: int, iterations: int, wall: float) -> str:
    lines = [
        "# Quantization: onnxdeploy defaults vs onnxruntime defaults",
        "",
        f"Machine: {machine('onnx', 'onnxruntime', flags=True)}.",
        f"Command: `.venv/bin/python {' '.join(['benchmarks/quantize.py'] + sys.argv[1:])}` ({wall:.0f} s). Latency: median of {iterations} runs per",
        f"model, all variants interleaved in one process, onnxruntime CPU, intra-op threads {threads}, batch 1",
        "(images 224x224; BERT-base and GPT-2 sequence 128). Cosine and max abs error vs fp32 over 8 held-out inputs",
        "drawn like the 16 calibration inputs (normal images; uniform token ids, full masks). Random weights (transformers",
        "configs), dynamo exports. The machine's 2 cores are shared with other jobs: latencies are noisy (a few %",
        "to ~20%), ratios from the interleaved runs are steadier than absolute times.",
        "",
        "| model | variant | how | p50 ms | speedup vs fp32 | cosine | max abs err | top-1 agree | size MB | quantize s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for info in results:
        fp32 = info["latency"]["fp32"]["p50"]
        for variant in VARIANTS:
            lat = info["latency"][variant]["p50"]
            v = info["variants"].get(variant, {})
            if variant == "fp32":
                how, size = "original", info["fp32_bytes"]
            elif variant == "ort-dynamic":
                how, size = "`quantize_dynamic(in, out)`", v["bytes"]
            elif variant == "ort-static":
                how, size = "`quantize_static(in, out, reader)` (QDQ s8s8)", v["bytes"]
            else:
                if v["mode"] == "static":
                    how = f"static QDQ, {v['activation_type']} act, int8 {'per-channel' if v['per_channel'] else ''} w"
                else:
                    fused = ", ".join(f"{k} {n}" for k, n in (v.get("fusions") or {}).items())
                    how = f"ORT transformer fusions ({fused}) + dynamic int8" if fused else "dynamic int8"
                size = v["bytes"]
            top1 = v.get("top1")
            lines.append(
                f"| {info['model']} | {variant} | {how} | {lat:.1f} | {fp32 / lat:.2f}x | "
                f"{v.get('cosine', 1.0):.5f} | {v.get('max_abs', 0.0):.3g} | "
                f"{'' if top1 is None else f'{top1:.0%}'} | {size / 1e6:.1f} | {v.get('quantize_s', 0):.1f} |"
            )
    lines += ["", "onnxdeploy's own measurement during `quantize` (its report's speedup: interleaved blocks until the",
              "~99% interval is within 10%, else noisy):", ""]
    for info in results:
        v = info["variants"]["onnxdeploy"]
        lines.append(f"- {info['model']}: {v['own_speedup']:.2f}x faster{' (noisy)' if v.get('noisy') else ''}"
                     + (f"; warnings: {v['warnings']}" if v["warnings"] else ""))
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


AGREEMENT_NOTE = """Reading: each figure is honest about its own run (noisy when its ~99% interval or the two halves
of its run are more than 10% apart). This machine's 2 cores are shared with other jobs, and the int8/fp32 ratio itself
changes with their load (the same CNN pair measured 2.8x to 12x faster within 15 minutes), so two commands run one
after the other need not agree. An earlier run of this script with a 95% interval and no halves check had one pair
8.55x vs 11.67x apart with both called stable; hence the 99% interval and the check of the run's halves. The flag is
evidence, not a guarantee: a load change between two commands can move a figure that was stable within each."""


def _agreement_summary(pairs: list[tuple[float, bool, float, bool]]) -> str:
    """(quantize speedup, noisy, bench speedup, noisy) per row -> one line on how they agreed."""
    stable = [abs(q / b - 1) for q, qn, b, bn in pairs if not qn and not bn]
    unflagged = [abs(q / b - 1) for q, qn, b, bn in pairs if abs(q / b - 1) > 0.10 and not (qn or bn)]
    return (f"Rows where both figures were stable: {len(stable)} of {len(pairs)}"
            + (f" (largest difference {max(stable):.1%})" if stable else "")
            + f"; pairs more than 10% apart with neither flagged noisy: {len(unflagged)}.")


def _agreement_models(folder: Path) -> dict[str, Path]:
    """A small CNN and a small MatMul stack, saved in ``folder``."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, x, c_in = [], [], "x", 3
    for i, c in enumerate([32, 64, 64, 64]):
        inits += [numpy_helper.from_array((rng.standard_normal((c, c_in, 3, 3)) * 0.1).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(c, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}")]
        x, c_in = f"r{i}", c
    cnn = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                            [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    h, f = 256, 1024
    nodes, inits, x = [], [], "x"
    for i in range(2):
        inits += [numpy_helper.from_array((rng.standard_normal((h, f)) / 16).astype(np.float32), f"w1_{i}"),
                  numpy_helper.from_array((rng.standard_normal((f, h)) / 32).astype(np.float32), f"w2_{i}")]
        nodes += [helper.make_node("MatMul", [x, f"w1_{i}"], [f"m{i}"], name=f"fc1_{i}"),
                  helper.make_node("Relu", [f"m{i}"], [f"g{i}"], name=f"act{i}"),
                  helper.make_node("MatMul", [f"g{i}", f"w2_{i}"], [f"o{i}"], name=f"fc2_{i}"),
                  helper.make_node("Add", [x, f"o{i}"], [f"x{i + 1}"], name=f"res{i}")]
        x = f"x{i + 1}"
    ffn = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128, h])],
                            [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)], inits)
    paths = {}
    for name, graph in (("cnn", cnn), ("ffn", ffn)):
        paths[name] = folder / f"{name}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), paths[name])
    return paths


def _cli_json(args: list[str], env: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    proc = subprocess.run([str(Path(sys.executable).parent / "onnxdeploy"), *args, "--json"], capture_output=True,
                          text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"onnxdeploy {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout), time.perf_counter() - start


def agreement(work: Path, threads: int, out: Path) -> str:
    """quantize's speedup vs `bench fp32 int8` on the same two files, each run twice."""
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    rows, pairs = [], []
    for name, path in _agreement_models(work).items():
        q = work / f"{name}.int8.onnx"
        for run in (1, 2):
            rq, tq = _cli_json(["quantize", str(path), "-o", str(q), "--threads", str(threads)], env)
            rb, tb = _cli_json(["bench", str(path), str(q), "--threads", str(threads)], env)
            sq, sb = rq["speed"], rb["results"][1]["vs_first"]
            pairs.append((sq["speedup"], sq["noisy"], sb["speedup"], sb["noisy"]))
            rows.append(f"| {name} | {run} | {rq['mode']} | {sq['speedup']:.2f}x [{sq['low']:.2f}, {sq['high']:.2f}]"
                        f"{' noisy' if sq['noisy'] else ''} ({sq['blocks']} blocks, {tq:.0f} s) | "
                        f"{sb['speedup']:.2f}x [{sb['low']:.2f}, {sb['high']:.2f}]{' noisy' if sb['noisy'] else ''} "
                        f"({sb['blocks']} blocks, {tb:.0f} s) | {sq['speedup'] / sb['speedup'] - 1:+.1%} |")
            print(rows[-1], file=sys.stderr)
    lines = [
        "# quantize's speedup vs `bench fp32 int8` (same files, same timer)",
        "",
        f"Machine: {machine('onnx', 'onnxruntime', flags=True)}.",
        f"Command: `.venv/bin/python {' '.join(['benchmarks/quantize.py'] + sys.argv[1:])}`; intra-op threads "
        f"{threads}; every command in a fresh process. Speedup: median over interleaved blocks (settling run + 3 "
        "timed runs of each model) of fp32 block median / int8 block median, with its ~99% interval; timed until "
        "the interval is within 10% of the median, else reported noisy (quantize: 10 s budget per mode tried; "
        "bench: at least 50 runs, 30 s budget). Seconds: the whole command.",
        "",
        "| model | run | mode | quantize: speedup [interval] | bench A B: speedup [interval] | quantize / bench |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        _agreement_summary(pairs),
        "",
        AGREEMENT_NOTE,
    ]
    text = "\n".join(lines) + "\n"
    from onnxdeploy._io import atomic_write_text

    atomic_write_text(out, text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agreement", action="store_true", help="quantize's speedup vs bench's on the same files")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--corpus", default=str(ROOT / "build" / "optcorpus"), help="export cache (shared)")
    parser.add_argument("--work", default=str(ROOT / "build" / "quantize-bench"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quantize.md"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agreement:
        print(agreement(Path(args.work) / "agreement", args.threads,
                        Path(args.out).with_name("quantize_agreement.md") if args.out != parser.get_default("out")
                        else ROOT / "benchmarks" / "results" / "quantize_agreement.md"))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.corpus, args.work, args.threads, args.iterations)))
        return
    start = time.perf_counter()
    results = []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for name in args.models.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--corpus", args.corpus, "--work", args.work,
             "--threads", str(args.threads), "--iterations", str(args.iterations)],
            capture_output=True, text=True, env=env,
        )
        if proc.returncode:
            sys.stderr.write(proc.stderr[-4000:])
            raise SystemExit(f"{name}: worker failed")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]["latency"]), file=sys.stderr)
    text = render(results, args.threads, args.iterations, time.perf_counter() - start)
    from onnxdeploy._io import atomic_write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, text)
    (Path(args.work) / "results.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()
