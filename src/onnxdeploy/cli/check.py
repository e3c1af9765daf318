"""`onnxdeploy check`: every operator, dtype and opset problem a target has with a model."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxdeploy.cli.common import PANEL_DEPLOY, JsonOpt, ModelArg

TARGET_HELP = "onnxruntime, openvino, ort-mobile, tensorrt or ascend."
TargetOpt = Annotated[str, typer.Option("--target", "-t", help=f"Deployment target: {TARGET_HELP}")]

EXAMPLES = """[b]Examples[/b]

  onnxdeploy check model.onnx --target ascend

  onnxdeploy check model.onnx --target openvino --json"""


def check(model: ModelArg, target: TargetOpt = "onnxruntime", as_json: JsonOpt = False) -> None:
    """List every op, dtype or opset problem of MODEL on a target, with the nodes and the fix when one exists."""
    from onnxdeploy.check import check as check_api
    from onnxdeploy.cli import output

    report = check_api(model, target)
    if as_json:
        output.print_json(report)
        return
    rows = [[p.kind if p.severity == "error" else f"{p.kind} (warning)", p.what, _names(p.nodes), p.detail,
             p.fix or ("none needed" if p.severity != "error" else "none known")] for p in report.problems]
    if rows:
        output.show(output.table(f"{report.target}: problems in {model}", ["kind", "what", "nodes", "detail", "fix"],
                                 rows))
    for note in report.notes:
        output.info(f"note: {note}")
    if not report.supported:
        from onnxdeploy.errors import UnsupportedError

        hint = "`onnxdeploy legalize MODEL --target T -o OUT` fixes the ones with a fix" if report.fixable else None
        raise UnsupportedError(report.summary(), hint=hint)
    output.show(report.summary())


def _names(nodes: list[str], n: int = 3) -> str:
    """The first ``n`` node names (the JSON output has more), so one problem stays a few lines tall."""
    if len(nodes) <= n:
        return ", ".join(nodes)
    more = sum(int(x.split()[1]) for x in nodes if x.startswith("... ")) + len([x for x in nodes if not x.startswith("... ")]) - n
    return ", ".join(nodes[:n]) + f", ... {more} more"


def register(app: typer.Typer) -> None:
    app.command("check", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(check)
