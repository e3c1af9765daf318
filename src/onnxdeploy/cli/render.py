"""`onnxdeploy render`: draw the graph as a static SVG or HTML picture (pure Python)."""

from __future__ import annotations

import typer

from onnxdeploy.cli.common import PANEL_MODEL, ModelArg, OutputOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy render model.onnx -o graph.svg

  onnxdeploy render model.onnx -o graph.html"""


def render(model: ModelArg, output: OutputOpt) -> None:
    """Draw MODEL's graph (layered boxes with op type and name, edges with shapes) to .svg or .html."""
    from onnxdeploy.cli import output as out
    from onnxdeploy import render as render_api

    path = render_api(model, output)
    out.show(f"wrote {path}")


def register(app: typer.Typer) -> None:
    app.command("render", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(render)
