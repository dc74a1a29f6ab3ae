"""`pushctl slo check`: hold the delivery SLO against a probe run, or against the platform's own metrics.

    pushctl slo check --target 99.9 --devices 300 --rate 200 --duration 30s
    pushctl slo check --target 99.9 --prometheus http://127.0.0.1:17090 --window 5m

With a probe: exits 0 when the delivery rate (on time / sent) is at least the target and nothing
was lost; otherwise exits 1 (SloBreached) with the numbers and the worst seconds. With
`--prometheus`: no devices; the delivery SLI (or `--query`) is read from Prometheus, exit 0 when
every series is at least the target, 1 when one is below, 8 when there is no data to judge, 4 when
Prometheus does not answer, 2 for a bad URL or query.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from pushctl import render
from pushctl.cli.options import PrometheusOpt
from pushctl.cli.probe import JsonOpt, probe_command, run_probe
from pushctl.cli.state import state
from pushctl.errors import Inconclusive, SloBreached, UsageError
from pushctl.probe import LedgerSummary, ProbeOptions
from pushctl.promql import DELIVERY_SLI, Sample, check_url, instant_query, numbers, prometheus_url

app = typer.Typer(help="Check the delivery SLO with a probe run.", no_args_is_help=True)

TargetOpt = Annotated[
    float,
    typer.Option("--target", min=0.0, max=100.0, help="Minimum delivery rate in percent (on time / sent)."),
]


def slo_held(summary: LedgerSummary, target: float) -> bool:
    """The SLO: something was sent, the delivery rate reached the target, and nothing was lost."""
    rate = summary.delivery_rate
    return rate is not None and rate >= target and summary.lost == 0


def breach_message(summary: LedgerSummary, target: float) -> str:
    rate = "n/a (nothing sent)" if summary.delivery_rate is None else f"{summary.delivery_rate:.3f}%"
    worst = ", ".join(f"t={s.t}s {s.on_time}/{s.sent} on time ({s.lost} lost)" for s in summary.worst_seconds[:3])
    return (
        f"SLO breached: delivery rate {rate} (target {target:g}%), "
        f"{summary.lost} lost, {summary.late} late of {summary.sent} sent"
        + (f"; worst seconds: {worst}" if worst else "")
    )


PromOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus",
        metavar="URL",
        help="Judge the SLO from this Prometheus (the platform's own metrics): no probe runs.",
    ),
]
QueryOpt = Annotated[
    str | None,
    typer.Option("--query", help="With --prometheus: the SLI as PromQL, a ratio 0..1 (default: acked / accepted)."),
]
WindowOpt = Annotated[
    str, typer.Option("--window", help="With --prometheus: the window of the default SLI (a PromQL duration).")
]


@app.command("check")
@probe_command
def check(
    ctx: typer.Context,
    target: TargetOpt = 99.9,
    *,
    options: ProbeOptions,
    prometheus: PromOpt = None,
    query: QueryOpt = None,
    window: WindowOpt = "5m",
    json_out: JsonOpt = False,
) -> None:
    """Run a probe (or read --prometheus); exit 0 if delivery rate >= --target and nothing was lost, else 1."""
    if prometheus is not None:
        _check_prometheus(prometheus, query, window, target, json_out=json_out)
        return
    if query is not None:
        raise UsageError("--query needs --prometheus URL")
    summary = run_probe(state(ctx).inventory, options, live=not json_out)
    held = slo_held(summary, target)
    if json_out:
        render.print_json({"target": target, "passed": held, "summary": summary.to_json()})
    else:
        render.probe_summary(summary, title="slo check")
        render.slo_verdict(summary, target, held)
    if not held:
        raise SloBreached(breach_message(summary, target))


@app.command("query")
def query_command(
    ctx: typer.Context,
    promql: Annotated[str, typer.Argument(metavar="PROMQL", help="An instant-vector or scalar expression.")],
    prometheus: PrometheusOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Evaluate PROMQL now on the stack's Prometheus (or --prometheus URL); read-only, for runbook checks.

    `value` in --json is the single series' value (null for none or several): a runbook expects on it,
    e.g. `# expect: value <= 100 within 30s`.
    """
    url = prometheus_url(state(ctx).inventory, prometheus)
    values = numbers(asyncio.run(instant_query(url, promql)))
    if json_out:
        render.print_json(
            {
                "prometheus": url,
                "query": promql,
                "value": values[0].value if len(values) == 1 else None,
                "series": [{"labels": s.labels, "value": s.value} for s in values],
            }
        )
    else:
        shown = {f"series {i + 1}": s.describe() for i, s in enumerate(values[:20])} or {"result": "no data"}
        render.kv("promql", {"prometheus": url, "query": promql, **shown})


def _check_prometheus(url: str, query: str | None, window: str, target: float, *, json_out: bool) -> None:
    """The SLO from the platform's own metrics: every series of the SLI at least `target` percent."""
    check_url(url)
    if query is None:
        if not window or not window[:-1].isdigit() or window[-1] not in "smhd":
            raise UsageError(f"--window {window!r}: a PromQL duration like 30s, 5m or 1h")
        query = DELIVERY_SLI.format(window=window)
    samples = asyncio.run(instant_query(url, query))
    values = numbers(samples)
    low = [s for s in values if s.value * 100 < target]
    held = bool(values) and not low
    if json_out:
        render.print_json(
            {
                "target": target,
                "prometheus": url,
                "query": query,
                "passed": held,
                "series": [{"labels": s.labels, "percent": s.value * 100} for s in values],
            }
        )
    else:
        render.kv("slo check (prometheus)", {"prometheus": url, "query": query, **_shown(values)})
    if not values:
        why = "NaN: no traffic in the window" if samples else "no data: no such series"
        raise Inconclusive(f"no verdict: {query} gave {why}", hint="send traffic, widen --window, or fix --query")
    if low:
        worst = min(low, key=lambda s: s.value)
        raise SloBreached(
            f"SLO breached: {_percent(worst)} (target {target:g}%) from Prometheus; {len(low)} of {len(values)} series"
        )
    render.info(f"SLO held: {_percent(min(values, key=lambda s: s.value))} >= {target:g}% ({len(values)} series)")


def _percent(sample: Sample) -> str:
    return f"{sample.where()}{sample.value * 100:.3f}%"


def _shown(values: list[Sample]) -> dict[str, str]:
    return {f"series {i + 1}": _percent(s) for i, s in enumerate(values[:8])} or {"result": "no data"}
