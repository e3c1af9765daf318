"""`onnxdeploy compare`: two models (or PyTorch vs ONNX); the verdict from the real outputs, the first diverging
intermediate tensor to say where."""

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
    inputs_from,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy compare model.onnx optimized.onnx

  onnxdeploy compare model.onnx --provider cpu --provider-b cuda --atol 1e-3

  onnxdeploy compare model.onnx --opt-level disable --opt-level-b all

  onnxdeploy compare my_model.py:make model.onnx   [dim](PyTorch vs ONNX, module by module)[/dim]

  onnxdeploy compare a.onnx b.onnx --tensor conv_output --json"""

AArg = Annotated[
    str, typer.Argument(metavar="REFERENCE", show_default=False,
                        help="Reference: an .onnx model, or a PyTorch target pkg.mod:factory / file.py:factory.")
]
BArg = Annotated[
    Optional[str], typer.Argument(metavar="[CANDIDATE]", show_default=False,
                                  help="The .onnx model to check (default: REFERENCE again, with "
                                  "--provider-b/--opt-level-b).")
]


def compare(
    a: AArg,
    b: BArg = None,
    tensor: Annotated[
        Optional[list[str]],
        typer.Option("--tensor", help="Show only this intermediate tensor of REFERENCE (the verdict still comes from "
                     "the outputs). Repeatable."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Show every matched intermediate tensor (the default).")] = False,
    outputs_only: Annotated[
        bool, typer.Option("--outputs-only", help="Compare the graph outputs only (no intermediate runs).")
    ] = False,
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
    """Compare two models on the same inputs: the verdict from their real outputs (exit 3 when they differ), the
    first diverging intermediate tensor (or module call) to say where."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.debug import compare as compare_api
    from onnxdeploy.errors import UserInputError

    if sum(bool(x) for x in (tensor, all_, outputs_only)) > 1:
        raise UserInputError("--tensor, --all and --outputs-only exclude each other")
    result = compare_api(
        a, b, tensors=tensor or None, outputs_only=outputs_only, providers=provider, providers_b=provider_b,
        optimization_level=check_opt_level(opt_level),
        optimization_level_b=check_opt_level(opt_level_b, "--opt-level-b"),
        atol=atol, rtol=rtol, inputs=inputs_from(input_, inputs, dim, shape, seed))
    if as_json:
        out.print_json(result)
    else:
        _show(result, failures_only, outputs_only)
    result.check()


def _show(result, failures_only: bool, outputs_only: bool) -> None:
    from onnxdeploy.cli import output as out

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
        if m.passed:
            status = "ok"
        elif result.passed:
            status = out.styled("note", "yellow")  # outputs agree: an intermediate difference only informs
        else:
            status = out.styled("FIRST" if m is first else "differs", "red")
        row = [str(k), m.name] + ([m.other] if torch_mode or renamed else [])
        rows.append(row + [m.node or "", m.op or "", m.how + ("*" if m.note else ""), out.fmt_num(m.diff.max_abs),
                           out.fmt_num(m.diff.max_rel), f"{m.diff.cosine:.6f}", status])
    if not outputs_only and (rows or not failures_only):
        what = "module calls" if torch_mode else "tensors"
        out.show(out.table(f"{result.label_a} vs {result.label_b}: intermediate {what}", columns, rows))
    if result.verdict is not None:
        names = {d.name: d for d in result.verdict.diffs}
        out_rows = [[d.name, d.dtype, "x".join(map(str, d.shape)), out.fmt_num(d.max_abs), out.fmt_num(d.max_rel),
                     f"{d.cosine:.6f}", "ok" if d.passed else out.styled("differs", "red")] for d in names.values()]
        out_rows += [[n, "", "", "", "", "", out.styled("missing in candidate", "red")] for n in result.verdict.missing]
        out.show(out.table("outputs, models run as they are (the verdict)",
                           ["output", "dtype", "shape", "max abs", "max rel", "cosine", ""], out_rows))
    for u in result.unmatched[:5]:
        out.info(f"unmatched: {u.name}: {u.reason}")
    if len(result.unmatched) > 5:
        out.info(f"... and {len(result.unmatched) - 5} more tensors of the reference without a trusted counterpart in the candidate")
    rewritten = [m for m in result.matches if m.note]
    for m in rewritten[:5]:
        out.info(f"{m.name}*: {m.note}")
    if len(rewritten) > 5:
        out.info(f"... and {len(rewritten) - 5} more tensors computed differently in the candidate")
    if result.passed:  # when the verdict fails, the error says it
        for note in result.notes:
            out.warn(note)
        out.info(result.summary())


def register(app: typer.Typer) -> None:
    app.command("compare", epilog=EXAMPLES, rich_help_panel=PANEL_DEBUG)(compare)
