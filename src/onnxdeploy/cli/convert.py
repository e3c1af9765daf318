"""`onnxdeploy convert`: convert a model into a target's own format and compare it with onnxruntime."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (PANEL_DEPLOY, AtolOpt, CalibrationOpt, DimOpt, InputOpt, InputsOpt, JsonOpt, ModelArg,
                                   OutputOpt, RtolOpt, SeedOpt, ShapeOpt, TargetFromSuffixOpt)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy convert model.onnx --target openvino -o model.xml

  onnxdeploy convert model.onnx --target ort-mobile -o model.ort

  onnxdeploy convert model.onnx --target ascend -o model.om   (prints the atc command)

  onnxdeploy convert model.onnx --target triton -o model_repository   (config.pbtxt + inferenceservice.yaml)

  onnxdeploy convert model.onnx --target openvino --precision bf16 -o model.xml

  onnxdeploy convert model.onnx --target openvino --precision int8 --calibration calib.npz -o model.xml"""

PrecisionOpt = Annotated[str, typer.Option(
    "--precision", help="Precision to build: fp32, bf16, fp16 or int8 (what the target builds here; `onnxdeploy targets` lists "
    "them). The artefact is judged by its precision's metric (cosine, rel L2, top-1 for int8).")]


def convert(
    model: ModelArg,
    output: OutputOpt,
    target: TargetFromSuffixOpt = None,
    input: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the parity check.")] = False,
    keep_on_mismatch: Annotated[
        bool, typer.Option("--keep-on-mismatch", help="Keep the artefact when it disagrees with onnxruntime.")
    ] = False,
    triton_backend: Annotated[Optional[str], typer.Option(
        "--triton-backend", help="With --target triton: onnxruntime (default), python (model.py running onnxruntime, "
                                 "for servers without the onnxruntime backend) or openvino.")] = None,
    precision: PrecisionOpt = "fp32",
    calibration: CalibrationOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the target's artefact (.xml/.bin, .ort, .engine, or the atc command) and report parity."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import calibration_from, inputs_from
    from onnxdeploy.targets import convert as convert_api, target_for_artifact

    if target is None:
        target = target_for_artifact(output)
    if triton_backend is not None:  # the Triton repository's backend (`onnxdeploy serve` docs: docs/serving.md)
        from onnxdeploy.serving import triton_target

        target = triton_target(target, triton_backend)

    from onnxdeploy.targets import check_precision, get_target

    precision = check_precision(get_target(target), precision)
    samples = None
    if calibration is not None:
        if precision != "int8":
            out.warn(f"--calibration is used by int8 builds only; ignored at {precision}")
        else:
            from onnxdeploy import load_calibration

            samples = list(load_calibration(calibration_from(calibration, seed=seed), model))
    rep = convert_api(model, target, output, verify=not no_verify, inputs=inputs_from(input, inputs, dim, shape, seed),
                      atol=atol, rtol=rtol, keep_on_mismatch=keep_on_mismatch, precision=precision,
                      calibration=samples)
    if as_json:
        out.print_json(rep)
        return
    out.show(out.table(None, [f"{rep.target} {rep.precision} files"], [[f] for f in rep.files]))
    for note in rep.notes:
        out.info(f"note: {note}")
    if rep.command:
        out.show(f"command: {rep.command}")
    if rep.parity is not None:
        out.show(rep.parity.summary())
        out.show(f"{rep.precision} metric: {rep.metric_values()}")
    if not rep.converted:
        out.show(f"not converted here: {rep.target} tools are not available on this machine")


def register(app: typer.Typer) -> None:
    app.command("convert", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(convert)
