"""`onnxdeploy bench`: latency percentiles and throughput of one or more models, interleaved, with op profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    PANEL_OPTIMIZE,
    DimOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    OptLevelOpt,
    ProviderOpt,
    SeedOpt,
    ShapeOpt,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy bench model.onnx

  onnxdeploy bench model.onnx model.int8.onnx --iterations 200 --threads 1

  onnxdeploy bench model.onnx --batch 1 --batch 8 --duration 10

  onnxdeploy bench model.onnx --profile --svg ops.svg --json

  onnxdeploy bench model.onnx --precision auto --target openvino     [dim](every precision, interleaved)[/dim]

  onnxdeploy bench model.onnx --precision int8 --target auto --threads 2"""

ModelsArg = Annotated[list[Path], typer.Argument(metavar="MODEL...", help="One or more .onnx models; the first is the reference.")]


def bench(
    models: ModelsArg,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs of each model first.")] = 5,
    iterations: Annotated[
        Optional[int], typer.Option("--iterations", "-n", help="Timed runs of each model (default 50).")
    ] = None,
    duration: Annotated[
        Optional[float], typer.Option("--duration", help="Seconds of timed runs per batch size.")
    ] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads.")] = None,
    batch: Annotated[
        Optional[list[int]], typer.Option("--batch", help="Batch size for symbolic batch dims. Repeatable.")
    ] = None,
    provider: ProviderOpt = None,
    opt_level: OptLevelOpt = None,
    input_: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    profile: Annotated[bool, typer.Option("--profile", help="Add per-op-type time from onnxruntime's profiler.")] = False,
    svg: Annotated[Optional[Path], typer.Option("--svg", help="With --profile: write a bar chart here.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="Precision to build: fp32, bf16, fp16, int8, or auto (every one --target builds) and time each artefact against onnxruntime fp32, with its cosine and size.")] = None,
    target: Annotated[str, typer.Option("--target", help="Deployment target: onnxruntime, openvino, ... With --precision: the "
                                        "engine(s) to build for, or auto (every installed one).")] = "onnxruntime",
    as_json: JsonOpt = False,
) -> None:
    """Time models on onnxruntime: p50/p90/p99, mean and throughput; several models side by side."""
    from onnxdeploy import bench as bench_api
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import check_opt_level, inputs_from, providers_from

    optimization_level = check_opt_level(opt_level)
    given = inputs_from(input_, inputs, dim, shape, seed)
    if precision is not None:
        return _bench_precisions(models, precision, target, given, threads, duration, seed, as_json)
    feeds = given.feeds(str(models[0])) if given.given else None  # tensors given: every model runs on them
    if svg is not None and not profile:
        profile = True
    with out.progress() as bar:
        task = bar.add_task("benchmarking", total=1.0)

        def on_progress(label: str, fraction: float) -> None:
            bar.update(task, description=label, completed=fraction)

        report = bench_api(
            [str(m) for m in models],
            warmup=warmup,
            iterations=iterations,
            duration=duration,
            threads=threads,
            batch_sizes=batch,
            providers=providers_from(provider),
            optimization_level=optimization_level,
            dims=dict(given.dims),
            shapes=given.shape_dims(),
            inputs=feeds,
            seed=seed,
            profile=profile,
            svg=svg,
            on_progress=on_progress,
        )
    if as_json:
        out.print_json(report)
        return
    several = len(report.settings["models"]) > 1
    batched = bool(report.settings["batch_sizes"])
    columns = ["model", *(["batch"] if batched else []), "runs", "p50", "p90", "p99", "items/s"]
    if several:
        columns.append("vs 1st")
    rows = []
    for r in report.results:
        row = [r.model, *([r.batch] if batched else []), r.iterations, _ms(r.p50), _ms(r.p90), _ms(r.p99),
               f"{r.throughput:.1f}"]
        if several:
            row.append(_vs_first(r.vs_first))
        rows.append(row)
    s = report.settings
    vs = "; vs 1st: median over interleaved blocks" if several else ""
    caption = (
        f"latency in ms (mean and spread: --json){vs}; {s['warmup']} warm-up runs{', interleaved' if several else ''}"
        f"{', until the ratios were stable' if s.get('until_stable') else ''}; "
        f"threads {s['threads'] or 'default'}; {', '.join(s['providers'])}"
    )
    shapes = sorted({", ".join(f"{k} {v}" for k, v in r.inputs.items()) for r in report.results if r.inputs})
    if shapes:
        caption += "; inputs: " + " | ".join(shapes)
    out.show(out.table("Latency", columns, rows, caption=caption))
    for w in getattr(report, "warnings", []):
        out.warn(w)
    for model, ops in report.profiles.items():
        out.show(
            out.table(
                f"Time per op type: {model}",
                ["op type", "ms per run", "calls", "share"],
                [[o.op_type, f"{o.ms:.3f}", o.calls, f"{o.percent:.1f}%"] for o in ops],
            )
        )
    if report.svg:
        out.info(f"wrote {report.svg}")


def _vs_first(m) -> str:
    from onnxdeploy.cli import output as out

    if m is None:
        return "reference"
    return out.fmt_ratio(m.speedup) + (" (noisy)" if m.noisy else "")


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def _bench_precisions(models, precision, target, given, threads, duration, seed, as_json) -> None:
    """``bench --precision``: the candidates of :func:`onnxdeploy.choose_precision` (budget 0: every one is timed)."""
    import tempfile

    from onnxdeploy import choose_precision
    from onnxdeploy.cli import output as out
    from onnxdeploy.errors import UserInputError

    if len(models) != 1:
        raise UserInputError("--precision builds one model at several precisions: give one MODEL")
    held = [given.feeds(str(models[0]))] if given.given else None
    with tempfile.TemporaryDirectory(prefix="onnxdeploy-bench-") as tmp, out.progress() as bar:
        task = bar.add_task("building", total=None)
        choice = choose_precision(models[0], target=target, precision=precision, output_dir=tmp, held_out=held,
                                  dims=dict(given.dims) or None, threads=threads, bench_seconds=duration or 2.0,
                                  seed=seed, min_cosine=1e-9,
                                  on_progress=lambda msg: bar.update(task, description=msg))
    if as_json:
        out.print_json(choice)
        return
    rows = [[c.label, c.status, "" if c.p50_ms is None else f"{c.p50_ms:.3f}",
             "" if c.speedup is None else f"{1 / c.speedup:.2f}x", "" if c.cosine is None else f"{c.cosine:.6f}",
             "" if c.top1 is None else f"{100 * c.top1:.1f}%", f"{c.size_bytes / 1e6:.2f} MB" if c.size_bytes else "",
             "" if c.fraction_of_peak is None else f"{100 * c.fraction_of_peak:.1f}%", c.reason]
            for c in choice.candidates]
    out.show(out.table(f"{models[0]}: onnxruntime fp32 p50 {choice.baseline_ms or 0:.3f} ms, "
                       f"{threads or 'default'} thread(s), interleaved",
                       ["candidate", "status", "p50 ms", "vs ort fp32", "cosine", "top-1", "size", "of peak", "note"],
                       rows))
    if choice.winner is not None:
        out.show(f"fastest: {choice.winner.label} ({choice.held_out_source} for cosine)")


def register(app: typer.Typer) -> None:
    app.command("bench", epilog=EXAMPLES, rich_help_panel=PANEL_OPTIMIZE)(bench)
