"""The deploy report: one self-contained HTML page (inline CSS and SVG, no script, no network).

It renders the data of ``DeployReport.to_dict()`` (what ``deploy.json`` holds), so it depends on no pipeline module.
"""

from __future__ import annotations

import html
from typing import Mapping

CSS = """
body{font-family:Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok,.passed{color:#146c2e;font-weight:bold}.failed{color:#b02a37;font-weight:bold}.skipped,.unavailable{color:#8a6d00}
.headline{font-size:16px;padding:8px 12px;border:2px solid #b02a37;background:#fdecee}
.headline.passed{border-color:#146c2e;background:#eaf6ee}
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


def _step_row(s: Mapping) -> str:
    v = s.get("verification") or {}
    tensors = [t for c in v.get("comparisons", []) for t in c.get("tensors", [])]
    cos = min((t["cosine"] for t in tensors if t.get("cosine") is not None), default=None)
    verdict = "" if not v else ("match" if v.get("passed") else
                                ("INTERFACE CHANGED" if v.get("interface_changes") else "MISMATCH"))
    shapes = len(v.get("comparisons", [])) if v else ""
    message = "; ".join([s["message"], *s.get("notes", [])])
    return (f'<tr><td>{_e(s["name"])}</td><td class="{_e(s["status"])}">{_e(s["status"])}</td>'
            f'<td class="num">{s["seconds"]:.2f}</td><td>{verdict}</td><td class="num">{shapes}</td>'
            f'<td class="num">{_fmt(v.get("max_abs")) if v else ""}</td>'
            f'<td class="num">{_fmt(v.get("max_rel")) if v else ""}</td>'
            f'<td class="num">{_fmt(cos, ".6f")}</td><td>{_e(message)}</td></tr>')


def _latency_table(rows: list[dict], bench_inputs: Mapping) -> list[str]:
    shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in bench_inputs.items())
    out = [f"<h2>Latency</h2><p>Inputs: {_e(shapes)}</p><table><tr><th>Model</th><th>Engine</th><th>p50 (ms)</th>"
           "<th>p90 (ms)</th><th>mean (ms)</th><th>min (ms)</th><th>iterations</th></tr>"]
    for r in rows:
        out.append(f"<tr><td>{_e(r['model'])}</td><td>{_e(r['engine'])}</td><td class=\"num\">{r['p50_ms']:.3f}"
                   f"</td><td class=\"num\">{r['p90_ms']:.3f}</td><td class=\"num\">{r['mean_ms']:.3f}</td>"
                   f"<td class=\"num\">{r['min_ms']:.3f}</td><td class=\"num\">{r['iterations']}</td></tr>")
    out.append("</table>" + latency_svg(rows))
    return out


def _ops_table(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    ops = sorted(set(before) | set(after))
    if not ops:
        return []
    out = ["<h2>Operators before and after</h2><table><tr><th>Op type</th><th>Before</th><th>After</th></tr>"]
    for op in ops:
        a, b = before.get(op, 0), after.get(op, 0)
        style = ' style="background:#fff3cd"' if a != b else ""
        out.append(f"<tr{style}><td>{_e(op)}</td><td class=\"num\">{a}</td><td class=\"num\">{b}</td></tr>")
    out.append("</table>")
    return out


def _check_table(steps: list[Mapping]) -> list[str]:
    check = next((s for s in steps if s["name"] == "check"), None)
    if check is None or not check["details"].get("problems"):
        return []
    out = ["<h2>Check: problems found before legalization</h2><table><tr><th>Kind</th><th>What</th>"
           "<th>Nodes</th><th>Detail</th><th>Fix</th></tr>"]
    for p in check["details"]["problems"]:
        out.append(f"<tr><td>{_e(p['kind'])}</td><td>{_e(p['what'])}</td><td>{_e(', '.join(p['nodes']))}</td>"
                   f"<td>{_e(p['detail'])}</td><td>{_e(p['fix'] or 'none known')}</td></tr>")
    out.append("</table>")
    return out


def _dims_text(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def deploy_html(d: Mapping, graph_svg: str | None = None) -> str:
    """The report page of one deploy, from ``DeployReport.to_dict()``; the verdict line comes first."""
    passed = d["passed"]
    inputs = ", ".join(f"{k}: {_dims_text(v)}" for k, v in d["inputs"].items())
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', '<link rel="icon" href="data:,">',
           f"<title>onnxdeploy deploy report: {_e(d['target'])}</title><style>{CSS}</style></head><body>",
           f"<h1>Deploy report: {_e(d['source'])} &rarr; {_e(d['target'])}</h1>",
           f'<p class="headline {"passed" if passed else "failed"}">{_e(d["headline"])}</p>']
    if d.get("interface_changes"):
        out.append("<ul>" + "".join(f"<li>interface changed: <code>{_e(c)}</code></li>"
                                    for c in d["interface_changes"]) + "</ul>")
    out += ["<table>",
            f"<tr><th>Status</th><td class=\"{'ok' if passed else 'failed'}\">"
            f"{'passed' if passed else 'FAILED at step ' + _e(d['failed_step'])}</td></tr>",
            f"<tr><th>Target</th><td>{_e(d['target'])}</td></tr>",
            f"<tr><th>Final artefact</th><td><code>{_e(d['final_artifact'])}</code></td></tr>",
            f"<tr><th>Declared inputs</th><td>{_e(inputs)}</td></tr>",
            f"<tr><th>Skipped on request</th><td>{_e(', '.join(d.get('skipped') or []) or 'none')}</td></tr>",
            f"<tr><th>Total time</th><td>{d['seconds']:.2f} s</td></tr></table>"]
    out.append("<h2>Steps and verification</h2><table><tr><th>Step</th><th>Status</th><th>Time (s)</th>"
               "<th>Verdict</th><th>Shapes</th><th>Max abs err</th><th>Max rel err</th><th>Min cosine</th>"
               "<th>Message</th></tr>")
    out += [_step_row(s) for s in d["steps"]]
    out.append("</table>")
    out += _check_table(d["steps"])
    if d["latency"]:
        out += _latency_table(d["latency"], d.get("bench_inputs") or {})
    out += _ops_table(d["ops_before"], d["ops_after"])
    out.append("<h2>What changed</h2>")
    out.append("<ul>" + "".join(f"<li><code>{_e(c)}</code></li>" for c in d["changes"]) + "</ul>"
               if d["changes"] else "<p>No operator changes.</p>")
    for s in d["steps"]:
        if s["name"] == "convert" and s["details"].get("command"):
            out.append(f"<h2>Command for the target toolchain</h2><pre>{_e(s['details']['command'])}</pre>")
    if graph_svg:
        out.append(f"<h2>Graph of the final ONNX model</h2><div class=\"box\">{graph_svg}</div>")
    out.append("<p style=\"color:#888;font-size:12px\">Generated by onnxdeploy. Full data: deploy.json.</p>")
    out.append("</body></html>\n")
    return "\n".join(out)
