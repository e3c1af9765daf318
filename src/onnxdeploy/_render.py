"""Pictures of a graph: a static SVG/HTML drawing in pure Python, and Netron served on localhost.

:func:`render_svg` lays the graph out as a layered DAG (Sugiyama style: longest-path layers, barycenter ordering
sweeps, straight-ish Bezier edges), one box per node with its op type and name, edges labelled with tensor shapes.
No graphviz or system package is needed. :func:`serve_netron` starts the ``netron`` package's server.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from onnxdeploy.errors import UserInputError, require

if TYPE_CHECKING:
    from onnxdeploy._io import ModelLike

BOX_H, LAYER_GAP, COL_GAP, CHAR_W, MARGIN = 38, 34, 22, 6.6, 20
MAX_NODES = 3000
OP_COLORS = {"Conv": "#cfe2ff", "ConvTranspose": "#cfe2ff", "MatMul": "#cfe2ff", "Gemm": "#cfe2ff",
             "Relu": "#f8d7da", "Sigmoid": "#f8d7da", "Mul": "#e2e3e5", "Add": "#e2e3e5",
             "BatchNormalization": "#d1e7dd", "LayerNormalization": "#d1e7dd", "Reshape": "#fff3cd",
             "Transpose": "#fff3cd", "QuantizeLinear": "#e0cffc", "DequantizeLinear": "#e0cffc"}


def _shape_text(value) -> str:
    if value is None or value.shape is None:
        return ""
    dims = ["?" if d is None else str(d) for d in (getattr(d, "value", d) for d in value.shape.dims)]
    dt = "" if value.dtype is None else value.dtype.name.lower().replace("float", "f").replace("int", "i")
    return ("x".join(dims) or "scalar") + (f" {dt}" if dt and dt != "f" else "")


def _layout(items: list[dict], edges: list[tuple[int, int, str]]) -> None:
    """Assign ``layer``, ``x``, ``y`` to every item (in place)."""
    preds, succs = defaultdict(list), defaultdict(list)
    for a, b, _ in edges:
        preds[b].append(a)
        succs[a].append(b)
    for i, item in enumerate(items):  # items are in topological order
        item["layer"] = max((items[p]["layer"] + 1 for p in preds[i]), default=0)
    for i in range(len(items) - 1, -1, -1):  # pull sources down next to their first consumer
        if not preds[i] and succs[i]:
            items[i]["layer"] = max(0, min(items[s]["layer"] for s in succs[i]) - 1)
    layers: dict[int, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        layers[item["layer"]].append(i)
    pos = {i: k for layer in layers.values() for k, i in enumerate(layer)}
    order = sorted(layers)
    for sweep in range(4):  # barycenter ordering, down then up
        seq = order if sweep % 2 == 0 else list(reversed(order))
        for li in seq:
            nbrs = preds if sweep % 2 == 0 else succs
            def key(i, nbrs=nbrs):
                ns = nbrs[i]
                return sum(pos[n] for n in ns) / len(ns) if ns else pos[i]
            layers[li].sort(key=key)
            for k, i in enumerate(layers[li]):
                pos[i] = k
    widths = {li: sum(items[i]["w"] for i in layer) + COL_GAP * (len(layer) - 1) for li, layer in layers.items()}
    full = max(widths.values(), default=0)
    for li, layer in layers.items():
        x = MARGIN + (full - widths[li]) / 2
        for i in layer:
            items[i]["x"], items[i]["y"] = x, MARGIN + li * (BOX_H + LAYER_GAP)
            x += items[i]["w"] + COL_GAP


def render_svg(model: "ModelLike", *, title: str | None = None, max_nodes: int = MAX_NODES) -> str:
    """An SVG picture of the main graph (inputs, nodes, outputs; initializers summarised inside their node)."""
    from onnxdeploy._check import node_label, typed_model

    m = typed_model(model)
    g = m.graph
    if len(g) > max_nodes:
        raise UserInputError(f"the graph has {len(g)} nodes; the static picture stops at {max_nodes}",
                             hint="use `onnxdeploy view MODEL` (Netron) for large graphs")
    items: list[dict] = []
    index_of_value: dict[int, int] = {}
    for v in g.inputs:
        if v.name in g.initializers:
            continue
        index_of_value[id(v)] = len(items)
        items.append({"kind": "input", "top": _text(v.name), "bottom": _shape_text(v)})
    for k, node in enumerate(g):
        weights = [v.name for v in node.inputs if v is not None and v.is_initializer()]
        bottom = node_label(node, k)
        if weights:
            bottom += f"  [{len(weights)} weight{'s' if len(weights) > 1 else ''}]"
        for v in node.outputs:
            index_of_value[id(v)] = len(items)
        items.append({"kind": "node", "top": _text(node.op_type), "bottom": bottom, "node": node})
    edges: list[tuple[int, int, str]] = []
    for i, item in enumerate(items):
        node = item.get("node")
        if node is None:
            continue
        for v in node.inputs:
            if v is not None and id(v) in index_of_value:
                edges.append((index_of_value[id(v)], i, _shape_text(v)))
    for v in g.outputs:
        src = index_of_value.get(id(v))
        items.append({"kind": "output", "top": _text(v.name), "bottom": _shape_text(v)})
        if src is not None:
            edges.append((src, len(items) - 1, ""))
    for item in items:
        item["w"] = max(90.0, CHAR_W * max(len(item["top"]), len(item["bottom"])) + 18)
    _layout(items, edges)
    width = max((it["x"] + it["w"] for it in items), default=200) + MARGIN
    height = max((it["y"] + BOX_H for it in items), default=100) + MARGIN + (24 if title else 0)
    dy = 24 if title else 0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif" font-size="11">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
           'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>',
           f'<rect width="100%" height="100%" fill="white"/>']
    if title:
        out.append(f'<text x="{MARGIN}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>')
    for a, b, label in edges:
        s, t = items[a], items[b]
        x1, y1 = s["x"] + s["w"] / 2, s["y"] + BOX_H + dy
        x2, y2 = t["x"] + t["w"] / 2, t["y"] + dy
        mid = (y1 + y2) / 2
        out.append(f'<path d="M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2 - 1:.1f}" '
                   'fill="none" stroke="#666" stroke-width="1.2" marker-end="url(#arrow)"/>')
        if label:
            out.append(f'<text x="{(x1 + x2) / 2 + 4:.1f}" y="{mid + 4:.1f}" fill="#555" font-size="9">'
                       f'{html.escape(label)}</text>')
    for it in items:
        x, y, w = it["x"], it["y"] + dy, it["w"]
        if it["kind"] == "node":
            fill = OP_COLORS.get(it["top"], "#f1f3f5")
            out.append(f'<g><title>{html.escape(it["bottom"])}</title><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" '
                       f'height="{BOX_H}" rx="4" fill="{fill}" stroke="#333"/>')
        else:
            fill = "#ffffff" if it["kind"] == "input" else "#fafafa"
            out.append(f'<g><rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{BOX_H}" rx="{BOX_H / 2}" '
                       f'fill="{fill}" stroke="#333" stroke-dasharray="4 2"/>')
        out.append(f'<text x="{x + w / 2:.1f}" y="{y + 15:.1f}" text-anchor="middle" font-weight="bold">'
                   f'{html.escape(it["top"])}</text>')
        out.append(f'<text x="{x + w / 2:.1f}" y="{y + 29:.1f}" text-anchor="middle" fill="#444" font-size="9">'
                   f'{html.escape(it["bottom"])}</text></g>')
    out.append("</svg>")
    return "\n".join(out)


def render(model: "ModelLike", output: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write the graph picture to ``output`` (``.svg``, or ``.html`` wrapping the SVG); return the path."""
    from onnxdeploy._io import atomic_write_text

    out = Path(output)
    if out.suffix.lower() not in (".svg", ".html", ".htm"):
        raise UserInputError(f"{out}: the picture must be .svg or .html", hint="e.g. -o graph.svg")
    if not (out.parent if str(out.parent) else Path(".")).exists():
        raise UserInputError(f"{out.parent}: output folder does not exist", hint=f"mkdir -p {out.parent}")
    name = title or (Path(model).name if isinstance(model, (str, os.PathLike)) else "model")
    svg = render_svg(model, title=name)
    if out.suffix.lower() == ".svg":
        text = '<?xml version="1.0" encoding="UTF-8"?>\n' + svg
    else:
        text = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(name)}</title>'
                '<link rel="icon" href="data:,"><style>body{margin:0;overflow:auto;background:#fff}</style></head>'
                f'<body>{svg}</body></html>\n')
    return atomic_write_text(out, text)


def serve_netron(model: str | os.PathLike, *, port: int | None = None, browse: bool = False,
                 host: str = "localhost") -> str:
    """Serve ``model`` with Netron on ``host:port`` (a free port when None) and return its URL (non-blocking)."""
    from onnxdeploy import _io as io

    netron = require("netron", extra="view", purpose="viewing a model in Netron")
    io.as_proto(model)  # validate the file (and its external data) before serving it
    address = netron.serve(str(model), None, address=(host, port), browse=browse)
    host_, port_ = address if isinstance(address, tuple) else (host, port)
    return f"http://{host_}:{port_}"


def _text(name) -> str:
    """A name as text: bytes that are not UTF-8 (a hostile model's names) are shown as escapes."""
    if isinstance(name, (bytes, bytearray)):
        return bytes(name).decode("utf-8", "backslashreplace")
    return str(name)


def stop_netron(address=None) -> None:
    import netron

    netron.stop(address)
