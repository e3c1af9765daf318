"""`onnxdeploy deploy`: PyTorch or ONNX -> checked, optimized, legalized, converted, verified, benchmarked."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from onnxdeploy.cli.check import TargetOpt
from onnxdeploy.cli.common import PANEL_DEPLOY, DimOpt, JsonOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy deploy --target openvino -o out        (built-in example)

  onnxdeploy deploy model.onnx --target ort-mobile -o out --quantize dynamic

  onnxdeploy deploy mypkg.models:make_model --target ascend -o out --json"""


def deploy(
    source: Annotated[Optional[str], typer.Argument(metavar="[SOURCE]", help="An .onnx file or a PyTorch target pkg.mod:factory; "
                                                         "none: the built-in example.", show_default=False)] = None,
    target: TargetOpt = "onnxruntime",
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for artefacts and the report.")]
    = Path("deploy-out"),
    quantize: Annotated[Optional[str], typer.Option("--quantize", help="static or dynamic int8.")] = None,
    dim: DimOpt = None,
    no_optimize: Annotated[bool, typer.Option("--no-optimize", help="Skip the optimize step.")] = False,
    no_bench: Annotated[bool, typer.Option("--no-bench", help="Skip the benchmark step.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run export -> check -> optimize -> legalize -> quantize -> convert -> benchmark, verifying every step."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import parse_dims

    report = run_deploy(source, target=target, output_dir=output_dir, quantize=quantize, dims=parse_dims(dim),
                        optimize=not no_optimize, benchmark=not no_bench, quiet=as_json)
    if as_json:
        out.print_json(report)
    else:
        show_report(report)


def run_deploy(source, *, quiet: bool = False, **options):
    """Call :func:`onnxdeploy.deploy.deploy` with a live line per step on stderr."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.deploy import deploy as deploy_api

    marks = {"ok": "[green]ok[/green]", "failed": "[red]FAILED[/red]", "skipped": "[yellow]skipped[/yellow]",
             "unavailable": "[yellow]unavailable[/yellow]"}
    with out.progress() as progress:
        tasks: dict[str, int] = {}

        def on_step(step: str, status: str) -> None:
            if status == "start":
                tasks[step] = progress.add_task(f"{step} ...", total=None)
                return
            progress.remove_task(tasks.pop(step))
            if not quiet:
                progress.console.print(f"  {step:<10} {marks.get(status, status)}")

        return deploy_api(source, on_step=on_step, **options)


def show_report(report) -> None:
    from onnxdeploy.cli import output as out

    rows = []
    for s in report.steps:
        p = s.parity
        rows.append([s.name, s.status, f"{s.seconds:.2f}", "" if p is None else ("match" if p.passed else "MISMATCH"),
                     "" if p is None else f"{p.max_abs:.3g}", s.message])
    out.show(out.table(f"deploy {report.source} -> {report.target}", ["step", "status", "s", "parity", "max abs",
                                                                       "message"], rows))
    if report.latency:
        out.show(out.table("latency (1 thread)", ["model", "engine", "p50 ms", "p90 ms", "runs"],
                           [[r["model"], r["engine"], f"{r['p50_ms']:.3f}", f"{r['p90_ms']:.3f}", r["iterations"]]
                            for r in report.latency]))
    out.show(f"artefact: {report.final_artifact}")
    out.show(f"report:   {report.report_html}  ({report.seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("deploy", epilog=EXAMPLES, rich_help_panel=PANEL_DEPLOY)(deploy)
