"""`onnxdeploy diff`: what changed between two models (nodes, inputs/outputs, initializers, opsets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxdeploy.cli.common import PANEL_EDIT, JsonOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy diff model.onnx edited.onnx

  onnxdeploy diff model.onnx edited.onnx --json"""

ModelAArg = Annotated[Path, typer.Argument(metavar="MODEL_A", help="The first .onnx model (before).", show_default=False)]
ModelBArg = Annotated[Path, typer.Argument(metavar="MODEL_B", help="The .onnx model to compare against MODEL_A (after).", show_default=False)]
NoValuesOpt = Annotated[bool, typer.Option("--no-values", help="Compare initializer names, dtypes and shapes "
                                           "only, not their values.")]


def diff(model: ModelAArg, other: ModelBArg, no_values: NoValuesOpt = False, as_json: JsonOpt = False) -> None:
    """Nodes added/removed/changed, inputs and outputs, initializers (values compared), opsets."""
    from onnxdeploy.cli import output as out
    from onnxdeploy import diff as diff_api

    result = diff_api(model, other, compare_values=not no_values)
    if as_json:
        out.print_json(result)
        return
    if result.identical:
        out.info(result.summary())
        return
    titles = {"opset": "Opsets", "input": "Inputs", "output": "Outputs", "node": "Nodes",
              "initializer": "Initializers"}
    for section, title in titles.items():
        items = result.section(section)
        if not items:
            continue
        rows = [[c.kind, c.name, c.before, c.after, "; ".join(c.details)]
                for c in items]
        out.show(out.table(title, ["", "name", model.name, other.name, "details"], rows))
    out.info(result.summary())


def register(app: typer.Typer) -> None:
    app.command("diff", epilog=EXAMPLES, rich_help_panel=PANEL_EDIT)(diff)
