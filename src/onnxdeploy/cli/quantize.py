"""`onnxdeploy quantize`: int8 quantization with onnxruntime, checked and timed against fp32."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (PANEL_OPTIMIZE, CalibrationOpt, DimOpt, ImageSizeOpt, JsonOpt, LayoutOpt, MeanOpt,
                                   ModelArg, OutputOpt, SeedOpt, ShapeOpt, StdOpt)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy quantize resnet50.onnx -o resnet50.int8.onnx

  onnxdeploy quantize resnet50.onnx -o r50.int8.onnx --calibration images.npz --exclude-node '/fc*'

  onnxdeploy quantize resnet50.onnx -o r50.int8.onnx --calibration photos/ --samples 64   [dim](a folder of .jpg/.png)[/dim]

  onnxdeploy quantize bert.onnx -o bert.int8.onnx --mode dynamic --json

  onnxdeploy quantize llm.onnx -o llm.int4.onnx --weights int4 --block-size 32   [dim](MatMulNBits weights)[/dim]"""


def quantize(
    model: ModelArg,
    output: OutputOpt,
    mode: Annotated[
        str, typer.Option("--mode", help="auto (by model type: CNN static, transformer dynamic), static or dynamic.")
    ] = "auto",
    calibration: CalibrationOpt = None,
    image_size: ImageSizeOpt = None,
    mean: MeanOpt = None,
    std: StdOpt = None,
    layout: LayoutOpt = None,
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
        float, typer.Option("--min-cosine", help="Accuracy budget: the lowest cosine to fp32 accepted; below it exit 3, "
                                       "nothing written.")
    ] = 0.99,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Write even when outputs drift too far.")] = False,
    no_measure: Annotated[bool, typer.Option("--no-measure", help="Skip the fp32-vs-int8 timing.")] = False,
    weights: Annotated[
        Optional[str], typer.Option("--weights", help="Weight-only quantization: int4 or int8 block-wise MatMul "
                                    "weights (onnxruntime MatMulNBits), e.g. for decoder LLMs.", show_default=False)
    ] = None,
    block_size: Annotated[int, typer.Option("--block-size", help="With --weights: weights per scale (16-256).")] = 32,
    symmetric: Annotated[
        bool, typer.Option("--symmetric/--asymmetric", help="With --weights: zero points (asymmetric) or none.")
    ] = True,
    accuracy_level: Annotated[
        Optional[int], typer.Option("--accuracy-level", help="With --weights: MatMulNBits compute type (4: int8, "
                                    "fastest on CPU; 1: fp32).", show_default=False)
    ] = None,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Quantize a model to int8 (QDQ), or its weights to int4/int8 (--weights); report the error against fp32."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import calibration_from, inputs_from
    from onnxdeploy import quantize as quantize_api

    if weights is not None:
        return _weights(model, output, weights, block_size=block_size, symmetric=symmetric,
                        accuracy_level=accuracy_level, exclude_node=exclude_node, threads=threads,
                        min_cosine=min_cosine, no_verify=no_verify, no_measure=no_measure, seed=seed, as_json=as_json)
    given = inputs_from(None, None, dim, shape, seed)  # --dim and --shape as every verb reads them
    calibration_spec = calibration_from(calibration, image_size, mean, std, layout, seed=seed)
    with out.progress() as bar:
        bar.add_task("quantizing, verifying and timing", total=None)
        report = quantize_api(
            model,
            output,
            mode=mode,
            calibration=calibration_spec,
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


def _weights(model, output, weights: str, *, block_size: int, symmetric: bool, accuracy_level, exclude_node,
             threads, min_cosine: float, no_verify: bool, no_measure: bool, seed: int, as_json: bool) -> None:
    """``--weights int4|int8``: weight-only MatMulNBits (:func:`onnxdeploy.quantize_weights`)."""
    from onnxdeploy.cli import output as out
    from onnxdeploy import quantize as quantize_api

    with out.progress() as bar:
        bar.add_task(f"quantizing weights to {weights}, verifying, generating and timing", total=None)
        report = quantize_api(model, output, weights=weights, block_size=block_size, symmetric=symmetric,
                              accuracy_level=accuracy_level, exclude_nodes=exclude_node or [], threads=threads,
                              min_cosine=min_cosine, verify=not no_verify, measure=not no_measure, seed=seed)
    for message in report.warnings:
        out.warn(message)
    if as_json:
        out.print_json(report)
        return
    out.show(out.table(f"Quantized weights of {model.name}", ["", "value"],
                       [r for r in _weight_rows(report, out) if r[1] not in (None, "")]))


def _weight_rows(report, out) -> list[list]:
    def num(v, fmt, unit=""):
        return "" if v is None else format(v, fmt) + unit

    gen, verdict = report.generation, report.verification
    rows = [
        ["quantization", f"{report.weights} weights, block {report.block_size}, "
                         f"{'symmetric' if report.symmetric else 'asymmetric'}"
                         + (f", accuracy level {report.accuracy_level}" if report.accuracy_level is not None else "")],
        ["MatMulNBits", f"{report.quantized} of {report.matmuls} MatMuls"],
    ]
    for c in verdict.comparisons if verdict else ():
        rows.append([f"verified at {c.label}", f"{'passed' if c.passed else 'FAILED'}: cosine {c.min_cosine:.5f}"])
    rows += [
        ["metric", verdict.metric if verdict else "not verified"],
        ["logits cosine (min)", num(report.logits_cosine, ".5f")],
    ]
    if gen is not None:
        div = "identical" if gen.first_divergence is None else f"first differs at step {gen.first_divergence + 1}"
        rows += [["greedy tokens", f"{len(gen.reference_tokens)} new tokens, {div}"],
                 ["token agreement", f"{gen.token_agreement:.1%} of steps (teacher-forced), logits cosine per step "
                                     f"min {gen.min_cosine:.4f} mean {gen.mean_cosine:.4f}"]]
    fp32 = report.fp32_speed and report.fp32_speed.decode_tokens_per_s
    quant = report.quantized_speed and report.quantized_speed.decode_tokens_per_s
    rows += [
        ["decode tokens/s", f"fp32 {fp32:.1f}, {report.weights} {quant:.1f} ({out.fmt_ratio(report.speedup)})"
         if fp32 and quant else None],
        ["size", f"{out.fmt_bytes(report.input_bytes)} -> {out.fmt_bytes(report.output_bytes)}"],
        ["written", report.output],
    ]
    return rows


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
        ["calibration", report.calibration_details or report.calibration],
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
