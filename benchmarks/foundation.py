"""Foundation benchmarks: CLI start-up, `inspect` against Polygraphy and onnx.load, `run` overhead against bare ORT.

Run: ``.venv/bin/python benchmarks/foundation.py [--resnet PATH] [--repeat 5] [--big-gb 3.2]``
Writes ``benchmarks/results/foundation.md``. Every timing is a fresh subprocess (``time.perf_counter`` around it)
and peak RSS is that child's ``ru_maxrss``; tools are interleaved (ours, peer, ours, peer, ...) and the median
is reported. The 3 GB model is written to a temporary folder and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import machine

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "foundation.md"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}

_MEASURE = r"""
import resource, subprocess, sys, time
start = time.perf_counter()
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
wall = time.perf_counter() - start
print(f"{wall} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {rc}")
"""


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one fresh child process running ``cmd``."""
    out = subprocess.run([sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, env=ENV, check=True)
    wall, rss_kb, rc = out.stdout.split()
    if rc != "0":
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}")
    return float(wall), int(rss_kb) / 1024


def interleaved(commands: dict[str, list[str]], repeat: int) -> dict[str, dict]:
    """Run each command ``repeat`` times, interleaved, after one untimed warm-up each (page cache)."""
    for cmd in commands.values():
        measure(cmd)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            runs[name].append(measure(cmd))
    return {
        name: {
            "median_s": statistics.median(w for w, _ in r),
            "min_s": min(w for w, _ in r),
            "peak_rss_mib": max(m for _, m in r),
        }
        for name, r in runs.items()
    }


# ---------------------------------------------------------------- models


def resnet50(path: str | None) -> tuple[Path, str]:
    if path:
        return Path(path), f"given file {path}"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from corpus import export_corpus_model

        cache = ROOT / "build" / "corpus"
        if not (cache / "resnet50-dynamo-opt.onnx").exists() and (ROOT / "build" / "optcorpus").is_dir():
            cache = ROOT / "build" / "optcorpus"  # the same export, cached by the optimize benchmark
        p = export_corpus_model("resnet50", cache, exporter="dynamo", optimize=True)
        return p, "transformers ResNet-50, random weights, torch.onnx dynamo export (benchmarks/corpus.py)"
    except Exception as err:  # noqa: BLE001 - fall back to a synthetic model of the same size
        out = ROOT / "build" / "foundation" / "conv-stack-100mb.onnx"
        if not out.exists():
            conv_stack(out)
        return out, f"synthetic stack of Conv layers, ~100 MB (corpus unavailable: {err})"


def conv_stack(out: Path) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "input"
    for i in range(11):  # 11 x 512x512x3x3 float32 = 11 x 9.4 MB
        w = rng.standard_normal((512, 512 if i else 3, 3, 3), dtype=np.float32) * 0.01
        inits.append(numpy_helper.from_array(w, f"conv{i}.weight"))
        nodes.append(helper.make_node("Conv", [x, f"conv{i}.weight"], [f"c{i}"], pads=[1, 1, 1, 1], name=f"/conv{i}"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"/relu{i}"))
        x = f"r{i}"
    graph = helper.make_graph(nodes, "conv_stack", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                 [1, 3, 56, 56])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 512, 56, 56])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), out)


def big_external_model(folder: Path, gigabytes: float) -> Path:
    """MatMul layers whose weights (float32) total ``gigabytes`` GB in one external-data file.

    The data file is written with ``truncate`` (a sparse file of zeros): the structure is exactly that of a real
    model with external weights, and writing it costs no time or disk.
    """
    import onnx
    from onnx import TensorProto, helper

    rows, cols = 8192, 4096
    layer = rows * cols * 4
    layers = max(1, round(gigabytes * 1e9 / layer))
    nodes, inits, x = [], [], "x"
    for i in range(layers):
        dims = [rows, cols] if i % 2 == 0 else [cols, rows]  # x: batch x 8192 -> 4096 -> 8192 -> ...
        w = TensorProto(name=f"layers.{i}.weight", data_type=TensorProto.FLOAT, dims=dims,
                        data_location=TensorProto.EXTERNAL)
        for k, v in {"location": "big.onnx.data", "offset": str(i * layer), "length": str(layer)}.items():
            w.external_data.add(key=k, value=v)
        inits.append(w)
        nodes.append(helper.make_node("MatMul", [x, w.name], [f"h{i}"], name=f"/layers.{i}/MatMul"))
        x = f"h{i}"
    graph = helper.make_graph(nodes, "big", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", rows])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", rows if layers % 2 == 0
                                                                                    else cols])], inits)
    path = folder / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with open(folder / "big.onnx.data", "wb") as fh:
        fh.truncate(layers * layer)
    return path


# ---------------------------------------------------------------- run overhead

_RUN_OVERHEAD = r"""
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
from onnxdeploy._run import create_session, prepare_inputs, run_session
path, n = sys.argv[1], int(sys.argv[2])
session = create_session(path, threads=1)
feeds = prepare_inputs(path)
names = [o.name for o in session.get_outputs()]
for _ in range(3):
    session.run(names, feeds); run_session(session, feeds)
bare, ours = [], []
for _ in range(n):
    t = time.perf_counter(); session.run(names, feeds); bare.append(time.perf_counter() - t)
    t = time.perf_counter(); run_session(session, feeds); ours.append(time.perf_counter() - t)
print(json.dumps({"bare_s": statistics.median(bare), "ours_s": statistics.median(ours)}))
"""

_BARE_SCRIPT = r"""
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
x = {i.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
     for i in s.get_inputs()}
s.run(None, x)
"""


def import_breakdown(cmd: list[str]) -> list[tuple[str, float]]:
    """Self import time (ms, summed per top-level package) of one run of ``cmd`` under ``python -X importtime``."""
    out = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True, env=ENV)
    totals: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, name = line[len("import time:"):].split("|")
        top = name.strip().split(".")[0]
        totals[top] = totals.get(top, 0.0) + int(self_us) / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:10]


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resnet", help="Use this ~100 MB model instead of exporting ResNet-50 from the corpus.")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--big-gb", type=float, default=3.2)
    args = parser.parse_args()
    od, poly, py = str(BIN / "onnxdeploy"), str(BIN / "polygraphy"), sys.executable
    results: dict = {"machine": machine("onnxdeploy", "onnx", "onnxruntime", "onnx-ir", "polygraphy", "typer", "rich")}

    print("--help ...", file=sys.stderr)
    results["help"] = interleaved({"onnxdeploy --help": [od, "--help"], "python -c pass": [py, "-c", "pass"]},
                                  args.repeat * 2)

    model, origin = resnet50(args.resnet)
    results["resnet"] = {"file": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
                         "mb": model.stat().st_size / 1e6, "origin": origin}
    print(f"inspect {model} ...", file=sys.stderr)
    results["inspect_resnet"] = interleaved(
        {"onnxdeploy inspect": [od, "inspect", str(model)], "polygraphy inspect model": [poly, "inspect", "model",
                                                                                        str(model)]},
        args.repeat,
    )

    with tempfile.TemporaryDirectory(prefix="od-bench-", dir=ROOT / "build") as tmp:
        big = big_external_model(Path(tmp), args.big_gb)
        data_gb = (Path(tmp) / "big.onnx.data").stat().st_size / 1e9
        results["big"] = {"data_gb": data_gb}
        print(f"inspect {data_gb:.2f} GB external-data model ...", file=sys.stderr)
        results["inspect_big"] = interleaved(
            {"onnxdeploy inspect": [od, "inspect", str(big)],
             "onnx.load(load_external_data=False)": [py, "-c", f"import onnx; onnx.load({str(big)!r}, "
                                                               "load_external_data=False)"]},
            args.repeat,
        )
        results["inspect_big"].update(interleaved(
            {"polygraphy inspect model": [poly, "inspect", "model", str(big)],
             "onnx.load (weights read)": [py, "-c", f"import onnx; onnx.load({str(big)!r})"]},
            2,
        ))

    print("run overhead ...", file=sys.stderr)
    out = subprocess.run([py, "-c", _RUN_OVERHEAD, str(model), "30"], capture_output=True, text=True, env=ENV,
                         check=True)
    results["run_steady"] = json.loads(out.stdout)
    results["run_cli"] = interleaved(
        {"onnxdeploy run": [od, "run", str(model)], "bare InferenceSession script": [py, "-c", _BARE_SCRIPT,
                                                                                     str(model)]},
        3,
    )
    results["imports"] = import_breakdown([od, "inspect", str(model)])
    results["load"] = os.getloadavg()
    write(results)
    print(RESULTS.read_text())


def write(r: dict) -> None:
    def row(label, d):
        return f"| {label} | {d['median_s']:.3f} | {d['min_s']:.3f} | {d['peak_rss_mib']:.0f} |"

    h, ir, ib, rs, rc = r["help"], r["inspect_resnet"], r["inspect_big"], r["run_steady"], r["run_cli"]
    help_s = h["onnxdeploy --help"]["median_s"]
    ratio_r = ir["onnxdeploy inspect"]["median_s"] / ir["polygraphy inspect model"]["median_s"]
    big = ib["onnxdeploy inspect"]
    ratio_b = big["median_s"] / ib["polygraphy inspect model"]["median_s"]
    overhead = rs["ours_s"] / rs["bare_s"] - 1
    cli_overhead = rc["onnxdeploy run"]["median_s"] / rc["bare InferenceSession script"]["median_s"] - 1
    ok = lambda c: "yes" if c else "**no**"  # noqa: E731
    lines = [
        "# Foundation benchmarks",
        "",
        f"Machine: {r['machine']}. Measured with `.venv/bin/python benchmarks/foundation.py` "
        f"({time.strftime('%Y-%m-%d')}); OMP_NUM_THREADS=1. The machine was shared with other jobs (load average "
        f"{r['load'][0]:.1f} / {r['load'][1]:.1f} / {r['load'][2]:.1f} on 2 cores at the end of the run), so absolute "
        "times are noisy: the ratios come from interleaved runs in the same minute, and the min column is the "
        "closest to an idle machine.",
        "",
        "## Requirements",
        "",
        "| requirement | measured | met |",
        "|---|---|---|",
        f"| `onnxdeploy --help` < 0.3 s | {help_s:.3f} s median (min {h['onnxdeploy --help']['min_s']:.3f} s; "
        f"bare `python -c pass` {h['python -c pass']['median_s']:.3f} s) | {ok(help_s < 0.3)} |",
        f"| inspect ResNet-50 <= 0.8x polygraphy | {ratio_r:.2f}x | {ok(ratio_r <= 0.8)} |",
        f"| inspect {r['big']['data_gb']:.1f} GB external model < 1 s, < 200 MB RSS | {big['median_s']:.3f} s, "
        f"{big['peak_rss_mib']:.0f} MiB ({ratio_b:.3f}x polygraphy) | "
        f"{ok(big['median_s'] < 1 and big['peak_rss_mib'] < 200)} |",
        f"| `run` overhead over bare `InferenceSession.run` <= 10% (steady state) | {overhead * 100:+.2f}% | "
        f"{ok(overhead <= 0.10)} |",
        "",
        "## Details (wall seconds of a fresh process; peak RSS of that process)",
        "",
        "| command | median s | min s | peak RSS MiB |",
        "|---|---|---|---|",
        *(row(k, v) for k, v in h.items()),
        *(row(f"{k} (ResNet-50, {r['resnet']['mb']:.0f} MB)", v) for k, v in ir.items()),
        *(row(f"{k} ({r['big']['data_gb']:.1f} GB external)", v) for k, v in ib.items()),
        *(row(f"{k} (ResNet-50, one inference, end to end)", v) for k, v in rc.items()),
        "",
        f"ResNet-50 model: `{r['resnet']['file']}` ({r['resnet']['mb']:.0f} MB): {r['resnet']['origin']}.",
        "",
        f"Steady state (same session, median of 30 inferences): bare `session.run` {rs['bare_s'] * 1000:.1f} ms, "
        f"`onnxdeploy._run.run_session` {rs['ours_s'] * 1000:.1f} ms ({overhead * 100:+.2f}%). End to end, "
        f"`onnxdeploy run` (validation, input synthesis, table) vs a bare 5-line script: {cli_overhead * 100:+.0f}%.",
        "",
        "Where `onnxdeploy inspect` on ResNet-50 spends its time: `inspect()` itself takes about 10 ms (the weights "
        "are skipped at the protobuf wire level); the rest is Python start-up and imports. Self import time per "
        "package in one run under `python -X importtime` (inflated by the tracing): "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in r["imports"])
        + ". Polygraphy pays for numpy/onnx/protobuf too, but not for typer, pydantic and rich; typer 0.29 imports "
        "pydantic (TypeAdapter-based parameter coercion, fastapi/typer#1831) for every command that has a "
        "non-boolean parameter, which is most of the gap to 0.8x.",
        "",
        "The 3 GB model's data file is sparse (written with `truncate`): it has the exact structure of a model with "
        "external weights; `onnxdeploy inspect` validates every reference (location, size) without reading it, while "
        "Polygraphy and plain `onnx.load` read all of it.",
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
