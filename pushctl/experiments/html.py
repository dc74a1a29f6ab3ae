"""A self-contained HTML report of experiment runs: no network, no external files.

Per experiment: the verdict, delivery rate and p99 latency per second with the fault windows
shaded (drawn as SVG by a small inline script from the journal's timeline), the steps, the checks,
the stop conditions and the rollbacks. When every chart is drawn the script sets
`<body data-timeline="drawn" data-charts="N">`; a script error sets `data-error` instead.

    write_html([journal_dict, ...], Path("report.html"))
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pushctl.experiments.score import FORMULA, margins_of, score_of

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2430;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:0}h3{font-size:14px;margin:18px 0 6px}
.exp{background:#fff;border:1px solid #d8dee6;border-radius:8px;padding:16px 20px;margin:18px 0}
.verdict{display:inline-block;padding:2px 10px;border-radius:12px;font-weight:600;color:#fff;margin-left:8px}
.pass{background:#1f8b4c}.fail{background:#c62828}.warn{background:#b26a00}
table{border-collapse:collapse;width:100%;margin:4px 0}td,th{border-bottom:1px solid #e6e9ee;padding:4px 6px;
text-align:left;vertical-align:top;font-size:13px}th{color:#556}.ok{color:#1f8b4c}.bad{color:#c62828;font-weight:600}
.muted{color:#778}svg{background:#fff;border:1px solid #e6e9ee;border-radius:4px}.legend span{margin-right:14px}
.sw{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
"""

# Draws each experiment's timeline from its JSON; sets data-timeline="drawn" when all are drawn.
_JS = r"""
(function () {
  "use strict";
  window.addEventListener("error", function (e) { document.body.setAttribute("data-error", String(e.message)); });
  var NS = "http://www.w3.org/2000/svg";
  function el(name, attrs, parent) {
    var node = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function line(points, x, y) {
    var d = "", pen = false;
    points.forEach(function (p) {
      if (p[1] === null || p[1] === undefined) { pen = false; return; }
      d += (pen ? "L" : "M") + x(p[0]).toFixed(1) + "," + y(p[1]).toFixed(1);
      pen = true;
    });
    return d;
  }
  function chart(holder, run) {
    var tl = run.timeline || {}, rows = tl.per_second || [], t0 = tl.t0;
    var W = 900, H = 300, L = 48, R = 56, T = 12, B = 30, mid = T + (H - T - B) * 0.55;
    var svg = el("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img"}, holder);
    var n = Math.max(rows.length, 1), x = function (t) { return L + (W - L - R) * t / n; };
    var series = (run.cohorts || {}).series || {};
    var rates = rows.concat.apply(rows, Object.keys(series).map(function (k) { return series[k]; }))
      .map(function (r) { return r.delivery_rate; }).filter(function (v) { return v !== null; });
    var lo = Math.min(90, Math.floor(Math.min.apply(null, [100].concat(rates)) / 10) * 10);
    var rateY = function (v) { return T + (mid - T - 8) * (100 - Math.max(v, lo)) / (100 - lo); };
    var maxLat = Math.max.apply(null, [1].concat(rows.map(function (r) { return r.p99_ms || 0; })));
    var latY = function (v) { return H - B - (H - B - mid) * v / maxLat; };
    (run.windows || []).forEach(function (w) {
      if (t0 === null || t0 === undefined) { return; }
      var a = Math.max(0, w.start - t0), b = Math.min(n, (w.end || (t0 + n)) - t0);
      if (b <= a) { return; }
      var r = el("rect", {x: x(a), y: T, width: Math.max(1, x(b) - x(a)), height: H - T - B,
                          fill: "#f4a261", "fill-opacity": 0.22, "class": "fault-window"}, svg);
      el("title", {}, r).textContent = w.label;
      el("text", {x: x(a) + 3, y: T + 11, "font-size": 10, fill: "#a0522d"}, svg).textContent = w.label;
    });
    (run.stop_conditions || []).forEach(function (s) {
      if (!s.fired || t0 === null || t0 === undefined) { return; }
      var at = s.fired_at - t0;
      el("line", {x1: x(at), x2: x(at), y1: T, y2: H - B, stroke: "#c62828", "stroke-dasharray": "4 3"}, svg);
    });
    [100, (100 + lo) / 2, lo].forEach(function (v) {
      el("line", {x1: L, x2: W - R, y1: rateY(v), y2: rateY(v), stroke: "#eef0f3"}, svg);
      el("text", {x: L - 6, y: rateY(v) + 4, "font-size": 10, "text-anchor": "end"}, svg).textContent = v + "%";
    });
    el("text", {x: W - R + 6, y: mid + 12, "font-size": 10}, svg).textContent = Math.round(maxLat) + " ms";
    el("text", {x: W - R + 6, y: H - B, "font-size": 10}, svg).textContent = "0 ms";
    el("line", {x1: L, x2: W - R, y1: mid, y2: mid, stroke: "#ccd"}, svg);
    var step = Math.max(1, Math.ceil(n / 15));
    for (var t = 0; t <= n; t += step) {
      el("text", {x: x(t), y: H - B + 14, "font-size": 10, "text-anchor": "middle"}, svg).textContent = t + "s";
    }
    var rate = rows.map(function (r) { return [r.t + 0.5, r.delivery_rate]; });
    var p99 = rows.map(function (r) { return [r.t + 0.5, r.p99_ms]; });
    el("path", {d: line(rate, x, rateY), fill: "none", stroke: "#1565c0", "stroke-width": 2,
                "class": "rate-line"}, svg);
    el("path", {d: line(p99, x, latY), fill: "none", stroke: "#6a1b9a", "stroke-width": 1.5,
                "class": "latency-line"}, svg);
    var colors = {control: "#2e7d32", experiment: "#ef6c00"};
    Object.keys(series).forEach(function (name) {
      var pts = series[name].map(function (r) { return [r.t + 0.5, r.delivery_rate]; });
      el("path", {d: line(pts, x, rateY), fill: "none", stroke: colors[name] || "#555", "stroke-width": 1.5,
                  "stroke-dasharray": name === "control" ? "" : "5 3", "class": "cohort-line cohort-" + name}, svg);
    });
    rows.forEach(function (r) {
      if (r.lost > 0) {
        el("circle", {cx: x(r.t + 0.5), cy: rateY(r.delivery_rate || 0), r: 3, fill: "#c62828"}, svg);
      }
    });
    return svg;
  }
  function draw() {
    var runs = JSON.parse(document.getElementById("runs").textContent);
    var drawn = 0;
    runs.forEach(function (run, i) {
      var holder = document.getElementById("timeline-" + i);
      if (holder) { chart(holder, run); drawn += 1; }
    });
    document.body.setAttribute("data-charts", String(drawn));
    document.body.setAttribute("data-timeline", "drawn");
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _fmt_t(at: Any, t0: Any) -> str:
    if not isinstance(at, int | float) or not isinstance(t0, int | float):
        return ""
    return f"{at - t0:+.1f}s"


def _verdict(run: dict[str, Any]) -> tuple[str, str]:
    status, code = run.get("status"), run.get("exit_code")
    if code == 0:
        return "PASSED", "pass"
    if run.get("verdict") == "inconclusive":
        return "INCONCLUSIVE: " + "; ".join(run.get("inconclusive") or ["the rig could not keep up"]), "warn"
    if status == "interrupted":
        return "INTERRUPTED", "warn"
    if status == "aborted":
        return "ABORTED (stop condition)", "fail"
    if run.get("deviated"):
        return "DEVIATED", "fail"
    return f"FAILED ({status}, exit {code})", "fail"


def _checks_table(run: dict[str, Any]) -> str:
    rows = []
    for key, label in (("before", "before"), ("during", "during"), ("after", "after")):
        state = (run.get("steady_states") or {}).get(key)
        for c in (state or {}).get("checks", []):
            cls = "ok" if c["ok"] else "bad"
            rows.append(
                f"<tr><td>{label}</td><td>{_e(c['title'])}</td><td class={cls}>{'ok' if c['ok'] else 'FAILED'}"
                f"</td><td>{_e(c['detail'])}</td></tr>"
            )
    if not rows:
        return "<p class=muted>no hypothesis check ran</p>"
    return "<table><tr><th>when</th><th>check</th><th></th><th>measured</th></tr>" + "".join(rows) + "</table>"


def _steps_table(run: dict[str, Any], t0: Any) -> str:
    rows = []
    for s in run.get("method") or []:
        status = s.get("status")
        cls = "ok" if status == "ok" else ("bad" if status in ("failed", "deviated") else "muted")
        out = s.get("output") or {}
        detail = (
            out.get("detail")
            if isinstance(out, dict) and "detail" in out
            else (", ".join(f"{k}={v}" for k, v in out.items()) if isinstance(out, dict) else out)
        )
        if s.get("error"):
            detail = f"{s['error']}; {detail}" if detail else s["error"]
        bg = " (background)" if s.get("background") else ""
        dur = ""
        if s.get("started_at") and s.get("ended_at"):
            dur = f"{s['ended_at'] - s['started_at']:.1f}s"
        rows.append(
            f"<tr><td>{s.get('index', 0) + 1}</td><td>{_e(s.get('label'))}{bg}</td>"
            f"<td>{_fmt_t(s.get('started_at'), t0)}</td><td>{dur}</td><td class={cls}>{_e(status)}</td>"
            f"<td>{_e(detail)}</td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>step</th><th>at</th><th>took</th><th>status</th><th>output</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _stops_table(run: dict[str, Any]) -> str:
    stops = run.get("stop_conditions") or []
    if not stops:
        return "<p class=muted>none evaluated</p>"
    rows = [
        f"<tr><td>{_e(s['name'])}</td><td>{_e(s['tolerance'])}, for {s['for_s']:g}s</td>"
        f"<td class={'bad' if s['fired'] else 'ok'}>{'FIRED' if s['fired'] else 'held'}</td>"
        f"<td>{_e(s.get('detail'))}</td></tr>"
        for s in stops
    ]
    return (
        "<table><tr><th>condition</th><th>tolerance</th><th></th><th>last measured</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _rollback_table(run: dict[str, Any]) -> str:
    rbs = run.get("rollbacks") or []
    if not rbs:
        return "<p class=muted>nothing left to undo</p>"
    rows = [
        f"<tr><td>{_e(r['step'])}</td><td>{_e(r.get('of'))}</td><td class={'ok' if r['ok'] else 'bad'}>"
        f"{'ok' if r['ok'] else 'FAILED'}</td><td>{_e(r.get('detail'))}</td></tr>"
        for r in rbs
    ]
    return "<table><tr><th>undo</th><th>of</th><th></th><th>detail</th></tr>" + "".join(rows) + "</table>"


def _cohorts_block(run: dict[str, Any]) -> str:
    """Control vs experiment: a row per cohort, the difference, the verdict and the cohort checks."""
    c = run.get("cohorts")
    if not isinstance(c, dict):
        return ""

    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}%"

    def ci(pair: Any, unit: str = "") -> str:
        return "n/a" if not pair else f"[{pair[0]:+.2f}, {pair[1]:+.2f}]{unit}"

    def ms(v: Any) -> str:
        return "n/a" if v is None else f"{v:.1f} ms"

    rows = [
        f"<tr class=cohort-row><td>{_e(line['name'])}</td><td>{_e(line['devices'])}</td><td>{_e(line['sent'])}</td>"
        f"<td>{pct(line['delivery_rate'])}</td><td>{pct(line['late_share'])}</td><td>{_e(line['lost'])}</td>"
        f"<td>{ms(line['p99_ms'])}</td></tr>"
        for line in (c.get("control") or {}, c.get("experiment") or {})
        if line
    ]
    d = c.get("difference") or {}
    rows.append(
        f"<tr><td>experiment - control</td><td></td><td></td><td>{d.get('delivery_points', 0):+.2f} points "
        f"{ci(d.get('delivery_ci'))}</td><td>{d.get('late_points', 0):+.2f} points {ci(d.get('late_ci'))}</td>"
        f"<td></td><td>{ms(d.get('p99_ms'))} {ci(d.get('p99_ci_ms'), ' ms')}</td></tr>"
    )
    checks = ((run.get("steady_states") or {}).get("cohorts") or {}).get("checks", [])
    verdicts = "".join(
        f"<li class={'ok' if k['ok'] else 'bad'}>{'ok' if k['ok'] else 'FAILED'}: {_e(k['title'])}</li>" for k in checks
    )
    return (
        "<h3>Cohorts (control vs experiment)</h3><div class=legend>"
        '<span><i class=sw style="background:#2e7d32"></i>control cohort delivery</span>'
        '<span><i class=sw style="background:#ef6c00"></i>experiment cohort delivery</span></div>'
        "<table><tr><th>cohort</th><th>devices</th><th>sent</th><th>delivery</th><th>late</th><th>lost</th>"
        "<th>p99</th></tr>" + "".join(rows) + f"</table><p class=cohort-verdict><b>{_e(c.get('verdict'))}</b></p>"
        f"<ul>{verdicts}</ul>"
    )


def _section(i: int, run: dict[str, Any]) -> str:
    word, cls = _verdict(run)
    t0 = (run.get("timeline") or {}).get("t0")
    summary = run.get("summary") or {}
    rate = summary.get("delivery_rate")
    totals = (
        (
            f"sent {summary.get('sent')}, on time {summary.get('on_time')}, late {summary.get('late')}, "
            f"lost {summary.get('lost')}, delivery {rate:.3f}%"
        )
        if rate is not None
        else "no probe summary"
    )
    error = f"<p class=bad>{_e(run.get('error'))}</p>" if run.get("error") else ""
    return f"""
<section class=exp id="exp-{i}">
  <h2>{_e(run.get("title"))}<span class="verdict {cls}">{word}</span></h2>
  <div class=muted>{_e(run.get("file"))} &middot; status {_e(run.get("status"))} &middot; deviated
  {_e(run.get("deviated"))} &middot; exit {_e(run.get("exit_code"))} &middot; {float(run.get("duration_s") or 0):.1f}s
  &middot; journal {_e(run.get("journal_path"))}</div>
  {error}
  <h3>Delivery over time</h3>
  <div class=legend><span><i class=sw style="background:#1565c0"></i>delivery rate (on time, per second)</span>
  <span><i class=sw style="background:#6a1b9a"></i>p99 latency</span>
  <span><i class=sw style="background:#f4a261;opacity:.5"></i>fault / step window</span>
  <span><i class=sw style="background:#c62828"></i>loss, stop condition</span></div>
  <div id="timeline-{i}" class=timeline></div>
  <p class=muted>{_e(totals)}</p>
  {_cohorts_block(run)}
  <h3>Hypothesis</h3>{_checks_table(run)}
  <h3>Margins</h3>{_margins_table(run)}
  <h3>Method</h3>{_steps_table(run, t0)}
  {_ledgers_section(run)}
  <h3>Stop conditions</h3>{_stops_table(run)}
  <h3>Rollbacks</h3>{_rollback_table(run)}
</section>"""


def _ledgers_section(run: dict[str, Any]) -> str:
    """A connection fault's delivery ledgers: the devices it cut off beside those it spared (step output `cohorts`)."""
    rows = []
    for step in run.get("method") or []:
        out = step.get("output")
        ledgers = out.get("cohorts") if isinstance(out, dict) else None
        if not isinstance(ledgers, dict):
            continue
        for name, c in ledgers.items():
            if not isinstance(c, dict):
                continue
            sent, on_time = c.get("sent") or 0, c.get("on_time") or 0
            rate = c.get("delivery_rate")
            if rate is None and sent:
                rate = 100.0 * on_time / sent
            bad = bool(c.get("lost")) or bool(c.get("duplicates"))
            rows.append(
                f"<tr class=ledger data-cohort={_e(name)}><td>{step.get('index', 0) + 1}. {_e(step.get('label'))}</td>"
                f"<td>{_e(name)}</td><td>{_e(c.get('devices'))}</td><td>{_e(sent)}</td><td>{_e(on_time)}</td>"
                f"<td>{_e(c.get('late'))}</td><td class={'bad' if bad else 'ok'}>{_e(c.get('lost'))}</td>"
                f"<td>{_e(c.get('duplicates'))}</td><td>{'' if rate is None else f'{rate:.3f}%'}</td></tr>"
            )
    if not rows:
        return ""
    return (
        "<h3>Affected and unaffected devices</h3><p class=muted>messages sent from the fault until every affected "
        "device was back and settled</p><table class=ledgers><tr><th>step</th><th>devices</th><th>count</th>"
        "<th>sent</th><th>on time</th><th>late</th><th>lost</th><th>dup</th><th>delivery</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _score_section(runs: Sequence[dict[str, Any]]) -> str:
    """The resilience score, each experiment's weight and outcome; inconclusive and not-judged runs apart."""
    score = score_of(list(runs))
    counted = [e for e in score.entries if e.outcome in ("passed", "failed")]
    rows = "".join(
        f"<tr><td>{_e(e.title)}</td><td>{e.weight:g}</td>"
        f"<td class={'ok' if e.outcome == 'passed' else 'bad'}>{_e(e.outcome)}</td></tr>"
        for e in counted
    )
    apart = "".join(
        f"<tr><td>{_e(e.title)}</td><td>{e.weight:g}</td><td class=muted>{_e(e.outcome)}: {_e(e.reason)}</td></tr>"
        for e in score.apart
    )
    apart_html = (
        f"<h3>Left out of the score</h3><table><tr><th>experiment</th><th>weight</th><th>why</th></tr>{apart}</table>"
        if apart
        else ""
    )
    return f"""
<section class=exp id=score data-score="{"" if score.value is None else f"{score.value:.1f}"}">
  <h2>Resilience score: {_e(score.text())}</h2>
  <div class=muted>{_e(FORMULA)}; weight passed {score.passed_weight:g} of {score.counted_weight:g}</div>
  <table><tr><th>experiment</th><th>weight</th><th>counts as</th></tr>{rows}</table>
  {apart_html}
</section>"""


def _margins_table(run: dict[str, Any]) -> str:
    """Each numeric check's margin: how far its measured value stayed from the tolerance's limit."""
    rows = []
    for m in margins_of(run):
        if m["margin"] is None:
            continue
        cls = "ok" if m["margin"] >= 0 else "bad"
        frac = "" if m["fraction"] is None else f"{100 * m['fraction']:.1f}%"
        rows.append(
            f"<tr><td>{_e(m['phase'])}</td><td>{_e(m['title'])}</td><td>{_e(m['tolerance'])}</td>"
            f"<td>{_e(m['value'])}</td><td class={cls}>{m['margin']:+g}</td><td>{frac}</td></tr>"
        )
    if not rows:
        return "<p class=muted>no numeric check ran</p>"
    return (
        "<table class=margins><tr><th>when</th><th>check</th><th>tolerance</th><th>measured</th><th>margin</th>"
        "<th>of the limit</th></tr>" + "".join(rows) + "</table>"
    )


def report_html(runs: Sequence[dict[str, Any]], *, title: str = "pushctl experiments") -> str:
    keep = ("title", "timeline", "windows", "stop_conditions", "cohorts")
    data = json.dumps([{k: r.get(k) for k in keep} for r in runs], default=str).replace("<", "\\u003c")
    passed = sum(1 for r in runs if r.get("exit_code") == 0)
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    sections = "".join(_section(i, r) for i, r in enumerate(runs))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>
<body data-timeline="pending">
<h1>{_e(title)}</h1>
<div class=muted>{passed} of {len(runs)} passed &middot; generated {when}</div>
{_score_section(runs)}
{sections}
<script type="application/json" id="runs">{data}</script>
<script>{_JS}</script>
</body></html>
"""


def write_html(runs: Sequence[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_html(runs), encoding="utf-8")
