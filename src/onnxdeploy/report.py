"""The deploy report: one self-contained HTML page (inline CSS and SVG, no script, no network)."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onnxdeploy.deploy import DeployReport

CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#146c2e;font-weight:bold}.failed{color:#b02a37;font-weight:bold}.skipped,.unavailable{color:#8a6d00}
.box{overflow:auto;border:1px solid #ddd;padding:8px;max-height:900px}code{background:#f5f5f5;padding:1px 4px}
"""


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _fmt(x, spec=".3g") -> str:
    return "" if x is None else format(x, spec)


def latency_svg(rows: list[dict], *, width: int = 640) -> str:
    """A horizontal bar chart of p50 latency (ms) per model."""
    if not rows:
        return ""
    bar_h, gap, left = 22, 8, 230
    top = max(r["p50_ms"] for r in rows) or 1.0
    height = len(rows) * (bar_h + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="12" '
             'font-family="Helvetica, Arial, sans-serif" role="img" aria-label="latency chart">']
    for i, r in enumerate(rows):
        y = 10 + i * (bar_h + gap)
        w = (width - left - 90) * r["p50_ms"] / top
        color = "#4c78a8" if r.get("engine") == "onnxruntime" else "#f58518"
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{_e(r["model"])}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{color}"/>')
        parts.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}">{r["p50_ms"]:.3f} ms</text>')
    parts.append(f'<text x="{left}" y="{height - 4}" fill="#666">p50 latency, 1 thread (lower is better)</text>')
    parts.append("</svg>")
    return "".join(parts)


def deploy_html(report: "DeployReport", graph_svg: str | None = None) -> str:
    d = report.to_dict()
    status = "passed" if report.passed else f"FAILED at step {d['failed_step']}"
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', '<link rel="icon" href="data:,">',
           f"<title>onnxdeploy deploy report: {_e(report.target)}</title><style>{CSS}</style></head><body>",
           f"<h1>Deploy report: {_e(report.source)} &rarr; {_e(report.target)}</h1>",
           "<table>",
           f"<tr><th>Status</th><td class=\"{'ok' if report.passed else 'failed'}\">{_e(status)}</td></tr>",
           f"<tr><th>Target</th><td>{_e(report.target)}</td></tr>",
           f"<tr><th>Final artefact</th><td><code>{_e(report.final_artifact)}</code></td></tr>",
           f"<tr><th>Inputs</th><td>{_e(', '.join(f'{k}: {chr(120).join(map(str, v))}' for k, v in report.inputs.items()))}</td></tr>",
           f"<tr><th>Total time</th><td>{report.seconds:.2f} s</td></tr></table>"]

    out.append("<h2>Steps and parity</h2><table><tr><th>Step</th><th>Status</th><th>Time (s)</th><th>Parity</th>"
               "<th>Max abs err</th><th>Max rel err</th><th>Min cosine</th><th>Message</th></tr>")
    for s in report.steps:
        p = s.parity
        cos = min((t.cosine for t in p.diffs), default=None) if p is not None else None
        parity = "" if p is None else ("match" if p.passed else "MISMATCH")
        out.append(f'<tr><td>{_e(s.name)}</td><td class="{_e(s.status)}">{_e(s.status)}</td>'
                   f'<td class="num">{s.seconds:.2f}</td><td>{parity}</td>'
                   f'<td class="num">{_fmt(p.max_abs) if p is not None else ""}</td>'
                   f'<td class="num">{_fmt(p.max_rel) if p is not None else ""}</td>'
                   f'<td class="num">{_fmt(cos, ".6f")}</td><td>{_e(s.message)}</td></tr>')
    out.append("</table>")

    check = next((s for s in report.steps if s.name == "check"), None)
    if check is not None and check.details.get("problems"):
        out.append("<h2>Check: problems found before legalization</h2><table><tr><th>Kind</th><th>What</th>"
                   "<th>Nodes</th><th>Detail</th><th>Fix</th></tr>")
        for p in check.details["problems"]:
            out.append(f"<tr><td>{_e(p['kind'])}</td><td>{_e(p['what'])}</td><td>{_e(', '.join(p['nodes']))}</td>"
                       f"<td>{_e(p['detail'])}</td><td>{_e(p['fix'] or 'none known')}</td></tr>")
        out.append("</table>")

    if report.latency:
        out.append("<h2>Latency</h2><table><tr><th>Model</th><th>Engine</th><th>p50 (ms)</th><th>p90 (ms)</th>"
                   "<th>mean (ms)</th><th>min (ms)</th><th>iterations</th></tr>")
        for r in report.latency:
            out.append(f"<tr><td>{_e(r['model'])}</td><td>{_e(r['engine'])}</td><td class=\"num\">{r['p50_ms']:.3f}"
                       f"</td><td class=\"num\">{r['p90_ms']:.3f}</td><td class=\"num\">{r['mean_ms']:.3f}</td>"
                       f"<td class=\"num\">{r['min_ms']:.3f}</td><td class=\"num\">{r['iterations']}</td></tr>")
        out.append("</table>" + latency_svg(report.latency))

    ops = sorted(set(report.ops_before) | set(report.ops_after))
    if ops:
        out.append("<h2>Operators before and after</h2><table><tr><th>Op type</th><th>Before</th><th>After</th></tr>")
        for op in ops:
            a, b = report.ops_before.get(op, 0), report.ops_after.get(op, 0)
            style = ' style="background:#fff3cd"' if a != b else ""
            out.append(f"<tr{style}><td>{_e(op)}</td><td class=\"num\">{a}</td><td class=\"num\">{b}</td></tr>")
        out.append("</table>")
    out.append("<h2>What changed</h2>")
    out.append("<ul>" + "".join(f"<li><code>{_e(c)}</code></li>" for c in report.changes) + "</ul>"
               if report.changes else "<p>No operator changes.</p>")
    for s in report.steps:
        if s.name == "convert" and s.details.get("command"):
            out.append(f"<h2>Command for the target toolchain</h2><pre>{_e(s.details['command'])}</pre>")
    if graph_svg:
        out.append(f"<h2>Graph of the final ONNX model</h2><div class=\"box\">{graph_svg}</div>")
    out.append("<p style=\"color:#888;font-size:12px\">Generated by onnxdeploy. Full data: deploy.json.</p>")
    out.append("</body></html>\n")
    return "\n".join(out)
