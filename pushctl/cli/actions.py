"""Failover commands: drain, restore, recover, status (more actions register here too).

Every action command is a small builder (its own options -> an Action) wrapped by `action_command`,
which adds the options all actions share (--dry-run, --no-probe, --slo, --deadline, --hold,
--devices, --rate, --confirm-target, --json) and runs the action: plan or execute, report, exit.

Exit codes: 0 the SLO held, 1 SLO breached (numbers shown), 2 bad input, 4 target unreachable,
5 platform unhealthy, 6 another action holds the lock (or `recover` is needed), 7 rollback failed,
130 interrupted (after rolling back).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any

import typer

from pushctl import render
from pushctl.actions.abort import abort as abort_target
from pushctl.actions.base import Action
from pushctl.actions.drain import Drain, Restore
from pushctl.actions.recover import describe_settled
from pushctl.actions.recover import recover as recover_entries
from pushctl.actions.runner import RunOptions, execute, raise_for_verdict
from pushctl.actions.status import live_status
from pushctl.cli.options import ConfirmOpt, JsonOpt, RuntimeOpt, require_confirmed, with_parameters
from pushctl.cli.state import state
from pushctl.errors import RollbackFailed
from pushctl.probe.duration import parse_duration
from pushctl.probe.probe import ProbeOptions

DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")]
NoProbeOpt = Annotated[bool, typer.Option("--no-probe", help="Do not run synthetic devices while acting.")]
DeadlineOpt = Annotated[str, typer.Option("--deadline", help="A delivery is on time within this.")]
HoldOpt = Annotated[bool, typer.Option("--hold", help="Keep the change applied (a real incident), no rollback.")]
DevicesOpt = Annotated[int, typer.Option("--devices", min=1, help="Probe devices.")]
RateOpt = Annotated[float, typer.Option("--rate", min=0, help="Probe single pushes per second.")]


def _slo_opt(default: float) -> Any:
    return Annotated[
        float, typer.Option("--slo", min=0, max=100, help=f"Delivery-rate SLO in percent (default {default:g}).")
    ]


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
    dry_run: bool = False,
    no_probe: bool = False,
    slo: float = 99.9,
    deadline: str = "1s",
    hold: bool = False,
    devices: int = 300,
    rate: float = 200.0,
    json_out: bool = False,
    runtime: str = "process",
    confirm_target: str | None = None,
    needs_confirm: bool = True,
) -> None:
    """The shared shape of every action command: plan or execute, report, exit by verdict."""
    inv = state(ctx).inventory
    plan = action.plan()
    if dry_run:
        if json_out:
            render.print_json({"action": action.name, "params": action.params(), "plan": [s.__dict__ for s in plan]})
        else:
            render.plan(action.title(), plan, drill=action.drill)
        return
    if needs_confirm:
        require_confirmed(inv, confirm_target, f"`{action.name}` would change it for real")
    opts = RunOptions(
        slo=slo,
        probe=None if no_probe else replace(probe_options(devices, rate, deadline), **action.probe_hints()),
        hold=hold or not action.drill,
        runtime=runtime,
    )
    report = asyncio.run(execute(inv, action, opts, log=render.info))
    if json_out:
        render.print_json(report.to_json())
    else:
        render.action_report(report)
    raise_for_verdict(report)


def _shared_params(*, slo: float, deadline: str, holdable: bool, runtime: bool) -> list[inspect.Parameter]:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [
        inspect.Parameter("dry_run", kw, annotation=DryRunOpt, default=False),
        inspect.Parameter("no_probe", kw, annotation=NoProbeOpt, default=False),
        inspect.Parameter("slo", kw, annotation=_slo_opt(slo), default=slo),
        inspect.Parameter("deadline", kw, annotation=DeadlineOpt, default=deadline),
    ]
    if holdable:
        params.append(inspect.Parameter("hold", kw, annotation=HoldOpt, default=False))
    params += [
        inspect.Parameter("devices", kw, annotation=DevicesOpt, default=300),
        inspect.Parameter("rate", kw, annotation=RateOpt, default=200.0),
    ]
    if runtime:
        params.append(inspect.Parameter("runtime", kw, annotation=RuntimeOpt, default="process"))
    params += [
        inspect.Parameter("confirm_target", kw, annotation=ConfirmOpt, default=None),
        inspect.Parameter("json_out", kw, annotation=JsonOpt, default=False),
    ]
    return params


def action_command(
    *, slo: float = 99.9, deadline: str = "1s", holdable: bool = True, runtime: bool = False
) -> Callable[[Callable[..., Action]], Callable[..., None]]:
    """Turn a builder `(ctx, own options) -> Action` into a command with every shared action option.

    `holdable=False` for actions that are never rolled back (restore); `runtime=True` for actions that
    stop or start processes and so must know where the stack runs.
    """

    def decorate(build: Callable[..., Action]) -> Callable[..., None]:
        own = list(inspect.signature(build, eval_str=True).parameters.values())
        shared = _shared_params(slo=slo, deadline=deadline, holdable=holdable, runtime=runtime)
        shared_names = [p.name for p in shared]

        @functools.wraps(build)
        def command(**kwargs: Any) -> None:
            common = {name: kwargs.pop(name) for name in shared_names}
            run_action(kwargs["ctx"], build(**kwargs), **common)

        return with_parameters(command, [*own, *shared])

    return decorate


def register(app: typer.Typer) -> None:
    """Add the action commands to the root app."""

    @app.command(rich_help_panel="Failover")
    @action_command()
    def drain(
        ctx: typer.Context,
        region: Annotated[str, typer.Option("--region", help="Region to drain.")],
        spread: Annotated[str, typer.Option("--spread", help="Spread reconnect orders over this window.")] = "5s",
        timeout: Annotated[
            str | None, typer.Option("--timeout", help="Give up waiting for 0 devices after this.")
        ] = None,
    ) -> Action:
        """Drain a region: its devices reconnect elsewhere, spread out; verify delivery; roll back."""
        return Drain(
            state(ctx).inventory,
            region,
            spread_s=parse_duration(spread, what="--spread", allow_zero=True),
            timeout_s=parse_duration(timeout, what="--timeout") if timeout else None,
        )

    @app.command(rich_help_panel="Failover")
    @action_command(holdable=False)
    def restore(
        ctx: typer.Context,
        region: Annotated[str, typer.Option("--region", help="Region to restore.")],
    ) -> Action:
        """Withdraw a region's drain policy; devices return gradually."""
        return Restore(state(ctx).inventory, region)

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
        results, settled = asyncio.run(recover_entries(inv, log=render.info, include_held=all_held))
        if json_out:
            render.print_json({"recovered": results, "settled": settled})
        else:
            render.recover_report(results)
        failed = [r["journal"] for r in results if not r["ok"]]
        if failed:
            raise RollbackFailed(
                f"{len(failed)} of {len(results)} journal entries could not be rolled back: {', '.join(failed)}",
                hint="fix the cause (see the steps above), then run `pushctl recover` again",
            )
        unsettled = describe_settled(inv, {k: v for k, v in settled.items() if v is None})
        if unsettled:
            raise RollbackFailed(
                f"undone, but the platform did not settle: {'; '.join(unsettled)}",
                hint="see `pushctl status`",
            )

    @app.command(rich_help_panel="Failover")
    def abort(
        ctx: typer.Context,
        timeout: Annotated[
            str, typer.Option("--timeout", help="How long a run gets to roll back on its own before it is killed.")
        ] = "120s",
        json_out: JsonOpt = False,
    ) -> None:
        """Emergency stop: whatever action, experiment or runbook verification holds the target rolls back
        and stops (killed and undone from its journal if stuck); returns when the target is at baseline."""
        inv = state(ctx).inventory
        grace = parse_duration(timeout, what="--timeout")
        report = asyncio.run(abort_target(inv, timeout=grace, log=render.info))
        if json_out:
            render.print_json(report.to_json())
        else:
            for s in report.stopped:
                render.info(f"stopped {s['what']} (pid {s['pid']}): {s['how']} after {s['seconds']}s")
            render.recover_report(report.recovered)
            render.info(f"abort done in {report.seconds}s")
        failed = [r["journal"] for r in report.recovered if not r["ok"]]
        if failed or report.unsettled:
            left = [*(f"{j} not rolled back" for j in failed), *(f"{k} not settled" for k in report.unsettled)]
            raise RollbackFailed(
                "aborted, but the target is not at its baseline: " + "; ".join(left),
                hint="see `pushctl status`; fix the cause, then `pushctl recover`",
            )

    @app.command(rich_help_panel="Failover")
    def status(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """Live platform state: policies, faults, routing, throttle, storage, connections, buffer lag."""
        data: dict[str, Any] = asyncio.run(live_status(state(ctx).inventory))
        if json_out:
            render.print_json(data)
        else:
            render.live_status(data)
