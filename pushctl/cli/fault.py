"""`pushctl fault ...`: network faults on named links (Toxiproxy toxics).

pushctl fault add device-north latency --latency 200 --stream both --reset-connections
pushctl fault down kafka
pushctl fault list
pushctl fault clear
pushctl fault cpu logic-idc1 --cpus 0.2 --runtime docker
pushctl fault connections --region north --drop 30%        # journaled actions, rolled back, verified
pushctl fault connections --region north --half-open 10% --duration 10s
pushctl fault storm --region north
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import typer

from pushctl import render
from pushctl.actions.base import Action
from pushctl.actions.connections import ConnectionFault, Storm, parse_share
from pushctl.cli.actions import action_command
from pushctl.cli.options import ConfirmOpt, require_confirmed
from pushctl.cli.state import state
from pushctl.errors import TargetUnreachable, UsageError
from pushctl.faults import links
from pushctl.faults.toxics import KINDS, Stream, catalog_help, parse_attr_pairs
from pushctl.probe.duration import parse_duration
from pushctl.runtime import get_runtime
from pushctl.runtime.cpu import set_cpus

app = typer.Typer(help="Network faults on named links (Toxiproxy toxics).", no_args_is_help=True)

# How the commands reach Toxiproxy; tests put a fake server (`httpx.MockTransport`) here.
TRANSPORT: httpx.AsyncBaseTransport | None = None

LinkArg = Annotated[
    str, typer.Argument(metavar="LINK", help="A link of the inventory, e.g. device-north, kafka, store.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]

_ADD_HELP = f"""Add a toxic to LINK (all attributes are whole numbers).

A new toxic reaches new connections; Toxiproxy does not reliably apply it to connections
already open (#148), so pass --reset-connections to close them and make clients reconnect
through the fault.

\b
Kinds and attributes:
{catalog_help()}
"""


@app.command("list")
def list_faults(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Every link: up or down, and its toxics. Exit 4 if a Toxiproxy server could not be read."""
    inv = state(ctx).inventory
    rows = asyncio.run(links.list_faults(inv, transport=TRANSPORT))
    if json_out:
        render.print_json({"inventory": inv.name, "links": [r.to_json() for r in rows]})
    else:
        render.fault_list(rows)
    unread = [r for r in rows if r.error]
    if unread:
        raise TargetUnreachable(
            f"could not read {len(unread)} of {len(rows)} links: {unread[0].link}: {unread[0].error}"
            + (f" (and {len(unread) - 1} more)" if len(unread) > 1 else "")
        )


@app.command("add", help=_ADD_HELP)
def add(
    ctx: typer.Context,
    link: LinkArg,
    kind: Annotated[str, typer.Argument(metavar="KIND", help=f"Toxic kind: {', '.join(KINDS)}.")],
    latency: Annotated[int | None, typer.Option(metavar="MS", help="latency: delay.")] = None,
    jitter: Annotated[int | None, typer.Option(metavar="MS", help="latency: +/- variation.")] = None,
    rate: Annotated[int | None, typer.Option(metavar="KBPS", help="bandwidth: KB/s, > 0.")] = None,
    delay: Annotated[int | None, typer.Option(metavar="N", help="slow_close: ms; slicer: µs between chunks.")] = None,
    timeout: Annotated[int | None, typer.Option(metavar="MS", help="timeout (0 = black hole), reset_peer: ms.")] = None,
    size: Annotated[int | None, typer.Option("--bytes", metavar="N", help="limit_data: bytes.")] = None,
    average_size: Annotated[int | None, typer.Option(metavar="BYTES", help="slicer: chunk size.")] = None,
    size_variation: Annotated[int | None, typer.Option(metavar="BYTES", help="slicer: variation.")] = None,
    attr: Annotated[
        list[str] | None, typer.Option("--attr", metavar="KEY=VALUE", help="Any attribute; repeatable.")
    ] = None,
    stream: Annotated[
        Stream,
        typer.Option(help="up: client->server, down: server->client, both: one toxic per direction."),
    ] = Stream.DOWN,
    toxicity: Annotated[
        float,
        typer.Option(help="Share of connections that get the toxic (0..1), drawn once per connection, not per packet."),
    ] = 1.0,
    name: Annotated[str | None, typer.Option(help="Toxic name (default: the kind); suffixed -up / -down.")] = None,
    reset_connections: Annotated[
        bool, typer.Option("--reset-connections", help="Then close every open connection through LINK.")
    ] = False,
    confirm_target: ConfirmOpt = None,
    json_out: JsonOpt = False,
) -> None:
    flags = {
        "latency": latency,
        "jitter": jitter,
        "rate": rate,
        "delay": delay,
        "timeout": timeout,
        "bytes": size,
        "average_size": average_size,
        "size_variation": size_variation,
    }
    attrs: dict[str, object] = {k: v for k, v in flags.items() if v is not None}
    for key, value in parse_attr_pairs(attr or []).items():
        if key in attrs:
            raise UsageError(f"attribute {key!r} given twice (--{key.replace('_', '-')} and --attr)")
        attrs[key] = value
    inv = state(ctx).inventory
    spec = links.plan_fault(inv, link, kind, attrs, stream, toxicity, name, reset_connections)
    require_confirmed(inv, confirm_target, f"a {kind} fault on {link} would reach it for real")
    _done([asyncio.run(links.apply_fault(spec, transport=TRANSPORT))], json_out, spec.model_dump())


@app.command()
def down(ctx: typer.Context, link: LinkArg, confirm_target: ConfirmOpt = None, json_out: JsonOpt = False) -> None:
    """Take LINK down: its proxy stops listening and every open connection through it is closed."""
    inv = state(ctx).inventory
    spec = links.plan_link_down(inv, link)
    require_confirmed(inv, confirm_target, f"taking {link} down would cut it for real")
    _done([asyncio.run(links.apply_fault(spec, transport=TRANSPORT))], json_out, spec.model_dump())


@app.command()
def up(ctx: typer.Context, link: LinkArg, json_out: JsonOpt = False) -> None:
    """Bring LINK back up (its toxics stay; `fault clear` removes them)."""
    _done([asyncio.run(links.link_up(state(ctx).inventory, link, transport=TRANSPORT))], json_out)


@app.command()
def clear(
    ctx: typer.Context,
    link: Annotated[str | None, typer.Argument(metavar="LINK", help="Only this link (default: every link).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Remove every toxic and bring links back up: one link, or all of them."""
    inv = state(ctx).inventory
    _done(asyncio.run(links.clear_faults(inv, link, transport=TRANSPORT)), json_out)


def _done(results: list[links.FaultResult], json_out: bool, plan: dict[str, object] | None = None) -> None:
    if json_out:
        body: dict[str, object] = {"results": [r.to_json() for r in results]}
        if plan is not None:
            body["plan"] = plan
        render.print_json(body)
    else:
        render.fault_results(results)


@app.command()
def cpu(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument(metavar="COMPONENT", help="e.g. logic-idc1, bypass, kafka.")],
    cpus: Annotated[
        float | None, typer.Option("--cpus", metavar="N", help="CPUs it may use, e.g. 0.2 (a fifth of one).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Lift the limit.")] = False,
    runtime: Annotated[
        str, typer.Option("--runtime", "-r", envvar="PUSHCTL_RUNTIME", help="Where the stack runs: process, docker.")
    ] = "process",
    confirm_target: ConfirmOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Cap COMPONENT's CPU to emulate lost capacity (`--clear` lifts it).

    docker: a CFS quota on its container. process: a cgroup v2 cpu.max where this machine lets
    pushctl write one, else exit 2.
    """
    if (cpus is None) == (not clear):
        raise UsageError("give either --cpus N or --clear")
    inv = state(ctx).inventory
    if not clear:
        require_confirmed(inv, confirm_target, f"capping {component}'s CPU would slow it for real")
    rt = get_runtime(runtime, inv, log=render.info)
    message = asyncio.run(set_cpus(rt, component, None if clear else cpus))
    if json_out:
        render.print_json(
            {"component": component, "runtime": runtime, "cpus": None if clear else cpus, "result": message}
        )
    else:
        render.info(message)


RegionOpt = Annotated[str, typer.Option("--region", help="The region whose device connections are hit.")]
RecoveryOpt = Annotated[
    str | None,
    typer.Option("--max-recovery", help="Every affected device must be back within this (default: per fault)."),
]
CohortOpt = Annotated[
    str | None,
    typer.Option(
        "--cohort",
        metavar="SHARE",
        help="Fault only an experiment cohort: this share of the probe's devices reaches the region through "
        "its own device link and takes the fault, the rest are the control cohort; report what the fault cost "
        "(the difference, with a 95% confidence interval).",
    ),
]


def _cohort_share(text: str | None) -> float | None:
    """--cohort SHARE as a fraction strictly between 0 and 1 (both cohorts need devices)."""
    if text is None:
        return None
    share = parse_share(text, what="--cohort")
    if share >= 1:
        raise UsageError("--cohort must leave a control cohort: less than 100%")
    return share


@app.command()
@action_command(slo=80.0)  # pushes to a silenced device are late until it notices: by design, not a failure
def connections(
    ctx: typer.Context,
    region: RegionOpt,
    drop: Annotated[
        str | None,
        typer.Option("--drop", metavar="SHARE", help="Reset this share of live connections: 30%, 0.3."),
    ] = None,
    half_open: Annotated[
        str | None,
        typer.Option("--half-open", metavar="SHARE", help="Leave this share open but silent for --duration."),
    ] = None,
    duration: Annotated[str, typer.Option("--duration", help="How long half-open connections stay silent.")] = "10s",
    keepalive: Annotated[
        str, typer.Option("--keepalive", help="Probe devices ping this often (how they notice silence).")
    ] = "1s",
    max_recovery: RecoveryOpt = None,
    cohort: CohortOpt = None,
) -> Action:
    """Drop a random share of a region's live device connections, or leave a share half-open; report who
    was hit, when every one was back, the reconnection load and delivery to them; roll back."""
    if (drop is None) == (half_open is None):
        raise UsageError("give exactly one of --drop SHARE or --half-open SHARE")
    mode, text = ("drop", drop) if drop is not None else ("half-open", half_open)
    assert text is not None  # noqa: S101 - one of the two was given (checked above)
    return ConnectionFault(
        state(ctx).inventory,
        region,
        mode,
        parse_share(text, what=f"--{mode}"),
        duration_s=parse_duration(duration, what="--duration"),
        max_recovery_s=parse_duration(max_recovery, what="--max-recovery") if max_recovery else None,
        keepalive_s=parse_duration(keepalive, what="--keepalive"),
        cohort_share=_cohort_share(cohort),
    )


@app.command()
@action_command(slo=90.0)
def storm(ctx: typer.Context, region: RegionOpt, max_recovery: RecoveryOpt = None, cohort: CohortOpt = None) -> Action:
    """Disconnect every device of a region at once (a reconnect storm); report when all were back, the
    peak dispatcher requests/s and broker handshakes/s, refusals and delivery; roll back."""
    recovery = parse_duration(max_recovery, what="--max-recovery") if max_recovery else 20.0
    return Storm(state(ctx).inventory, region, max_recovery_s=recovery, cohort_share=_cohort_share(cohort))
