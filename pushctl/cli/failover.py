"""`pushctl fail|heal|switch-idc|throttle`: failures and failovers, each journaled, verified, rolled back."""

from __future__ import annotations

from typing import Annotated

import typer

from pushctl.actions.base import Action
from pushctl.actions.idc import FailIdc, SwitchIdc, parse_weights
from pushctl.actions.redis import MODES as REDIS_MODES
from pushctl.actions.redis import FailRedis
from pushctl.actions.region import MODES as REGION_MODES
from pushctl.actions.region import FailRegion, Heal
from pushctl.actions.throttle import ThrottleAccess
from pushctl.cli.actions import action_command, run_action
from pushctl.cli.options import JsonOpt
from pushctl.cli.state import state
from pushctl.errors import UsageError
from pushctl.probe.duration import parse_duration

fail_app = typer.Typer(help="Inject a failure (rolled back at the end unless --hold).", no_args_is_help=True)
heal_app = typer.Typer(help="Undo a failure held with `pushctl fail ... --hold`.", no_args_is_help=True)
throttle_app = typer.Typer(help="Throttle a tier onto the Kafka buffer.", no_args_is_help=True)

DurationOpt = Annotated[str, typer.Option("--duration", help="How long the failure lasts before rollback.")]


@fail_app.command("region")
@action_command(slo=80.0, runtime=True)
def fail_region(
    ctx: typer.Context,
    region: Annotated[str, typer.Option("--region", help="Region that fails.")],
    mode: Annotated[str, typer.Option("--mode", help=f"One of: {', '.join(REGION_MODES)}.")] = "link-down",
    duration: DurationOpt = "15s",
    max_impact: Annotated[str, typer.Option("--max-impact", help="Delivery must recover within this.")] = "10s",
) -> Action:
    """A region's brokers or networks fail; devices fail over; the scheduler drains it by itself."""
    return FailRegion(
        state(ctx).inventory,
        region,
        mode,
        duration_s=parse_duration(duration),
        max_impact_s=parse_duration(max_impact),
    )


@fail_app.command("idc")
@action_command(runtime=True)
def fail_idc(
    ctx: typer.Context,
    idc: Annotated[str, typer.Option("--idc", help="IDC that loses power.")],
    duration: DurationOpt = "15s",
) -> Action:
    """An IDC's logic gateways die; the other IDC carries the traffic with nothing lost."""
    return FailIdc(state(ctx).inventory, idc, duration_s=parse_duration(duration))


@fail_app.command("redis")
@action_command(runtime=True)
def fail_redis(
    ctx: typer.Context,
    mode: Annotated[str, typer.Option("--mode", help=f"One of: {', '.join(REDIS_MODES)}.")] = "down",
    latency: Annotated[int, typer.Option("--latency", min=1, help="Round-trip ms for --mode latency.")] = 200,
    duration: DurationOpt = "15s",
) -> Action:
    """The payload cache fails; single pushes carry payloads inline, group pushes read the disk KV."""
    return FailRedis(state(ctx).inventory, mode, latency_ms=latency, duration_s=parse_duration(duration))


def _heal(ctx: typer.Context, of_action: str, match: dict[str, str], json_out: bool) -> None:
    action = Heal(state(ctx).inventory, of_action, match)
    run_action(
        ctx,
        action,
        dry_run=False,
        no_probe=True,
        slo=0.0,
        deadline="1s",
        hold=True,
        devices=1,
        rate=1.0,
        json_out=json_out,
        needs_confirm=False,
    )


@heal_app.command("region")
def heal_region(
    ctx: typer.Context,
    region: Annotated[str, typer.Option("--region", help="Region to heal.")],
    json_out: JsonOpt = False,
) -> None:
    """Undo a held region failure; the scheduler withdraws its auto drain when the region is healthy."""
    _heal(ctx, "fail-region", {"region": region}, json_out)


@heal_app.command("idc")
def heal_idc(ctx: typer.Context, idc: Annotated[str, typer.Option("--idc")], json_out: JsonOpt = False) -> None:
    """Restart an IDC's gateways after a held `fail idc`."""
    _heal(ctx, "fail-idc", {"idc": idc}, json_out)


@heal_app.command("redis")
def heal_redis(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Undo a held Redis failure; the access tier goes back to Redis storage."""
    _heal(ctx, "fail-redis", {}, json_out)


@throttle_app.command("access")
@action_command(slo=99.0, deadline="5s")
def throttle_access(
    ctx: typer.Context,
    limit: Annotated[str | None, typer.Option("--limit", help="Direct-path limit, e.g. 500/s.")] = None,
    auto: Annotated[bool, typer.Option("--auto", help="Limit once load passes --threshold of --safe-load.")] = False,
    safe_load: Annotated[float | None, typer.Option("--safe-load", help="Safe downstream load, pushes/s.")] = None,
    threshold: Annotated[float, typer.Option("--threshold", help="Fraction of the safe load.")] = 0.8,
    duration: DurationOpt = "15s",
) -> Action:
    """Rate-limit the access tier's direct path; the excess goes through the Kafka buffer, none rejected."""
    per_s = None
    if limit is not None:
        try:
            per_s = float(limit.removesuffix("/s"))
        except ValueError:
            raise UsageError(f"--limit {limit!r}: expected a rate such as 500/s") from None
    return ThrottleAccess(
        limit=per_s, auto=auto, safe_load=safe_load, threshold=threshold, duration_s=parse_duration(duration)
    )


def register(app: typer.Typer) -> None:
    app.add_typer(fail_app, name="fail", rich_help_panel="Failover")
    app.add_typer(heal_app, name="heal", rich_help_panel="Failover")
    app.add_typer(throttle_app, name="throttle", rich_help_panel="Failover")

    @app.command("switch-idc", rich_help_panel="Failover")
    @action_command()
    def switch_idc(
        ctx: typer.Context,
        to: Annotated[str | None, typer.Option("--to", help="Send all logic traffic to this IDC.")] = None,
        weights: Annotated[str | None, typer.Option("--weights", help="e.g. idc1=30,idc2=70")] = None,
        duration: DurationOpt = "10s",
    ) -> Action:
        """Move logic traffic between the IDCs by routing weights; verify delivery; roll back."""
        inv = state(ctx).inventory
        return SwitchIdc(inv, parse_weights(inv, to, weights), duration_s=parse_duration(duration))
