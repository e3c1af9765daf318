"""Decoder LLM deployment: our export + decoder fusions + int4 weights against onnxruntime-genai's model builder.

A Llama of ~110M parameters from a transformers config (random weights, ``save_pretrained`` to a temp folder with a
tiny local word-level tokenizer, which the builder insists on reading; no download: the builder runs with the network
blocked, ``tests/netguard.py``). Measured in one run:

- decode tokens/s (batch 1, greedy, 32 new tokens after an 8-token prompt, best of 3 rounds over all models) of: our export (fp32), ours
  after ``optimize --preset decoder``, ours + int4 (``quantize --weights int4``), the builder's fp32 and int4 models
  (same onnxruntime greedy loop), and the builder's models on onnxruntime-genai's own runtime (its C++ loop);
- greedy tokens of our fp32 model against PyTorch's ``generate`` over 32 new tokens;
- int4 logits cosine and greedy token agreement against fp32 (random weights make token agreement a weak signal).

optimum's ONNX exporter moved to the ``optimum-onnx`` package, which needs transformers<4.58 (ours is 5.x): it runs
from its own venv ``.venv-optimum`` (``scripts/install-optimum.sh``) when that exists, else it is reported as not run.
All our decoding goes through the one generation loop (``onnxdeploy.decode_speed``: IOBinding, presents bound as the
next step's pasts without numpy copies).

Run: ``.venv/bin/python benchmarks/llm.py`` -> ``benchmarks/results/llm.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

NEW_TOKENS = 32
PROMPT = [1, 17, 423, 999, 5012, 77, 3001, 12]
CONFIG = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=10, num_attention_heads=12,
              num_key_value_heads=4, max_position_embeddings=512, tie_word_embeddings=False)
THREADS = 2
ROUNDS = 3


def build_folder(folder: Path):
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG)).eval()
    model.save_pretrained(folder)
    vocab = {f"t{i}": i for i in range(CONFIG["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", bos_token="t1", eos_token="t2").save_pretrained(folder)
    return model


def torch_greedy(model) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(torch.tensor([PROMPT]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS)
    return [int(t) for t in out[0, len(PROMPT):]]


def builder(folder: Path, out: Path, precision: str) -> tuple[float, str]:
    from netguard import no_network, offline_command

    start = time.perf_counter()
    with no_network() as attempts:
        cmd = offline_command([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(folder), "-o",
                               str(out), "-p", precision, "-e", "cpu"])
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - start, f"network attempts: {len(attempts)}"


def signature_for(path: str):
    import numpy as np

    import onnxdeploy

    names = {s.name for s in onnxdeploy.input_specs(path)}
    head = CONFIG["hidden_size"] // CONFIG["num_attention_heads"]  # the builder leaves head_dim symbolic
    return onnxdeploy.DecoderSignature(CONFIG["num_hidden_layers"], CONFIG["num_key_value_heads"], head,
                                       np.dtype("float32"), CONFIG["vocab_size"], "position_ids" in names,
                                       "attention_mask" in names, np.dtype("int64"))


def ort_decode(path: str, repeats: int = 1) -> dict:
    import onnxdeploy

    gen = onnxdeploy.decode_speed(path, prompt=PROMPT, new_tokens=NEW_TOKENS, repeats=repeats, threads=THREADS,
                                  signature=signature_for(path))
    return {"tokens_per_s": gen.decode_tokens_per_s, "first_token_ms": gen.ttft_s * 1e3, "tokens": gen.tokens}


OPTIMUM = ROOT / ".venv-optimum" / "bin" / "optimum-cli"


def optimum_export(folder: Path, out: Path) -> tuple[float, str]:
    """optimum-onnx's exporter from its own venv (transformers<4.58); raises when it is not installed."""
    from netguard import no_network, offline_command

    if not OPTIMUM.exists():
        raise FileNotFoundError("not run: .venv-optimum is absent (optimum-onnx needs transformers<4.58, ours is "
                                "5.x; scripts/install-optimum.sh creates it)")
    start = time.perf_counter()
    with no_network() as attempts:
        cmd = offline_command([str(OPTIMUM), "export", "onnx", "--model", str(folder), "--task",
                               "text-generation-with-past", str(out)])
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return time.perf_counter() - start, f"network attempts: {len(attempts)}"


def genai_decode(folder: Path, repeats: int = 1) -> dict:
    import onnxruntime_genai as og

    model = og.Model(str(folder))
    best = None
    for i in range(repeats + 1):  # the first run warms up
        params = og.GeneratorParams(model)
        params.set_search_options(max_length=len(PROMPT) + NEW_TOKENS, do_sample=False, min_length=len(PROMPT) + NEW_TOKENS)
        gen = og.Generator(model, params)
        start = time.perf_counter()
        gen.append_tokens([PROMPT])
        gen.generate_next_token()
        first = time.perf_counter() - start
        start = time.perf_counter()
        while not gen.is_done():
            gen.generate_next_token()
        decode = time.perf_counter() - start
        tokens = list(gen.get_sequence(0))[len(PROMPT):]
        rate = (len(tokens) - 1) / decode
        if i and (best is None or rate > best["tokens_per_s"]):
            best = {"tokens_per_s": rate, "first_token_ms": first * 1e3, "tokens": [int(t) for t in tokens]}
    return best


def main() -> None:
    if "--export-cost" in sys.argv:  # export + verification of a ~500M model vs bare torch.onnx.export
        import llm_export

        return llm_export.main([a for a in sys.argv[1:] if a != "--export-cost"])
    import onnxdeploy

    # LLM_BENCH_WORK=<folder of an earlier run>: reuse its export and optimized model (same seed, same weights)
    work = Path(os.environ.get("LLM_BENCH_WORK") or tempfile.mkdtemp(prefix="onnxdeploy-llm-bench-"))
    rows, notes, figures = [], [], {"load_before": f"{os.getloadavg()[0]:.1f}"}
    model = build_folder(work / "hf")
    params = sum(p.numel() for p in model.parameters())
    reference_tokens = torch_greedy(model)

    start = time.perf_counter()
    reused = (work / "ours.onnx").exists()
    if not reused:
        onnxdeploy.export(model, work / "ours.onnx", task="text-generation")
    figures["export_s"] = time.perf_counter() - start
    figures["export"] = "reused from an earlier run" if reused else f"{figures['export_s']:.0f} s"
    start = time.perf_counter()
    opt = onnxdeploy.optimize_decoder(work / "ours.onnx")
    onnxdeploy.save(opt.model, work / "ours.opt.onnx")
    figures["optimize_s"] = time.perf_counter() - start
    figures["fusions"] = next(n for n in opt.report.notes if n.startswith("fusions fired"))
    start = time.perf_counter()
    q = onnxdeploy.quantize_weights(work / "ours.opt.onnx", work / "ours.int4.onnx", weights="int4", block_size=32,
                                    accuracy_level=4, new_tokens=NEW_TOKENS, prompt_ids=PROMPT, measure=False,
                                    threads=THREADS, verify=False)  # the verdict is reported below, not enforced
    figures["int4_verdict"] = q.verification.summary()
    figures["quantize_s"] = time.perf_counter() - start
    figures["int4_logits_cosine"] = q.logits_cosine
    figures["int4_token_agreement"] = q.token_agreement
    figures["int4_first_divergence"] = q.generation.first_divergence
    figures["int4_step_cosine_min"] = q.generation.min_cosine

    peers = {}
    for precision in ("fp32", "int4"):
        try:
            seconds, net = builder(work / "hf", work / f"genai_{precision}", precision)
            peers[precision] = work / f"genai_{precision}"
            notes.append(f"onnxruntime-genai builder {precision}: {seconds:.0f} s, {net}")
        except Exception as err:  # noqa: BLE001 - a peer that fails is reported, not fatal
            notes.append(f"onnxruntime-genai builder {precision} failed: {str(err).splitlines()[-1][:300]}")

    try:
        seconds, net = optimum_export(work / "hf", work / "optimum")
        peers["optimum"] = work / "optimum"
        notes.append(f"optimum-onnx export fp32: {seconds:.0f} s, {net}")
    except Exception as err:  # noqa: BLE001
        notes.append(f"optimum-onnx export: {str(err).splitlines()[-1][:300]}")

    candidates = [("ours: export (fp32)", "fp32", str(work / "ours.onnx"), "onnxruntime"),
                  ("ours: + optimize --preset decoder (fp32)", "fp32", str(work / "ours.opt.onnx"), "onnxruntime"),
                  ("ours: + quantize --weights int4 (block 32, accuracy level 4)", "int4",
                   str(work / "ours.int4.onnx"), "onnxruntime")]
    for precision, folder in peers.items():
        if precision == "optimum":
            candidates.append(("optimum-onnx export fp32, our ORT loop", "fp32", str(folder / "model.onnx"),
                               "onnxruntime"))
            continue
        candidates.append((f"onnxruntime-genai builder {precision}, our ORT loop", precision,
                           str(folder / "model.onnx"), "onnxruntime"))
        candidates.append((f"onnxruntime-genai builder {precision}, genai runtime", precision, str(folder), "genai"))
    # ROUNDS rounds over all candidates, one measured run each per round (after a warm-up), best kept: the load of
    # the shared machine drifts over minutes, and a candidate measured only at one moment would carry that moment
    results: dict[str, dict] = {}
    for _ in range(ROUNDS):
        for label, precision, path, how in candidates:
            try:
                result = ort_decode(path) if how == "onnxruntime" else genai_decode(Path(path))
            except Exception as err:  # noqa: BLE001
                notes.append(f"{label}: failed ({str(err).splitlines()[0][:300]})")
                continue
            if label not in results or result["tokens_per_s"] > results[label]["tokens_per_s"]:
                results[label] = result
    for label, precision, path, how in candidates:
        if label not in results:
            continue
        result = results[label]
        size = _model_bytes(path) if how == "onnxruntime" else _model_bytes(str(Path(path) / "model.onnx"))
        same = result["tokens"] == reference_tokens
        rows.append([label, precision, f"{result['tokens_per_s']:.1f}", f"{result['first_token_ms']:.0f}",
                     f"{size / 1e6:.0f}", "yes" if same else "no"])
        figures[label] = result["tokens_per_s"]
    write(rows, notes, figures, params, reference_tokens)


def _model_bytes(path: str) -> int:
    p = Path(path)
    files = {p, *p.parent.glob(p.name + "*.data"), *p.parent.glob(p.stem + ".*.data")}
    return sum(f.stat().st_size for f in files)


def write(rows, notes, figures, params, reference_tokens) -> None:
    import platform

    import onnxruntime
    import onnxruntime_genai
    import torch
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    ours = {k: v for k, v in figures.items() if k.startswith("ours:")}
    fp32_ours = max(v for k, v in ours.items() if "int4" not in k)
    int4_ours = next((v for k, v in ours.items() if "int4" in k), None)
    lines = [
        "# Decoder LLM: decode tokens/s, generation parity, int4 accuracy",
        "",
        f"Model: Llama from a transformers config, {params / 1e6:.0f}M parameters, random weights "
        f"({json.dumps(CONFIG)}). Batch 1, greedy, {NEW_TOKENS} new tokens after an {len(PROMPT)}-token prompt, "
        f"best of {ROUNDS} runs taken in {ROUNDS} rounds over all models (each after a warm-up), onnxruntime with "
        f"{THREADS} intra-op threads. Our loop is onnxdeploy's one generation loop (IOBinding: presents bound as the "
        "next step's pasts, no numpy copies).",
        "",
        "**The machine was loaded by 8 engineers sharing 2 cores while this ran (load average "
        f"{figures.get('load_before', '?')} before, {os.getloadavg()[0]:.1f} after): absolute figures are noisy, and "
        "the ratios are indicative only.**",
        "",
        "| model | weights | decode tokens/s | first token ms | size MB | greedy tokens = PyTorch |",
        "| --- | --- | ---: | ---: | ---: | --- |",
        *("| " + " | ".join(map(str, r)) + " |" for r in rows),
        "",
        f"- export (with PyTorch parity) {figures['export']}, optimize --preset decoder {figures['optimize_s']:.0f} s "
        f"({figures['fusions']}), quantize --weights int4 {figures['quantize_s']:.0f} s (incl. verification and "
        "greedy comparison).",
        f"- int4 vs fp32 (ours): logits cosine {figures['int4_logits_cosine']:.4f} (verifier, prefill + decode step); "
        f"greedy token agreement {figures['int4_token_agreement']:.1%} of {NEW_TOKENS} steps teacher-forced, per-step "
        f"logits cosine min {figures['int4_step_cosine_min']:.4f}; free-running generations first differ at step "
        f"{figures['int4_first_divergence']}. Random weights give near-flat logits whose argmax flips on near-ties: "
        "token agreement is a weak signal here, the cosine is the meaningful figure.",
        f"- int4 verification (default int4 bound, not enforced here): {figures['int4_verdict'][:600]}",
        f"- int4 decode / fp32 decode (ours): {int4_ours / fp32_ours:.2f}x" if int4_ours else "- int4: not measured",
        f"- PyTorch greedy tokens: {reference_tokens}",
        *(f"- {n}" for n in notes),
        "",
        f"Machine: {os.cpu_count()} CPUs (`nproc`), {cpu}; Python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, onnxruntime {onnxruntime.__version__}, onnxruntime-genai "
        f"{onnxruntime_genai.__version__}.",
        "",
        "Command: `.venv/bin/python benchmarks/llm.py`",
        "",
    ]
    out = ROOT / "benchmarks" / "results" / "llm.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
