"""`pushctl stack ...`: install, start, inspect and stop the reference stack."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer

from pushctl import render
from pushctl.cli.state import state
from pushctl.errors import ComponentFailed
from pushctl.runtime import RUNTIMES, get_runtime
from pushctl.runtime.install import install_all
from pushctl.runtime.paths import cache_dir

app = typer.Typer(help="Install, start, inspect and stop the reference push stack.", no_args_is_help=True)

RuntimeOpt = Annotated[
    str,
    typer.Option("--runtime", "-r", envvar="PUSHCTL_RUNTIME", help=f"Where components run: {', '.join(RUNTIMES)}."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command()
def install() -> None:
    """Install the pinned real components (Toxiproxy, Kafka, Redis, Prometheus) into the cache; idempotent."""
    started = time.monotonic()
    got = install_all(cache_dir(), render.info)
    render.kv(
        "installed",
        {
            "toxiproxy-server": got.toxiproxy_server,
            "redis-server": got.redis_server,
            "kafka libs": got.kafka_libs,
            "prometheus": got.prometheus,
            "seconds": f"{time.monotonic() - started:.1f}",
        },
    )


@app.command()
def up(
    ctx: typer.Context,
    runtime: RuntimeOpt = "process",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every component to be healthy.")] = 180.0,
    json_out: JsonOpt = False,
) -> None:
    """Start every component in dependency order, create every link, wait until all are healthy."""
    inv = state(ctx).inventory
    rt = get_runtime(runtime, inv, log=render.info)
    started = time.monotonic()
    status = asyncio.run(rt.up(timeout=timeout))
    if json_out:
        render.print_json({**status.to_json(), "seconds": round(time.monotonic() - started, 2)})
    else:
        render.stack_status(status)
        render.info(f"stack {inv.name!r} up in {time.monotonic() - started:.1f}s")
    if not status.healthy:
        raise ComponentFailed(f"stack {inv.name!r} is not healthy", hint="see the table above")


@app.command()
def status(ctx: typer.Context, runtime: RuntimeOpt = "process", json_out: JsonOpt = False) -> None:
    """Every component (pid, ports, health, uptime) and every link; exit 5 when something is unhealthy."""
    inv = state(ctx).inventory
    st = asyncio.run(get_runtime(runtime, inv, log=render.info).status())
    if json_out:
        render.print_json(st.to_json())
    else:
        render.stack_status(st)
    if not st.healthy:
        raise ComponentFailed(f"stack {inv.name!r} is not healthy", hint="see the table above")


@app.command()
def down(
    ctx: typer.Context,
    runtime: RuntimeOpt = "process",
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the run directory (logs, data).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Stop every component (SIGTERM, then SIGKILL after a grace period); nothing is left running."""
    inv = state(ctx).inventory
    started = time.monotonic()
    stopped = asyncio.run(get_runtime(runtime, inv, log=render.info).down(purge=purge))
    seconds = round(time.monotonic() - started, 2)
    if json_out:
        render.print_json({"stack": inv.name, "stopped": stopped, "purged": purge, "seconds": seconds})
    else:
        render.info(f"stopped {len(stopped)} components of {inv.name!r} in {seconds}s" + (" (purged)" if purge else ""))


@app.command()
def logs(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument(help="Component name, e.g. kafka, broker-south, tp-north.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines.")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Last N lines (0 = all).")] = 100,
    runtime: RuntimeOpt = "process",
) -> None:
    """Print a component's log."""
    inv = state(ctx).inventory
    rt = get_runtime(runtime, inv, log=render.info)
    try:
        for line in rt.logs(component, follow=follow, lines=lines):
            render.raw(line)
    except KeyboardInterrupt:
        pass
