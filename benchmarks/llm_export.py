"""Cost of exporting a decoder LLM with its KV cache: ``onnxdeploy.export(..., task="text-generation")`` (export,
dim naming, verification against PyTorch at a prefill and a decode step, save) against a bare ``torch.onnx.export``
(dynamo, same flat-cache wrapper, same dynamic dims, saved with external data) of the same model.

A Llama-style config of ~500M parameters with random weights (no download). Each mode runs in a fresh subprocess:
the model is built first (not timed), then only the export call is timed with time.perf_counter; peak RSS is the
child's own ru_maxrss (it includes the PyTorch model). Goals (issue 18): time within 3x the bare export, peak memory
within 3x the fp32 weights.

    .venv/bin/python benchmarks/llm_export.py [--tiny]      # or: .venv/bin/python benchmarks/llm.py --export-cost
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = dict(vocab_size=32000, hidden_size=1280, intermediate_size=3456, num_hidden_layers=24, num_attention_heads=20,
              num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False)
TINY = dict(CONFIG, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)

CHILD = r"""
import json, resource, sys, time, warnings, logging
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)
import torch
from transformers import LlamaConfig, LlamaForCausalLM
config, mode, out = json.loads({config!r}), {mode!r}, {out!r}
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(**config)).eval()
params = sum(p.numel() for p in model.parameters())
t0 = time.perf_counter()
if mode == "bare":
    from torch.export import Dim
    from onnxdeploy._llm import cache_module, dynamic_dims, io_names, torch_feeds
    wrapper, info = cache_module(model)
    names, outputs = io_names(info)
    example = torch_feeds(info, batch=2, past=3, sequence=4)
    dims = dynamic_dims(info)
    made = {{}}
    shapes = [{{i: made.setdefault(d, Dim(d)) if d != "total_sequence" else Dim.DYNAMIC for i, d in dims[n].items()}}
              for n in names]
    shapes = tuple(shapes[:3]) + (tuple(shapes[3:]),)
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program = torch.onnx.export(wrapper, tuple(example[n] for n in names), input_names=names,
                                    output_names=outputs, dynamo=True, dynamic_shapes=shapes, verbose=False)
    program.save(out, external_data=True)
    extra = {{}}
else:
    import onnxdeploy
    report = onnxdeploy.export(model, out, task="text-generation")
    extra = {{"passed": report.passed, "phases": {{k: round(v, 2) for k, v in report.seconds.items()}},
             "max_abs": max(c.max_abs for c in report.parity)}}
seconds = time.perf_counter() - t0
print(json.dumps(dict(mode=mode, seconds=seconds, peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      params=params, **extra)))
"""


def run(mode: str, config: dict, out: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    out.parent.mkdir(parents=True, exist_ok=True)
    code = CHILD.format(config=json.dumps(config), mode=mode, out=str(out))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"{mode} failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    tiny = "--tiny" in argv
    config = TINY if tiny else CONFIG
    with tempfile.TemporaryDirectory(prefix="onnxdeploy-llm-export-") as tmp:
        bare = run("bare", config, Path(tmp, "bare", "model.onnx"))
        ours = run("ours", config, Path(tmp, "ours", "model.onnx"))
    weights = bare["params"] * 4
    ratio = ours["seconds"] / bare["seconds"]
    rss = ours["peak_rss"] / weights
    sys.path.insert(0, str(HERE))
    from _machine import machine

    lines = [
        "# Decoder LLM export with KV cache: onnxdeploy vs bare torch.onnx.export", "",
        f"Machine: {machine()}", "",
        f"Model: Llama-style config {json.dumps(config)} ({bare['params'] / 1e6:.0f}M parameters, fp32 weights "
        f"{weights / 1e9:.2f} GB), random weights; one run per mode, each in a fresh process"
        + (" (--tiny)" if tiny else "") + ".", "",
        "| mode | seconds | peak RSS (GB) | peak RSS / fp32 weights |", "|---|---|---|---|",
        f"| bare torch.onnx.export (dynamo) + save | {bare['seconds']:.1f} | {bare['peak_rss'] / 1e9:.2f} | "
        f"{bare['peak_rss'] / weights:.2f}x |",
        f"| onnxdeploy export --task text-generation (export + verify prefill and decode + save) | "
        f"{ours['seconds']:.1f} | {ours['peak_rss'] / 1e9:.2f} | {rss:.2f}x |", "",
        f"Export + verification / bare export: **{ratio:.2f}x** (goal <= 3x); peak RSS **{rss:.2f}x** the fp32 "
        f"weights (goal <= 3x); verification max abs {ours['max_abs']:.3g}, passed: {ours['passed']}.", "",
        f"Our phases (s): {ours['phases']}", "",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not tiny:
        (HERE / "results" / "llm_export.md").write_text(text)


if __name__ == "__main__":
    main()
