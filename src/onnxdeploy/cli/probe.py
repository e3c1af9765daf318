"""`onnxdeploy probe`: capture any or all intermediate tensors in one onnxruntime session, with their stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import (
    PANEL_DEBUG,
    DimOpt,
    InputOpt,
    InputsOpt,
    JsonOpt,
    ModelArg,
    OptLevelOpt,
    ProviderOpt,
    SeedOpt,
    ShapeOpt,
    check_opt_level,
    inputs_from,
)

EXAMPLES = """[b]Examples[/b]

  onnxdeploy probe model.onnx --all -o dump.npz

  onnxdeploy probe model.onnx --tensor conv_input --tensor conv_output

  onnxdeploy probe big.onnx --all --max-memory 2GB -o dump.npz --dim batch=4

  onnxdeploy probe model.onnx --tensor conv_input --inputs inputs.npz --json"""

TensorOpt = Annotated[
    Optional[list[str]], typer.Option("--tensor", help="A tensor to capture, by name. Repeatable.")
]
AllOpt = Annotated[bool, typer.Option("--all", help="Capture every node output (the default without --tensor).")]
def fmt_shape(shape) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def probe(
    model: ModelArg,
    tensor: TensorOpt = None,
    all_: AllOpt = False,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Write the tensors to this .npz file.", show_default=False)
    ] = None,
    max_memory: Annotated[
        Optional[str],
        typer.Option("--max-memory", help="Capture in several runs, each holding at most this much (e.g. 2GB)."),
    ] = None,
    input_: InputOpt = None,
    inputs: InputsOpt = None,
    dim: DimOpt = None,
    shape: ShapeOpt = None,
    seed: SeedOpt = 0,
    provider: ProviderOpt = None,
    opt_level: OptLevelOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Capture intermediate tensors (one session, the file untouched): producer, shape, dtype, min/max/mean."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.debug import probe as probe_api
    from onnxdeploy.errors import UserInputError

    if tensor and all_:
        raise UserInputError("--tensor and --all exclude each other", hint="give names with --tensor, or --all")
    result = probe_api(
        model,
        tensors=tensor or None,
        max_memory=max_memory,
        out=output,
        keep=False,
        providers=provider,
        optimization_level=check_opt_level(opt_level),
        inputs=inputs_from(input_, inputs, dim, shape, seed),
    )
    if as_json:
        out.print_json(result)
        return
    columns = ["tensor", "node", "op", "shape", "dtype", "min", "max", "mean"]
    if result.runs > 1:
        columns.append("run")
    rows = []
    for i in result.infos:
        row = [i.name, i.node or "", i.op or "", fmt_shape(i.shape), i.dtype, out.fmt_num(i.min), out.fmt_num(i.max),
               out.fmt_num(i.mean) + (f" ({i.nonfinite} non-finite)" if i.nonfinite else "")]
        rows.append(row + ([str(i.run)] if result.runs > 1 else []))
    count = len(result.infos)
    out.show(out.table(f"{model}: {count} tensor{'' if count == 1 else 's'}", columns, rows))
    for s in result.skipped[:10]:
        out.warn(f"not captured: {s.name!r}: {s.reason}")
    if len(result.skipped) > 10:
        out.warn(f"... and {len(result.skipped) - 10} more tensors inside control-flow bodies not captured")
    where = f"; wrote {result.path} ({out.fmt_bytes(result.path.stat().st_size)})" if result.path else ""
    plural = "" if count == 1 else "s"
    out.info(f"captured {count} tensor{plural} in {result.runs} run(s), {result.seconds:.2f} s{where}")


def register(app: typer.Typer) -> None:
    app.command("probe", epilog=EXAMPLES, rich_help_panel=PANEL_DEBUG)(probe)
