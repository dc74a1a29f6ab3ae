"""Failover commands: drain, restore, recover, status (more actions register here too).

Exit codes: 0 the SLO held, 1 SLO breached (numbers shown), 2 bad input, 4 target unreachable,
5 platform unhealthy, 6 another action holds the lock (or `recover` is needed), 7 rollback failed,
130 interrupted (after rolling back).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer

from pushctl import render
from pushctl.actions.base import Action
from pushctl.actions.drain import Drain, Restore
from pushctl.actions.recover import recover as recover_entries
from pushctl.actions.runner import RunOptions, execute, raise_for_verdict
from pushctl.actions.status import live_status
from pushctl.cli.state import state
from pushctl.probe.duration import parse_duration
from pushctl.probe.probe import ProbeOptions

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")]
NoProbeOpt = Annotated[bool, typer.Option("--no-probe", help="Do not run synthetic devices while acting.")]
SloOpt = Annotated[float, typer.Option("--slo", min=0, max=100, help="Delivery-rate SLO in percent.")]
DeadlineOpt = Annotated[str, typer.Option("--deadline", help="A delivery is on time within this.")]
HoldOpt = Annotated[
    bool, typer.Option("--hold", help="Keep the change applied (a real incident), no rollback.")
]
DevicesOpt = Annotated[int, typer.Option("--devices", min=1, help="Probe devices.")]
RateOpt = Annotated[float, typer.Option("--rate", min=0, help="Probe single pushes per second.")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", envvar="PUSHCTL_RUNTIME", help="process or docker.")]


def probe_options(devices: int, rate: float, deadline: str, *, duration: float | None = None) -> ProbeOptions:
    return ProbeOptions(
        devices=devices,
        rate=rate,
        duration=duration,
        deadline=parse_duration(deadline, what="--deadline"),
        grace=5.0,
    )


def run_action(
    ctx: typer.Context,
    action: Action,
    *,
    dry_run: bool,
    no_probe: bool,
    slo: float,
    deadline: str,
    hold: bool,
    devices: int,
    rate: float,
    json_out: bool,
    runtime: str = "process",
) -> None:
    """The shared shape of every action command: plan or execute, report, exit by verdict."""
    inv = state(ctx).inventory
    plan = action.plan()
    if dry_run:
        if json_out:
            render.print_json(
                {"action": action.name, "params": action.params(), "plan": [s.__dict__ for s in plan]}
            )
        else:
            render.plan(action.title(), plan, drill=action.drill)
        return
    opts = RunOptions(
        slo=slo,
        probe=None if no_probe else probe_options(devices, rate, deadline),
        hold=hold or not action.drill,
        runtime=runtime,
    )
    report = asyncio.run(execute(inv, action, opts, log=render.info))
    if json_out:
        render.print_json(report.to_json())
    else:
        render.action_report(report)
    raise_for_verdict(report)


def register(app: typer.Typer) -> None:
    """Add the action commands to the root app."""

    @app.command(rich_help_panel="Failover")
    def drain(
        ctx: typer.Context,
        region: Annotated[str, typer.Option("--region", help="Region to drain.")],
        spread: Annotated[
            str, typer.Option("--spread", help="Spread reconnect orders over this window.")
        ] = "5s",
        timeout: Annotated[
            str | None, typer.Option("--timeout", help="Give up waiting for 0 devices after this.")
        ] = None,
        dry_run: DryRunOpt = False,
        no_probe: NoProbeOpt = False,
        slo: SloOpt = 99.9,
        deadline: DeadlineOpt = "1s",
        hold: HoldOpt = False,
        devices: DevicesOpt = 300,
        rate: RateOpt = 200.0,
        json_out: JsonOpt = False,
    ) -> None:
        """Drain a region: its devices reconnect elsewhere, spread out; verify delivery; roll back."""
        inv = state(ctx).inventory
        action = Drain(
            inv,
            region,
            spread_s=parse_duration(spread, what="--spread", allow_zero=True),
            timeout_s=parse_duration(timeout, what="--timeout") if timeout else None,
        )
        run_action(
            ctx,
            action,
            dry_run=dry_run,
            no_probe=no_probe,
            slo=slo,
            deadline=deadline,
            hold=hold,
            devices=devices,
            rate=rate,
            json_out=json_out,
        )

    @app.command(rich_help_panel="Failover")
    def restore(
        ctx: typer.Context,
        region: Annotated[str, typer.Option("--region", help="Region to restore.")],
        dry_run: DryRunOpt = False,
        no_probe: NoProbeOpt = False,
        slo: SloOpt = 99.9,
        deadline: DeadlineOpt = "1s",
        devices: DevicesOpt = 300,
        rate: RateOpt = 200.0,
        json_out: JsonOpt = False,
    ) -> None:
        """Withdraw a region's drain policy; devices return gradually."""
        action = Restore(state(ctx).inventory, region)
        run_action(
            ctx,
            action,
            dry_run=dry_run,
            no_probe=no_probe,
            slo=slo,
            deadline=deadline,
            hold=True,
            devices=devices,
            rate=rate,
            json_out=json_out,
        )

    @app.command(rich_help_panel="Failover")
    def recover(
        ctx: typer.Context,
        all_held: Annotated[
            bool,
            typer.Option("--all", help="Also undo actions held on purpose (--hold): back to the baseline."),
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Roll back whatever an interrupted or killed pushctl left applied (reads the journal)."""
        inv = state(ctx).inventory
        results = asyncio.run(recover_entries(inv, log=render.info, include_held=all_held))
        if json_out:
            render.print_json({"recovered": results})
        else:
            render.recover_report(results)
        if any(not r["ok"] for r in results):
            raise typer.Exit(7)

    @app.command(rich_help_panel="Failover")
    def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """Live platform state: policies, faults, routing, throttle, storage, connections, buffer lag."""
        data: dict[str, Any] = asyncio.run(live_status(state(ctx).inventory))
        if json_out:
            render.print_json(data)
        else:
            render.live_status(data)
