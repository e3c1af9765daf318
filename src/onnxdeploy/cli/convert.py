"""`onnxdeploy convert`: convert a model into a target's own format and compare it with onnxruntime."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxdeploy.cli.common import (PANEL_DEPLOY, AtolOpt, DimOpt, InputOpt, InputsOpt, JsonOpt, ModelArg,
                                   OutputOpt, RtolOpt, SeedOpt, ShapeOpt, TargetFromSuffixOpt)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy convert model.onnx --target openvino -o model.xml

  onnxdeploy convert model.onnx --target ort-mobile -o model.ort

  onnxdeploy convert model.onnx --target ascend -o model.om   (prints the atc command)"""


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
    as_json: JsonOpt = False,
) -> None:
    """Write the target's artefact (.xml/.bin, .ort, .engine, or the atc command) and report parity."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import inputs_from
    from onnxdeploy.targets import convert as convert_api, target_for_artifact

    if target is None:
        target = target_for_artifact(output)

    rep = convert_api(model, target, output, verify=not no_verify, inputs=inputs_from(input, inputs, dim, shape, seed),
                      atol=atol, rtol=rtol, keep_on_mismatch=keep_on_mismatch)
    if as_json:
        out.print_json(rep)
        return
    out.show(out.table(None, [f"{rep.target} files"], [[f] for f in rep.files]))
    for note in rep.notes:
        out.info(f"note: {note}")
    if rep.command:
        out.show(f"command: {rep.command}")
    if rep.parity is not None:
        out.show(rep.parity.summary())
    if not rep.converted:
        out.show(f"not converted here: {rep.target} tools are not available on this machine")


def register(app: typer.Typer) -> None:
    app.command("convert", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(convert)
