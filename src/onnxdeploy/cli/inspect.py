"""`onnxdeploy inspect`: describe a model (metadata, I/O, ops, parameters, FLOPs, nodes) without reading its weights."""

from __future__ import annotations

from typing import Annotated

import typer

from onnxdeploy.cli.common import PANEL_MODEL, DimOpt, JsonOpt, ModelArg

EXAMPLES = """[b]Examples[/b]

  onnxdeploy inspect model.onnx

  onnxdeploy inspect model.onnx --nodes

  onnxdeploy inspect bert.onnx --dim batch=1 --dim sequence=128   [dim](FLOPs of a dynamic model at these sizes)[/dim]

  onnxdeploy inspect model.onnx --json > summary.json"""


def inspect(
    model: ModelArg,
    nodes: Annotated[bool, typer.Option("--nodes", help="List every node with its tensors' dtype and shape.")] = False,
    dim: DimOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show IR/opset versions, inputs and outputs, op histogram, parameters and FLOPs (weights are never read)."""
    from onnxdeploy.cli import output
    from onnxdeploy.cli.common import parse_dims
    from onnxdeploy import inspect as inspect_api

    summary = inspect_api(model, nodes=nodes, dims=parse_dims(dim))
    if as_json:
        output.print_json(summary)
        return
    render(summary, output)


def _tensor_rows(tensors) -> list[list[str]]:
    return [[t.name, t.dtype or "?", t.shape_str()] for t in tensors]


def render(summary, output) -> None:
    """Print a :class:`~onnxdeploy._inspect.ModelSummary` as rich tables."""
    def esc(rows):  # output.table prints cells literally (no markup)
        return [list(row) for row in rows]

    opsets = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in summary.opset_imports.items())
    producer = " ".join(x for x in (summary.producer_name, summary.producer_version) if x) or "-"
    params = f"{output.fmt_count(summary.parameter_count)} ({output.fmt_bytes(summary.parameter_bytes)})"
    if summary.external_bytes:
        params += f", {output.fmt_bytes(summary.external_bytes)} in {', '.join(summary.external_files)}"
    unknown = len(summary.costs_unknown)
    if not summary.costs:
        flops = "no Conv/Gemm/MatMul nodes"
    elif unknown == len(summary.costs):
        flops = f"unknown: the shapes of the {unknown} Conv/Gemm/MatMul nodes are not all known"
    else:
        flops = f"{output.fmt_count(summary.macs)} MACs, {output.fmt_count(summary.flops)} FLOPs"
        flops += f" in {len(summary.costs) - unknown} Conv/Gemm/MatMul nodes"
        if unknown:
            flops += f" (+{unknown} with unknown shapes, not counted)"
    if summary.dims:
        flops += " at " + ", ".join(f"{k}={v}" for k, v in summary.dims.items())
    if unknown and summary.symbolic_dims:
        flops += "; count them with " + " ".join(f"--dim {d}=N" for d in summary.symbolic_dims)
    rows = [
        ["model", summary.path or "(in memory)"],
        ["IR version", summary.ir_version],
        ["opsets", opsets],
        ["producer", producer],
        ["graph", summary.graph_name],
        ["nodes", summary.node_count],
        ["parameters", f"{params} in {summary.initializer_count} initializers"],
        ["compute", flops],
    ]
    if summary.initializers_as_inputs:
        shown = ", ".join(summary.initializers_as_inputs[:8])
        more = len(summary.initializers_as_inputs) - 8
        rows.append(["initializers as inputs", shown + (f" (+{more} more)" if more > 0 else "")])
    if summary.custom_domains:
        rows.append(["custom domains", ", ".join(summary.custom_domains)])
    if summary.functions:
        rows.append(["functions", ", ".join(summary.functions)])
    if summary.shape_inference_error:
        rows.append(["shape inference", f"failed: {summary.shape_inference_error}"])
    output.show(
        output.table("Model", ["property", "value"], esc(rows)),
        output.table("Inputs", ["name", "dtype", "shape"], esc(_tensor_rows(summary.inputs))),
        output.table("Outputs", ["name", "dtype", "shape"], esc(_tensor_rows(summary.outputs))),
        output.table("Operators", ["op type", "count"], esc(summary.op_histogram.items())),
    )
    if summary.nodes is not None:
        nested = any(n.graph for n in summary.nodes)
        node_rows = []
        for n in summary.nodes:
            ins = "\n".join(f"{t.name}: {t.dtype or '?'} {t.shape_str()}" for t in n.inputs if t.name) or "-"
            outs = "\n".join(f"{t.name}: {t.dtype or '?'} {t.shape_str()}" for t in n.outputs if t.name) or "-"
            op = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
            node_rows.append(([n.graph or "main"] if nested else []) + [n.name, op, ins, outs])
        columns = (["graph"] if nested else []) + ["name", "op", "inputs", "outputs"]
        output.show(output.table("Nodes", columns, esc(node_rows)))


def register(app: typer.Typer) -> None:
    app.command("inspect", epilog=EXAMPLES, rich_help_panel=PANEL_MODEL)(inspect)
