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


def _generation_section(g: Mapping | None) -> list[str]:
    """A decoder's greedy generation per model: tokens/s, time to first token, parity; token agreement per step."""
    if not g or not g.get("rows"):
        return []
    ref = "PyTorch" if g["reference_kind"] == "pytorch" else "the reference ONNX model"
    rows = g["rows"]
    out = [f"<h2>Generation</h2><p>Greedy, {g['new_tokens']} new tokens after a {len(g['prompt_ids'])}-token prompt "
           f"({_e(', '.join(map(str, g['prompt_ids'])))}), batch 1, {g['threads']} onnxruntime thread; parity against "
           f"{_e(ref)}.</p><table><tr><th>Model</th><th>Weights</th><th>Decode tokens/s</th><th>vs fp32</th>"
           "<th>Time to first token (ms)</th><th>Tokens identical</th><th>Steps agreeing (teacher-forced)</th>"
           "<th>Logits max abs err</th><th>Min cosine</th></tr>"]
    for r in rows:
        same = "yes" if r["identical"] else f"no (from step {r['first_divergence']})"
        agree = "" if r["token_agreement"] is None else f"{100 * r['token_agreement']:.0f}%"
        css = "ok" if r["identical"] else "failed"
        out.append(f"<tr><td>{_e(r['model'])}</td><td>{_e(r['weights'])}</td>"
                   f"<td class='num'>{r['decode_tokens_per_s']:.1f}</td>"
                   f"<td class='num'>{_fmt(r.get('speedup'), '.2f')}</td><td class='num'>{r['ttft_ms']:.1f}</td>"
                   f"<td class='{css}'>{same}</td><td class='num'>{agree}</td>"
                   f"<td class='num'>{_fmt(r['max_abs'])}</td><td class='num'>{_fmt(r['min_cosine'], '.6f')}</td>"
                   "</tr>")
    out.append("</table><h3>Token agreement per step</h3><p>Each model's token (teacher-forced after a first "
               "difference: fed the reference's tokens) and its logits cosine to the reference's.</p>"
               "<table><tr><th>Step</th><th>" + _e(ref) + "</th>"
               + "".join(f"<th>{_e(r['model'])}</th>" for r in rows) + "</tr>")
    for i, token in enumerate(g["reference_tokens"]):
        cells = []
        for r in rows:
            s = r["steps"][i] if i < len(r["steps"]) else {}
            style = "" if s.get("agrees") else ' style="background:#fdecee"'
            cells.append(f"<td{style}>{_e(s.get('forced_token'))} ({_fmt(s.get('cosine'), '.4f')})</td>")
        out.append(f"<tr><td class='num'>{i}</td><td>{token}</td>{''.join(cells)}</tr>")
    out.append("</table>")
    return out


def _dims_text(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def _nines(cosine: float | None) -> float:
    """-log10(1 - cosine): 3 for 0.999, 6 for 0.999999 (capped at 7): the accuracy axis of the Pareto chart."""
    import math

    if cosine is None:
        return 0.0
    return min(7.0, -math.log10(max(1e-7, 1.0 - cosine)))


def pareto_svg(choice: Mapping, *, width: int = 640, height: int = 360) -> str:
    """Latency (x, log scale) against accuracy (y: nines of cosine to onnxruntime fp32) of every measured candidate of
    ``PrecisionChoice.to_dict()``: the Pareto front (faster and more accurate than every other) joined by a line, the
    budget as a dashed line, the winner ringed. Inline SVG, no script."""
    import math

    pts = [c for c in choice.get("candidates", []) if c.get("p50_ms") and c.get("cosine") is not None]
    if not pts:
        return ""
    left, right, top, bottom = 60, 150, 20, 44
    xs = [math.log10(c["p50_ms"]) for c in pts]
    lo, hi = min(xs), max(xs)
    lo, hi = (lo - 0.1, hi + 0.1) if hi - lo < 0.2 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    budget = _nines(choice.get("budget", {}).get("min_cosine"))
    y_hi = max(7.0, *(_nines(c["cosine"]) for c in pts))

    def x(c):
        return left + (width - left - right) * (math.log10(c["p50_ms"]) - lo) / (hi - lo)

    def y(n):
        return top + (height - top - bottom) * (1 - n / y_hi)

    front = []
    for c in sorted(pts, key=lambda c: c["p50_ms"]):  # faster first: on the front when more accurate than all before
        if not front or _nines(c["cosine"]) > _nines(front[-1]["cosine"]):
            front.append(c)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="11" '
             'font-family="Helvetica, Arial, sans-serif" role="img" aria-label="Pareto chart of the candidates">',
             f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
             'fill="none" stroke="#bbb"/>',
             f'<line x1="{left}" x2="{width - right}" y1="{y(budget):.1f}" y2="{y(budget):.1f}" stroke="#b02a37" '
             f'stroke-dasharray="5,4"/><text x="{width - right + 4}" y="{y(budget) + 4:.1f}" fill="#b02a37">budget '
             f'{_e(choice.get("budget", {}).get("text", ""))}</text>']
    parts.append('<polyline fill="none" stroke="#4c78a8" stroke-width="1.5" points="'
                 + " ".join(f"{x(c):.1f},{y(_nines(c['cosine'])):.1f}" for c in front) + '"/>')
    for c in pts:
        cx, cy = x(c), y(_nines(c["cosine"]))
        color = "#146c2e" if c["status"] == "ok" else "#b02a37"
        if c["label"] == choice.get("winner"):
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="9" fill="none" stroke="#f58518" stroke-width="2.5"/>')
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4.5" fill="{color}"><title>{_e(c["label"])}: '
                     f'{c["p50_ms"]:.3f} ms, cosine {c["cosine"]:.6f}</title></circle>')
        parts.append(f'<text x="{cx + 7:.1f}" y="{cy - 6:.1f}">{_e(c["label"])}</text>')
    for n in range(0, int(y_hi) + 1):
        parts.append(f'<text x="{left - 6}" y="{y(n) + 4:.1f}" text-anchor="end" fill="#666">'
                     f'{1 - 10 ** -n:.{max(n, 1)}f}</text>' if n else
                     f'<text x="{left - 6}" y="{y(n) + 4:.1f}" text-anchor="end" fill="#666">0</text>')
    for e in range(math.floor(lo), math.ceil(hi) + 1):
        for m in (1, 2, 5):
            v = math.log10(m) + e
            if lo <= v <= hi:
                px = left + (width - left - right) * (v - lo) / (hi - lo)
                parts.append(f'<text x="{px:.1f}" y="{height - bottom + 14}" text-anchor="middle" fill="#666">'
                             f'{m * 10.0 ** e:g}</text>')
    parts.append(f'<text x="{left}" y="{height - 8}" fill="#444">p50 latency, ms (log scale; left is faster) - '
                 'up is closer to onnxruntime fp32 (cosine); green within the budget, red outside; ringed: chosen'
                 '</text></svg>')
    return "".join(parts)


def _precision_section(steps: list[Mapping]) -> list[str]:
    choice = next((s["details"]["precision_choice"] for s in steps
                   if (s.get("details") or {}).get("precision_choice")), None)
    if not choice:
        return []
    out = [f"<h2>Precision: the fastest artefact within the budget</h2><p><b>Why:</b> {_e(choice['why'])}</p>",
           f"<p>Budget: {_e(choice['budget']['text'])}; held out: {_e(choice['held_out_source'])}; calibration: "
           f"{_e(choice['calibration_source'])}; {choice.get('threads') or 'default'} thread(s), timed interleaved "
           f"with onnxruntime fp32 (p50 {_fmt(choice.get('baseline_ms'), '.3f')} ms).</p>",
           "<table><tr><th>Candidate</th><th>Status</th><th>p50 (ms)</th><th>vs onnxruntime fp32</th><th>Cosine</th>"
           "<th>Top-1 agreement</th><th>Size (MB)</th><th>Of peak</th><th>Note</th></tr>"]
    base = choice.get("baseline_ms")
    for c in choice["candidates"]:
        chosen = c["label"] == choice.get("winner")
        ratio = c["p50_ms"] / base if c.get("p50_ms") and base else None
        peak = c.get("fraction_of_peak")
        style = ' style="background:#fff3cd"' if chosen else ""
        out.append(f'<tr{style}><td>{_e(c["label"])}</td>'
                   f'<td class="{"ok" if c["status"] == "ok" else "failed" if c["status"] != "skipped" else "skipped"}">'
                   f'{_e(c["status"])}</td><td class="num">{_fmt(c.get("p50_ms"), ".3f")}</td>'
                   f'<td class="num">{_fmt(ratio, ".2f")}{"x" if ratio else ""}</td>'
                   f'<td class="num">{_fmt(c.get("cosine"), ".6f")}</td>'
                   f'<td class="num">{_fmt(c["top1"] and 100 * c["top1"], ".1f")}{"%" if c.get("top1") else ""}</td>'
                   f'<td class="num">{_fmt(c["size_bytes"] / 1e6 if c.get("size_bytes") else None, ".2f")}</td>'
                   f'<td class="num">{_fmt(peak and 100 * peak, ".1f")}{"%" if peak else ""}</td>'
                   f'<td>{"chosen" if chosen else _e(c.get("reason"))}</td></tr>')
    out.append("</table>" + pareto_svg(choice))
    return out


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
    out += _precision_section(d["steps"])
    out += _generation_section(d.get("generation"))
    if d["latency"]:
        out += _latency_table(d["latency"], d.get("bench_inputs") or {})
        versus = next((s.get("details", {}).get("vs_onnxruntime") for s in d["steps"] if s["name"] == "benchmark"),
                      None)
        if versus:
            out.append(f'<p class="{"failed" if versus["slower"] else "passed"}"><b>{_e(versus["engine"])} vs '
                       f'onnxruntime, same inputs:</b> {_e(versus["statement"])}</p>')
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
