"""`pushctl probe ...`: synthetic devices, a paced sender and the exact delivery ledger.

pushctl probe run --devices 300 --rate 200 --duration 10s
pushctl probe run --devices 300 --no-reconnect --json
pushctl probe run --devices 300 --duration 30s --cohorts 50%   # control vs experiment cohorts
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import math
import signal
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from pushctl import render
from pushctl.actions.connections import parse_share
from pushctl.cli.options import with_parameters
from pushctl.cli.state import state
from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError
from pushctl.experiments.cohorts import CohortComparison, compare, render_cohorts
from pushctl.probe import LedgerSummary, Probe, ProbeOptions, parse_duration

app = typer.Typer(help="Synthetic devices, a paced sender and the exact delivery ledger.", no_args_is_help=True)

T = TypeVar("T")


class GroupTarget(StrEnum):
    DEVICES = "devices"
    REGION = "region"


# The probe's options, shared with `slo check`.
DevicesOpt = Annotated[
    int,
    typer.Option("--devices", "-n", min=1, help="Synthetic devices (past 8,000 they shard over processes)."),
]
RateOpt = Annotated[float, typer.Option("--rate", min=0, help="Single pushes per second.")]
GroupRateOpt = Annotated[float, typer.Option("--group-rate", min=0, help="Group pushes per second.")]
GroupSizeOpt = Annotated[int, typer.Option("--group-size", min=1, help="Devices per group push.")]
GroupTargetOpt = Annotated[
    GroupTarget,
    typer.Option("--group-target", help="devices: a random list; region: every device seen in a random region."),
]
DurationOpt = Annotated[str, typer.Option("--duration", help="How long to send: 500ms, 10s, 1m.")]
DeadlineOpt = Annotated[str, typer.Option("--deadline", help="A delivery is on time within this (the SLO).")]
GraceOpt = Annotated[str, typer.Option("--grace", help="After sending stops, how long late deliveries count.")]
RegionsOpt = Annotated[
    str | None,
    typer.Option("--regions", help="Home regions by weight, e.g. north=1,east=1,south=1 (default: inventory)."),
]
NoReconnectOpt = Annotated[
    bool,
    typer.Option("--no-reconnect", help="A lost connection stays lost (shows the ledger catching loss)."),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", min=0, help="Worker processes (default: as many as needed; 0: none)."),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed target choice and jitter (reproducible runs).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON (no live view).")]


def parse_regions(text: str | None) -> dict[str, float] | None:
    """`north=2,east=1` -> {'north': 2.0, 'east': 1.0}; a bare name weighs 1."""
    if text is None:
        return None
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value) if sep else 1.0
        except ValueError:
            raise UsageError(f"--regions: {item!r} is not region=weight") from None
    if not weights:
        raise UsageError("--regions: give at least one region, e.g. north=1,east=1")
    return weights


def probe_options(
    *,
    devices: DevicesOpt = 300,
    rate: RateOpt = 200.0,
    group_rate: GroupRateOpt = 0.0,
    group_size: GroupSizeOpt = 10,
    group_target: GroupTargetOpt = GroupTarget.DEVICES,
    duration: DurationOpt = "10s",
    deadline: DeadlineOpt = "1s",
    grace: GraceOpt = "5s",
    regions: RegionsOpt = None,
    no_reconnect: NoReconnectOpt = False,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
) -> ProbeOptions:
    """Command-line values into validated ProbeOptions (UsageError, exit 2, when invalid).

    Its parameters are the probe's command-line options: `probe_command` gives them to a command.
    """
    options = ProbeOptions(
        devices=devices,
        rate=rate,
        group_rate=group_rate,
        group_size=group_size,
        group_target="region" if group_target == GroupTarget.REGION else "devices",
        duration=parse_duration(duration, what="--duration"),
        deadline=parse_duration(deadline, what="--deadline"),
        grace=parse_duration(grace, what="--grace", allow_zero=True),
        regions=parse_regions(regions),
        reconnect=not no_reconnect,
        workers=workers,
        seed=seed,
    )
    options.validate()
    return options


def probe_command(command: Callable[..., None]) -> Callable[..., None]:
    """Give `command` every probe option in place of its `options: ProbeOptions` parameter.

    The options keep their flags, defaults and help (`probe run` and `slo check` list the same ones);
    the command receives them already validated as one ProbeOptions.

        @app.command("check")
        @probe_command
        def check(ctx: typer.Context, target: TargetOpt = 99.9, *, options: ProbeOptions, json_out: JsonOpt = False):
    """
    own = inspect.signature(command, eval_str=True).parameters
    shared = inspect.signature(probe_options, eval_str=True).parameters
    params = [p for name, p in own.items() if name != "options"]
    at = list(own).index("options")
    params[at:at] = shared.values()

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> None:
        options = probe_options(**{name: kwargs.pop(name) for name in shared})
        command(**kwargs, options=options)

    return with_parameters(wrapper, params)


def run_probe(
    inventory: Inventory, options: ProbeOptions, *, live: bool, after: Callable[[Probe], None] | None = None
) -> LedgerSummary:
    """One bounded probe run with a live view; Ctrl-C / SIGTERM stop it and its workers cleanly.
    `after` reads the stopped probe (e.g. its cohorts) before it is dropped."""
    return run_async(_probe_routine(inventory, options, live, after))


async def _probe_routine(
    inventory: Inventory, options: ProbeOptions, live: bool, after: Callable[[Probe], None] | None = None
) -> LedgerSummary:
    probe = Probe(inventory, options)
    try:
        with render.ProbeLive(live) as show:
            task = asyncio.create_task(probe.run(), name="probe-run")
            try:
                while not task.done():
                    show(probe.snapshot())
                    await asyncio.wait({task}, timeout=0.5)
                summary = task.result()
                if after is not None:
                    after(probe)
                return summary
            finally:
                if not task.done():
                    task.cancel()
                    await asyncio.wait({task})  # (a suppress() here would swallow our own cancel)
    finally:
        await probe.close()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, with SIGTERM treated like Ctrl-C: cancel, clean up in `finally`, exit 130."""
    terminated = False

    async def main() -> T:
        nonlocal terminated
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()

        def on_term() -> None:
            nonlocal terminated
            terminated = True
            if task is not None:
                task.cancel()

        with contextlib.suppress(RuntimeError, ValueError):  # not the main thread: no handler
            loop.add_signal_handler(signal.SIGTERM, on_term)
        try:
            return await coro
        finally:
            with contextlib.suppress(RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise


CohortsOpt = Annotated[
    str | None,
    typer.Option(
        "--cohorts",
        metavar="SHARE",
        help="Split devices: this share (e.g. 50%) dials the experiment cohort's device links "
        "(fault them with `fault add device-R-x ...`); report both cohorts and their difference.",
    ),
]


@app.command("run")
@probe_command
def run(ctx: typer.Context, *, options: ProbeOptions, cohorts: CohortsOpt = None, json_out: JsonOpt = False) -> None:
    """Run synthetic devices and a sender for --duration; classify every message (on time, late, lost)."""
    if cohorts is not None:
        options = replace(options, cohort_share=parse_share(cohorts, what="--cohorts"))
        options.validate()
    found: list[CohortComparison] = []

    def compared(probe: Probe) -> None:
        if probe.cohorts:
            found.append(compare(probe, since=0.0, until=math.inf, confidence=0.95))

    summary = run_probe(state(ctx).inventory, options, live=not json_out, after=compared)
    if json_out:
        render.print_json({**summary.to_json(), **({"cohorts": found[0].to_json()} if found else {})})
    else:
        render.probe_summary(summary)
        if found:
            render.info(render_cohorts(found[0], over="the run"))


async def _spike_routine(
    inventory: Inventory, options: ProbeOptions, factor: float, calm: float, spike: float, live: bool
) -> tuple[LedgerSummary, LedgerSummary]:
    """calm at the base rate, `spike` seconds at factor x, calm again; (whole run, the spike's sends)."""
    probe = Probe(inventory, options)
    try:
        with render.ProbeLive(live) as show:
            await probe.start()

            async def phase(seconds: float) -> None:
                end = asyncio.get_running_loop().time() + seconds
                while (left := end - asyncio.get_running_loop().time()) > 0:
                    show(probe.snapshot())
                    await asyncio.sleep(min(0.5, left))

            await phase(calm)
            started = time.time()
            probe.set_rate(options.rate * factor)
            await phase(spike)
            probe.set_rate(options.rate)
            ended = time.time()
            await phase(calm)
            summary = await probe.stop()
            return summary, probe.summary(since=started, until=ended)
    finally:
        await probe.close()


@app.command("spike")
def spike(
    ctx: typer.Context,
    factor: Annotated[float, typer.Option("--factor", min=1, max=100, help="Multiply the send rate by this.")] = 10.0,
    duration: Annotated[str, typer.Option("--duration", help="How long the spike lasts.")] = "30s",
    calm: Annotated[str, typer.Option("--calm", help="Base-rate sending before and after the spike.")] = "5s",
    devices: DevicesOpt = 300,
    rate: RateOpt = 200.0,
    deadline: DeadlineOpt = "1s",
    grace: GraceOpt = "5s",
    json_out: JsonOpt = False,
) -> None:
    """A breaking-news burst: --factor times the rate for --duration, between calm periods at the base rate."""
    options = probe_options(
        devices=devices, rate=rate, group_rate=0.0, group_size=10, group_target=GroupTarget.DEVICES,
        duration="1s", deadline=deadline, grace=grace, regions=None, no_reconnect=False, workers=None, seed=None,
    )  # fmt: skip
    options = replace(options, duration=None)
    summary, during = run_async(
        _spike_routine(state(ctx).inventory, options, factor, parse_duration(calm, what="--calm", allow_zero=True),
                       parse_duration(duration, what="--duration"), not json_out)
    )  # fmt: skip
    if json_out:
        render.print_json({"factor": factor, "spike": during.to_json(), "overall": summary.to_json()})
    else:
        render.probe_summary(during, title=f"spike {factor:g}x")
        render.probe_summary(summary, title="whole run")
