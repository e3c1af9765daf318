"""`onnxdeploy example`: write a built-in example model to a file, to try every command without a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxdeploy.cli.common import PANEL_MODEL, OutputOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy example resize_conv_add -o seed.onnx

  onnxdeploy example conv_bn_silu -o conv_bn_silu.onnx"""


def example(
    name: Annotated[str, typer.Argument(metavar="NAME", help="resize_conv_add (the seed article's graph) or conv_bn_silu.")],
    output: OutputOpt,
) -> None:
    """Write a built-in example model (the seed article's graph, or Conv-BN-SiLU with dynamic dims)."""
    from onnxdeploy import examples
    import onnxdeploy as io
    from onnxdeploy.cli import output as out
    from onnxdeploy.errors import UserInputError

    factory = examples.EXAMPLES.get(name)
    if factory is None:
        raise UserInputError(f"no built-in example named {name!r}", hint=f"choose one of: {', '.join(examples.EXAMPLES)}")
    io.save(factory(), Path(output))
    out.info(f"wrote {output} ({name})")


def register(app: typer.Typer) -> None:
    app.command("example", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(example)
