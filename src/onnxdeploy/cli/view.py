"""`onnxdeploy view`: open a model in Netron, served on localhost."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import PANEL_MODEL, ModelArg

EXAMPLES = """[b]Examples[/b]

  onnxdeploy view model.onnx

  onnxdeploy view model.onnx --no-browser --port 8081"""


def view(
    model: ModelArg,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the URL instead of opening a browser.")]
    = False,
    port: Annotated[Optional[int], typer.Option("--port", help="Port to serve on (default: a free one).")] = None,
) -> None:
    """Serve MODEL with Netron on localhost until Ctrl-C."""
    import time

    from onnxdeploy.cli import output as out
    from onnxdeploy import serve_netron, stop_netron

    url = serve_netron(model, port=port, browse=not no_browser)
    out.show(f"Netron is serving {model} at {url} (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        stop_netron()


def register(app: typer.Typer) -> None:
    app.command("view", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(view)
