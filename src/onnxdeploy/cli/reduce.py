"""`onnxdeploy reduce`: cut two disagreeing models down to the smallest subgraph that still disagrees."""

from __future__ import annotations

from pathlib import Path
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
    inputs_from,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy reduce model.onnx optimized.onnx -o repro.onnx

  onnxdeploy reduce model.onnx --provider cpu --provider-b cuda -o repro.onnx

  onnxdeploy compare repro.onnx repro.b.onnx --inputs repro.npz   [dim](replay the repro)[/dim]"""


def reduce(
    a: Annotated[str, typer.Argument(metavar="REFERENCE", help="Reference .onnx model.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the repro model.", show_default=False)],
    b: Annotated[Optional[str], typer.Argument(metavar="[CANDIDATE]", help="The disagreeing .onnx model (default: REFERENCE again).",
                                              show_default=False)] = None,
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
    """Save the smallest subgraph whose output still disagrees (REFERENCE's as -o, CANDIDATE's as <name>.b.onnx, inputs as .npz)."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.debug import reduce as reduce_api

    result = reduce_api(
        a, b, output, providers=provider, providers_b=provider_b, optimization_level=check_opt_level(opt_level),
        optimization_level_b=check_opt_level(opt_level_b, "--opt-level-b"), atol=atol, rtol=rtol,
        inputs=inputs_from(input_, inputs, dim, shape, seed))
    if as_json:
        out.print_json(result)
        return
    first = result.first
    rows = [
        ["first divergence", f"{first.name} ({first.op} node {first.node!r})"],
        ["repro", f"{result.path}" + (f", {result.path_b}" if result.path_b else "")],
        ["inputs", f"{result.inputs_path} ({', '.join(result.inputs)})"],
        ["nodes", f"{result.nodes} of {result.original_nodes}: {', '.join(result.ops)}"],
        ["repro max abs / rel", f"{out.fmt_num(result.diff.max_abs)} / {out.fmt_num(result.diff.max_rel)}"],
        ["bisection trials", str(result.trials)],
    ]
    out.show(out.table("reduced", ["", ""], rows))
    replay = f"onnxdeploy compare {result.path}" + (f" {result.path_b}" if result.path_b else " --provider-b ...")
    out.info(f"{result.summary()}\nreplay: {replay} --inputs {result.inputs_path}")


def register(app: typer.Typer) -> None:
    app.command("reduce", epilog=EXAMPLES, rich_help_panel=PANEL_DEBUG)(reduce)
