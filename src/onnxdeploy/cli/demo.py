"""`onnxdeploy demo`: the seed article's steps in brief, then deploy of the built-in example with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from onnxdeploy.cli.check import TargetOpt
from onnxdeploy.cli.common import PANEL_DEPLOY

EXAMPLES = """[b]Examples[/b]

  onnxdeploy demo

  onnxdeploy demo -o /tmp/demo --target onnxruntime"""


def demo(
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for the demo's outputs.")]
    = Path("demo-out"),
    target: TargetOpt = "openvino",
) -> None:
    """Build, run and print the article's graph, then deploy the built-in Conv-BN-SiLU and write a report."""
    from onnxdeploy import examples, io
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.deploy import run_deploy, show_report
    from onnxdeploy.run import run_model

    output_dir.mkdir(parents=True, exist_ok=True)
    out.show("[b]1. Build the article's graph[/b] (Resize -> Conv -> Add, weights as inputs) with onnx.helper", markup=True)
    seed_path = io.save(examples.resize_conv_add(), output_dir / "resize_conv_add.onnx")
    out.show(f"   saved {seed_path} (checked with onnx.checker)")
    out.show("[b]2. Run it with onnxruntime[/b] (scales \\[1, 1, 2, 2])", markup=True)
    result = run_model(seed_path, examples.resize_conv_add_inputs())
    for name, arr in result.outputs.items():
        out.show(f"   {name}: shape {'x'.join(map(str, arr.shape))}, mean {float(arr.mean()):.4f}")
    for w in result.warnings:
        out.warn(w)
    out.show("[b]3. Its nodes[/b]", markup=True)
    proto = io.load_proto(seed_path)
    out.show(out.table(None, ["node", "op", "inputs", "outputs"],
                       [[n.name, n.op_type, ", ".join(n.input), ", ".join(n.output)] for n in proto.graph.node]))
    out.show(f"[b]4. Deploy the article's Conv-BN-SiLU to {target}[/b] (export, check, optimize, legalize, convert, "
             "verify, benchmark)", markup=True)
    report = run_deploy(None, target=target, output_dir=output_dir / "deploy")
    show_report(report)
    out.show(f"\nOpen the report: {Path(report.report_html).resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(demo)
