"""`onnxdeploy compare`: two models (or PyTorch vs ONNX) tensor by tensor; names the first divergence."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    PANEL_DEBUG,
    AtolOpt,
    DimOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    OptLevelBOpt,
    OptLevelOpt,
    ProviderBOpt,
    ProviderOpt,
    RtolOpt,
    SeedOpt,
    ShapeOpt,
    check_opt_level,
    input_options,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy compare model.onnx optimized.onnx

  onnxdeploy compare model.onnx --provider cpu --provider-b cuda --atol 1e-3

  onnxdeploy compare model.onnx --opt-level disable --opt-level-b all

  onnxdeploy compare my_model.py:make model.onnx   [dim](PyTorch vs ONNX, module by module)[/dim]

  onnxdeploy compare a.onnx b.onnx --tensor conv_output --json"""

AArg = Annotated[
    str, typer.Argument(metavar="A", help="Reference: an .onnx model, or a PyTorch target pkg.mod:factory / file.py:factory.",
                        show_default=False)
]
BArg = Annotated[
    Optional[str], typer.Argument(metavar="[B]", help="The .onnx model to check (default: A again, with --provider-b/--opt-level-b).",
                                  show_default=False)
]


def compare(
    a: AArg,
    b: BArg = None,
    tensor: Annotated[
        Optional[list[str]], typer.Option("--tensor", "-t", help="Compare only this tensor of A. Repeatable.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Compare every matched tensor (the default).")] = False,
    outputs_only: Annotated[bool, typer.Option("--outputs-only", help="Compare graph outputs only.")] = False,
    failures_only: Annotated[bool, typer.Option("--failures", help="List only tensors beyond tolerance.")] = False,
    input_: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    provider: ProviderOpt = None,
    provider_b: ProviderBOpt = None,
    opt_level: OptLevelOpt = None,
    opt_level_b: OptLevelBOpt = None,
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    as_json: JsonOpt = False,
) -> None:
    """Compare two models layer by layer on the same inputs; exit 3 when a tensor differs beyond tolerance."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.probe import fmt_num
    from onnxdeploy.debug import compare as compare_api
    from onnxdeploy.debug._compare import raise_disagreement
    from onnxdeploy.errors import UserInputError

    if sum(bool(x) for x in (tensor, all_, outputs_only)) > 1:
        raise UserInputError("--tensor, --all and --outputs-only exclude each other")
    result = compare_api(
        a, b, tensors=tensor or None, outputs_only=outputs_only, providers=provider, providers_b=provider_b,
        optimization_level=check_opt_level(opt_level),
        optimization_level_b=check_opt_level(opt_level_b, "--opt-level-b"),
        atol=atol, rtol=rtol, **input_options(input_, inputs, dim, shape, seed))
    if as_json:
        out.print_json(result)
    else:
        torch_mode = result.kind == "torch"
        renamed = any(m.name != m.other for m in result.matches)
        columns = ["#", "module" if torch_mode else "tensor"]
        columns += ["ONNX tensor"] if torch_mode else (["B tensor"] if renamed else [])
        columns += ["node", "op", "match", "max abs", "max rel", "cosine", ""]
        rows = []
        first = result.first_divergence
        for k, m in enumerate(result.matches):
            if failures_only and m.passed:
                continue
            status = "ok" if m.passed else out.styled("FIRST" if m is first else "differs", "red")
            row = [str(k), m.name] + ([m.other] if torch_mode or renamed else [])
            rows.append(row + [m.node or "", m.op or "", m.how, fmt_num(m.diff.max_abs), fmt_num(m.diff.max_rel),
                               f"{m.diff.cosine:.6f}", status])
        out.show(out.table(f"{result.label_a} vs {result.label_b}", columns, rows))
        if result.unmatched:
            shown = ", ".join(result.unmatched[:5]) + (" ..." if len(result.unmatched) > 5 else "")
            out.info(f"{len(result.unmatched)} tensors of A have no counterpart in B: {shown}")
        if result.passed:
            out.info(result.summary())
    if not result.passed:
        raise_disagreement(result)


def register(app: typer.Typer) -> None:
    app.command("compare", epilog=EXAMPLES, rich_help_panel=PANEL_DEBUG)(compare)
