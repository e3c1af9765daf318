"""`onnxdeploy legalize`: rewrite a model into what a target accepts (rules, opset, int64), verified."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (DEFAULT_TARGET, PANEL_DEPLOY, AtolOpt, DimOpt, InputOpt, InputsOpt, JsonOpt, ModelArg,
                                   OutputOpt, RtolOpt, SeedOpt, ShapeOpt, TargetOpt)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy legalize model.onnx --target ascend -o model.ascend.onnx

  onnxdeploy legalize model.onnx --target tensorrt -o out.onnx --opset 17 --json"""


def legalize(
    model: ModelArg,
    output: OutputOpt,
    target: TargetOpt = DEFAULT_TARGET,
    opset: Annotated[Optional[int], typer.Option("--opset", help="Convert to this opset.")] = None,
    input: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the comparison with the original.")] = False,
    keep_partial: Annotated[bool, typer.Option(
        "--keep-partial", help="Write the (verified) result even when the target still cannot take it.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Replace unsupported ops by equivalent compositions, convert the opset, narrow int64; verify; write OUT."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import inputs_from
    from onnxdeploy import legalize as legalize_api

    result = legalize_api(model, target, output=output, verify=not no_verify, opset=opset,
                          inputs=inputs_from(input, inputs, dim, shape, seed), atol=atol, rtol=rtol,
                          keep_partial=keep_partial)
    rep = result.report
    if as_json:
        out.print_json(rep)
        return
    rows = [[f"rule {op}", f"{n} node(s)"] for op, n in rep.rules_applied.items()]
    if rep.opset_before != rep.opset_after:
        rows.append(["opset", f"{rep.opset_before} -> {rep.opset_after}"])
    rows += [["int64", c] for c in rep.int64_changes]
    out.show(out.table(f"legalize for {rep.target}", ["change", "detail"], rows or [["none", "already legal"]]))
    if rep.verification is not None:
        out.show(rep.verification.summary())
    from onnxdeploy.cli.common import node_names_text

    errors = [p for p in rep.remaining if p.severity == "error"]
    for p in rep.remaining:
        if p.severity == "error":
            out.warn(f"cannot fix {p.kind} {p.what} ({node_names_text(p.nodes)}): {p.detail}")
        else:
            out.info(f"note: {p.what} ({node_names_text(p.nodes)}): {p.detail}")
    if rep.output:
        out.show(f"wrote {rep.output}")
    if not rep.legal:
        from onnxdeploy.errors import UnsupportedError

        ops = [p for p in errors if p.kind == "op"]
        hint = ("replace those operators in the source model, or choose another target" if ops else
                "change the source model (dtypes, opset) or choose another target")
        if not rep.output:
            hint += f"; nothing written (--keep-partial writes the partly legalized model to {output})"
        what = rep.output or "the legalized model"
        raise UnsupportedError(f"{rep.target} still cannot take {what}: "
                               + "; ".join(f"{p.kind} {p.what} ({node_names_text(p.nodes)})" for p in errors), hint=hint)


def register(app: typer.Typer) -> None:
    app.command("legalize", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(legalize)
