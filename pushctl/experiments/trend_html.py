"""The trend report as one self-contained HTML page: the score and every margin across runs, as inline SVG.

Drawn here, in Python (no script): one chart of the score per library run, then one small chart per
check's margin with the tolerance's limit as the zero line; an eroding margin is drawn red and
listed first. `<body data-eroding="N" data-series="M">` says what the page shows.

    write_trend_html(trend(runs), Path("trend.html"))
"""

from __future__ import annotations

import html
import time
from pathlib import Path

from pushctl.experiments.score import FORMULA
from pushctl.experiments.trend import LAST_RUNS, Series, Trend

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#1d2430;background:#fafbfc}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:22px 0 6px}
table{border-collapse:collapse;width:100%;margin:4px 0}td,th{border-bottom:1px solid #e6e9ee;padding:4px 6px;
text-align:left;vertical-align:middle;font-size:13px}th{color:#556}.bad{color:#c62828;font-weight:600}
.ok{color:#1f8b4c}.muted{color:#778}svg{background:#fff;border:1px solid #e6e9ee;border-radius:4px}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _path(values: list[float | None], x: list[float], y: object) -> str:
    d, pen = "", False
    for xi, v in zip(x, values, strict=True):
        if v is None:
            pen = False
            continue
        d += ("L" if pen else "M") + f"{xi:.1f},{y(v):.1f}"  # type: ignore[operator]
        pen = True
    return d


def score_svg(t: Trend, width: int = 900, height: int = 220) -> str:
    """The score (0-100) per library run."""
    left, right, top, bottom = 40, 12, 10, 24
    n = max(len(t.points), 1)
    xs = [left + (width - left - right) * (i + 0.5) / n for i in range(len(t.points))]

    def y(v: float) -> float:
        return top + (height - top - bottom) * (100 - v) / 100

    parts = [f'<svg class=score-chart width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for v in (0, 50, 100):
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eef0f3"/>')
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v}</text>')
    values = [p.score.value for p in t.points]
    parts.append(f'<path class=score-line d="{_path(values, xs, y)}" fill="none" stroke="#1565c0" stroke-width="2"/>')
    for xi, p in zip(xs, t.points, strict=True):
        when = time.strftime("%m-%d %H:%M", time.localtime(p.started_at))
        if p.score.value is not None:
            parts.append(
                f'<circle cx="{xi:.1f}" cy="{y(p.score.value):.1f}" r="3" fill="#1565c0">'
                f"<title>{_e(when)}: {p.score.value:.1f}</title></circle>"
            )
        parts.append(f'<text x="{xi:.1f}" y="{height - 8}" font-size="9" text-anchor="middle">{_e(when)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def margin_svg(s: Series, width: int = 260, height: int = 60) -> str:
    """One check's margin per run; the dashed line is its limit (margin 0)."""
    pad = 4
    known = [m for m in s.margins if m is not None]
    lo, hi = min([*known, 0.0]), max([*known, 0.0])
    span = (hi - lo) or 1.0
    n = max(len(s.margins), 1)
    xs = [pad + (width - 2 * pad) * (i + 0.5) / n for i in range(len(s.margins))]

    def y(v: float) -> float:
        return pad + (height - 2 * pad) * (hi - v) / span

    eroding = s.erosion is not None and s.erosion.eroding
    color = "#c62828" if eroding else "#1565c0"
    cls = "margin eroding" if eroding else "margin"
    return (
        f'<svg class="{cls}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f'<line x1="0" x2="{width}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#c62828" stroke-dasharray="3 3"/>'
        f'<path d="{_path(s.margins, xs, y)}" fill="none" stroke="{color}" stroke-width="1.5"/>'
        + "".join(
            f'<circle cx="{xi:.1f}" cy="{y(m):.1f}" r="2" fill="{color}"><title>{m:g}</title></circle>'
            for xi, m in zip(xs, s.margins, strict=True)
            if m is not None
        )
        + "</svg>"
    )


def _series_row(s: Series) -> str:
    e = s.erosion
    eroding = e is not None and e.eroding
    left = "" if e is None or e.runs_left is None else f"~{e.runs_left} runs to the limit"
    last = s.last
    if eroding:
        verdict = f"<span class=bad>ERODING</span> {_e(left)}"
    elif last is not None and last < 0:
        verdict = "<span class=bad>outside the tolerance in the last run</span>"
    else:
        verdict = "<span class=ok>steady</span>"
    return (
        f"<tr><td>{_e(s.experiment)}</td><td>{_e(s.key)}</td><td>{_e(s.tolerance)}</td>"
        f"<td>{'' if last is None else f'{last:g}'}</td><td>{margin_svg(s)}</td>"
        f"<td>{verdict}<div class=muted>{_e(e.why if e else '')}</div></td></tr>"
    )


def trend_html(t: Trend, *, title: str = "pushctl resilience trend") -> str:
    scores = "".join(
        f"<tr><td>{_e(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(p.started_at)))}</td>"
        f"<td>{_e(p.score.text())}</td><td>{p.runs}</td>"
        f"<td>{_e(', '.join(f'{a.title} ({a.outcome}: {a.reason})' for a in p.score.apart))}</td></tr>"
        for p in t.points
    )
    ordered = t.eroding + [s for s in t.series if s not in t.eroding]
    rows = "".join(_series_row(s) for s in ordered)
    se = t.score_erosion
    score_note = f"<p class=bad>the score is falling: {_e(se.why)}</p>" if se.eroding else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title><style>{_CSS}</style></head>
<body data-eroding="{len(t.eroding)}" data-series="{len(t.series)}" data-runs="{len(t.points)}">
<h1>{_e(title)}</h1>
<div class=muted>{len(t.points)} library runs &middot; {len(t.series)} margins &middot; {len(t.eroding)} eroding
&middot; generated {_e(time.strftime("%Y-%m-%d %H:%M:%S"))}</div>
<h2>Resilience score</h2>
<p class=muted>{_e(FORMULA)}</p>
{score_svg(t)}{score_note}
<table><tr><th>run</th><th>score</th><th>experiments</th><th>left out (inconclusive, not judged)</th></tr>
{scores}</table>
<h2>Margins</h2>
<p class=muted>How far each measured value stayed from its tolerance's limit (dashed: the limit). Eroding: a
downward Mann-Kendall trend (p &lt; 0.05) and a negative Theil-Sen slope over the last {LAST_RUNS} runs.</p>
<table><tr><th>experiment</th><th>check</th><th>tolerance</th><th>last margin</th><th>margin per run</th><th></th></tr>
{rows}</table>
</body></html>
"""


def write_trend_html(t: Trend, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(trend_html(t), encoding="utf-8")
