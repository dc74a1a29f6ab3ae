"""`pushctl slo check`: run a probe and hold the delivery SLO against it.

    pushctl slo check --target 99.9 --devices 300 --rate 200 --duration 30s

Exits 0 when the delivery rate (on time / sent) is at least the target and nothing was lost;
otherwise exits 1 (SloBreached) with the numbers and the worst seconds.
"""

from __future__ import annotations

from typing import Annotated

import typer

from pushctl import render
from pushctl.cli.probe import JsonOpt, probe_command, run_probe
from pushctl.cli.state import state
from pushctl.errors import SloBreached
from pushctl.probe import LedgerSummary, ProbeOptions

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


@app.command("check")
@probe_command
def check(ctx: typer.Context, target: TargetOpt = 99.9, *, options: ProbeOptions, json_out: JsonOpt = False) -> None:
    """Run a probe; exit 0 if delivery rate >= --target and nothing was lost, else 1."""
    summary = run_probe(state(ctx).inventory, options, live=not json_out)
    held = slo_held(summary, target)
    if json_out:
        render.print_json({"target": target, "passed": held, "summary": summary.to_json()})
    else:
        render.probe_summary(summary, title="slo check")
        render.slo_verdict(summary, target, held)
    if not held:
        raise SloBreached(breach_message(summary, target))
