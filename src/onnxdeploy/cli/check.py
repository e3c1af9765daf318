"""`onnxdeploy check`: every operator, dtype and opset problem a target has with a model."""

from __future__ import annotations


import typer

from onnxdeploy.cli.common import DEFAULT_TARGET, PANEL_DEPLOY, JsonOpt, ModelArg, TargetOpt, node_names_text


EXAMPLES = """[b]Examples[/b]

  onnxdeploy check model.onnx --target ascend

  onnxdeploy check model.onnx --target openvino --json"""


def check(model: ModelArg, target: TargetOpt = DEFAULT_TARGET, as_json: JsonOpt = False) -> None:
    """List every op, dtype or opset problem of MODEL on a target, with the nodes and the fix when one exists."""
    from onnxdeploy import check as check_api
    from onnxdeploy.cli import output

    report = check_api(model, target)
    if as_json:
        output.print_json(report)
        return
    rows = [[p.kind if p.severity == "error" else f"{p.kind} (warning)", p.what, node_names_text(p.nodes), p.detail,
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


def register(app: typer.Typer) -> None:
    app.command("check", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(check)
