"""`onnxdeploy quantize`: int8 quantization with onnxruntime, checked and timed against fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import PANEL_OPTIMIZE, DimOpt, JsonOpt, ModelArg, OutputOpt, SeedOpt, ShapeOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy quantize resnet50.onnx -o resnet50.int8.onnx

  onnxdeploy quantize resnet50.onnx -o r50.int8.onnx --calibration images.npz --exclude-node '/fc*'

  onnxdeploy quantize bert.onnx -o bert.int8.onnx --mode dynamic --json"""


def quantize(
    model: ModelArg,
    output: OutputOpt,
    mode: Annotated[
        str, typer.Option("--mode", help="auto (by model type: CNN static, transformer dynamic), static or dynamic.")
    ] = "auto",
    calibration: Annotated[
        Optional[Path],
        typer.Option("--calibration", "-c", help="An .npz, or a folder of .npy/.pb files (or of sample folders)."),
    ] = None,
    samples: Annotated[
        Optional[int], typer.Option("--samples", help="Calibration samples to use (synthesized: default 16).")
    ] = None,
    per_channel: Annotated[
        Optional[bool],
        typer.Option("--per-channel/--no-per-channel", help="Per-channel weight scales (default: on for static)."),
    ] = None,
    weight_type: Annotated[str, typer.Option("--weight-type", help="int8 or uint8.")] = "int8",
    activation_type: Annotated[
        Optional[str], typer.Option("--activation-type", help="int8 or uint8 (static; default uint8).")
    ] = None,
    exclude_node: Annotated[
        Optional[list[str]], typer.Option("--exclude-node", help="Node name or glob kept in fp32. Repeatable.")
    ] = None,
    exclude_op: Annotated[
        Optional[list[str]], typer.Option("--exclude-op", help="Op type kept in fp32, e.g. Gemm. Repeatable.")
    ] = None,
    transformer_fusion: Annotated[
        Optional[bool],
        typer.Option("--transformer-fusion/--no-transformer-fusion",
                     help="onnxruntime's transformer optimizer before dynamic quantization (default: on for "
                     "transformers under 2 GB)."),
    ] = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads.")] = None,
    min_cosine: Annotated[
        float, typer.Option("--min-cosine", help="Fail (exit 3, nothing written) below this cosine to fp32.")
    ] = 0.99,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Write even when outputs drift too far.")] = False,
    no_measure: Annotated[bool, typer.Option("--no-measure", help="Skip the fp32-vs-int8 timing.")] = False,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Quantize a model to int8 (QDQ), report its error against fp32 on held-out inputs and its speedup."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import inputs_from
    from onnxdeploy import quantize as quantize_api

    given = inputs_from(None, None, dim, shape, seed)  # --dim and --shape as every verb reads them
    with out.progress() as bar:
        bar.add_task("quantizing, verifying and timing", total=None)
        report = quantize_api(
            model,
            output,
            mode=mode,
            calibration=calibration,
            per_channel=per_channel,
            weight_type=weight_type,
            activation_type=activation_type,
            exclude_nodes=exclude_node or [],
            exclude_ops=exclude_op or [],
            samples=samples,
            dims=dict(given.dims),
            shapes=given.shape_dims(),
            seed=seed,
            threads=threads,
            transformer_fusion=transformer_fusion,
            verify=not no_verify,
            measure=not no_measure,
            min_cosine=min_cosine,
        )
    for message in report.warnings:
        out.warn(message)
    if as_json:
        out.print_json(report)
        return
    out.show(out.table(f"Quantized {model.name}", ["", "value"], [r for r in _rows(report, out) if r[1] not in (None, "")]))


def _rows(report, out) -> list[list]:
    def num(v, fmt, unit=""):
        return "" if v is None else format(v, fmt) + unit

    def counts(d):
        return ", ".join(f"{k} {v}" for k, v in (d or {}).items())

    how = (f"static QDQ, {report.activation_type} activations, {report.weight_type} "
           f"{'per-channel' if report.per_channel else 'per-tensor'} weights") if report.mode == "static" else (
        f"dynamic, {report.weight_type} weights")
    speed = report.speed
    return [
        ["model type", report.model_kind],
        ["quantization", how],
        ["calibration", report.calibration],
        ["held-out inputs", report.heldout_samples],
        ["transformer fusions", counts(report.transformer_fusions)],
        ["runs quantized", counts(report.quantized_nodes)],
        ["quantized ops", counts(report.quantized_ops)],
        ["excluded nodes", len(report.excluded_nodes) or None],
        ["cosine vs fp32 (min)", num(report.cosine, ".5f")],
        ["max abs error", num(report.max_abs, ".4g")],
        ["top-1 agreement", num(report.top1_agreement, ".1%")],
        ["fp32 latency (median)", num(report.fp32_ms, ".2f", " ms")],
        ["int8 latency (median)", num(report.quantized_ms, ".2f", " ms")],
        ["speed vs fp32", speed and (f"{out.fmt_ratio(speed.speedup)} ({'NOISY, ' if speed.noisy else ''}"
                                     f"~99% interval {out.fmt_ratio(speed.low)} to "
                                     f"{out.fmt_ratio(speed.high)}, {speed.blocks} blocks)")],
        ["decision", report.decision],
        ["size", f"{out.fmt_bytes(report.input_bytes)} -> {out.fmt_bytes(report.output_bytes)}"],
        ["written", report.output],
    ]


def register(app: typer.Typer) -> None:
    app.command("quantize", epilog=EXAMPLES, rich_help_panel=PANEL_OPTIMIZE)(quantize)
