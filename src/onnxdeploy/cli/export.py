"""`onnxdeploy export`: export a PyTorch model to ONNX with named dynamic dims and verified parity."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from onnxdeploy.cli.common import PANEL_EXPORT, AtolOpt, JsonOpt, OutputOpt, RtolOpt, SeedOpt

EXAMPLES = """[b]Examples[/b]

  onnxdeploy export mymodels.py:build -o model.onnx --input input=1x3x224x224 --dynamic input:0=batch,2=height,3=width

  onnxdeploy export mypkg.models:resnet -o resnet.onnx --exporter torchscript --opset 17 --json

  onnxdeploy export model.py:build -o m.onnx --input-names input --output-names values --atol 1e-3 --no-verify"""

TargetArg = Annotated[str, typer.Argument(metavar="TARGET", help="package.module:factory or path/to/file.py:factory.", show_default=False)]
ShapesOpt = Annotated[
    Optional[list[str]],
    typer.Option("--input", "-i", help="NAME=1x3x224x224: shape of a random example input (when the factory returns "
                 "only a module). Repeatable, in forward() order."),
]
DynamicOpt = Annotated[
    Optional[list[str]],
    typer.Option("--dynamic", "-d", help="NAME:0=batch,2=height: name dims of an input or output dynamic. Repeatable."),
]


def _names(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    return [n.strip() for item in items for n in item.split(",") if n.strip()]


def _parse_dynamic(items: list[str] | None) -> dict[str, dict[int, str]]:
    from onnxdeploy.errors import UserInputError

    result: dict[str, dict[int, str]] = {}
    for item in items or []:
        name, sep, spec = item.partition(":")
        if not sep or not name or not spec:
            raise UserInputError(f"--dynamic expects NAME:INDEX=DIM[,INDEX=DIM], got {item!r}",
                                 hint="e.g. --dynamic input:0=batch,2=height,3=width")
        axes = result.setdefault(name, {})
        for part in spec.split(","):
            index, eq, dim = part.partition("=")
            if not eq or not index.strip().lstrip("-").isdigit() or not dim.strip():
                raise UserInputError(f"--dynamic {item}: {part!r} is not INDEX=NAME", hint="e.g. 0=batch")
            axes[int(index)] = dim.strip()
    return result


def export(
    target: TargetArg,
    output: OutputOpt,
    inputs: ShapesOpt = None,
    dynamic: DynamicOpt = None,
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset (default: the exporter's).")] = None,
    input_names: Annotated[Optional[list[str]], typer.Option("--input-names", help="Input names, comma separated.")] = None,
    output_names: Annotated[Optional[list[str]], typer.Option("--output-names", help="Output names, comma separated.")] = None,
    exporter: Annotated[str, typer.Option("--exporter", help="dynamo, torchscript or auto (dynamo, then torchscript).")] = "auto",
    atol: AtolOpt = 1e-4,
    rtol: RtolOpt = 1e-3,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the onnxruntime vs PyTorch check.")] = False,
    keep_on_mismatch: Annotated[bool, typer.Option("--keep-on-mismatch", help="Write the model even when outputs disagree.")] = False,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    """Export a PyTorch model to ONNX; check dynamic dims and verify outputs with onnxruntime."""
    from onnxdeploy.cli import output as out
    from onnxdeploy.cli.common import parse_shapes
    from onnxdeploy.errors import OutputsDisagree, UserInputError, require

    torch = require("torch", extra="torch", purpose="onnxdeploy export")
    from onnxdeploy.export import export as export_api
    from onnxdeploy.torch_target import load_torch_target

    shapes = parse_shapes(inputs, option="--input")
    names = _names(input_names)
    with out.progress() as bar:
        task = bar.add_task("load target", total=None)
        loaded = load_torch_target(target)
        if loaded.example_inputs is not None or loaded.example_kwargs is not None:
            example = loaded.example_inputs if loaded.example_kwargs is None else loaded.example_kwargs
            if shapes:
                out.warn("the factory returned example inputs; --input shapes are ignored")
        else:
            if not shapes:
                raise UserInputError(f"{target} returned only a module, so export needs example input shapes",
                                     hint="add --input NAME=1x3x224x224 (one per forward() input)")
            for name, dims in shapes.items():
                if any(not isinstance(d, int) for d in dims):
                    raise UserInputError(f"--input {name}: shapes must be numbers, got {'x'.join(map(str, dims))}")
            gen = torch.Generator().manual_seed(seed)
            example = tuple(torch.randn([int(d) for d in dims], generator=gen) for dims in shapes.values())
            names = names or list(shapes)

        def phase(name: str) -> None:
            bar.update(task, description=name)

        try:
            report = export_api(
                loaded.module, example, output, input_names=names, output_names=_names(output_names),
                dynamic=_parse_dynamic(dynamic), opset=opset, exporter=exporter, verify=not no_verify, atol=atol,
                rtol=rtol, keep_on_mismatch=keep_on_mismatch, on_phase=phase,
            )
        except OutputsDisagree as err:
            report = getattr(err, "report", None)
            if report is not None and not as_json:
                bar.stop()
                _show(out, report)
            elif report is not None:
                out.print_json(report)
            raise
    if as_json:
        out.print_json(report)
    else:
        _show(out, report)


def _show(out, report) -> None:
    dims = "; ".join(f"{k}: " + ", ".join(f"{i}={n}" for i, n in v.items()) for k, v in report.dynamic_dims.items())
    out.show(out.table(
        f"Exported {report.path}" if report.kept else "Export (no file written)",
        ["field", "value"],
        [["exporter", f"{report.exporter} ({report.exporter_reason})"], ["opset", str(report.opset)],
         ["inputs", ", ".join(report.input_names)], ["outputs", ", ".join(report.output_names)],
         ["dynamic dims", dims or "none"],
         ["seconds", ", ".join(f"{k} {v:.2f}" for k, v in report.seconds.items())]]
        + ([["custom ops", "; ".join(report.custom_ops)]] if report.custom_ops else []),
    ))
    if report.parity:
        rows = [[c.label, d.name, f"{d.max_abs:.3g}", f"{d.max_rel:.3g}", "ok" if d.passed else "MISMATCH"]
                for c in report.parity for d in c.diffs]
        out.show(out.table(f"Parity with PyTorch (atol {report.parity[0].atol:g}, rtol {report.parity[0].rtol:g})",
                           ["shape", "output", "max abs", "max rel", "status"], rows))
    else:
        out.warn("not verified (--no-verify)")


def register(app: typer.Typer) -> None:
    app.command("export", epilog=EXAMPLES, rich_help_panel=PANEL_EXPORT)(export)
