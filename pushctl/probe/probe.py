"""The probe: synthetic devices, a sender and the ledger, as one object actions can hold while they act.

    async with Probe(inventory, ProbeOptions(devices=300, rate=200, duration=None)) as probe:
        ...                       # apply a fault, drain a region, ...
        probe.snapshot()          # live: connected per region, delivery so far
        summary = await probe.stop()
    summary.delivery_rate, probe.drain_stats(since=t_drain)

`start()` brings the devices up (waiting until each has connected once, or a timeout) and starts
sending; `stop()` stops sending, waits for late deliveries (up to `grace`, less if everything has
arrived), takes the devices away and classifies every message. Up to 8,000 devices run in this
process; beyond that (or with `workers=`) they are sharded over worker processes, which `close()`
always terminates.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Literal, Protocol

import httpx

from pushctl.contract.topology import Inventory, LinkKind, ServiceKind
from pushctl.errors import PushctlError, TargetUnreachable, UsageError
from pushctl.probe._tasks import cancel_and_wait
from pushctl.probe.cohorts import assign_cohorts, cohort_via
from pushctl.probe.deadletters import scan_dead_letters
from pushctl.probe.device import DeviceConfig, DeviceStats, ReconnectEvent
from pushctl.probe.fleet import DEFAULT_CONNECT_RATE, MAX_DEVICES_PER_PROCESS, Fleet, device_ids, spread
from pushctl.probe.ledger import Ledger, LedgerSummary, Progress, percentile
from pushctl.probe.rig import RigMonitor
from pushctl.probe.sender import Sender, SenderStats
from pushctl.probe.shards import WorkerShard

Phase = Literal["idle", "connecting", "sending", "grace", "done"]
log = logging.getLogger("pushctl.probe")
MAX_PROBE_DEVICES = 50_000  # what one machine holds (descriptors, memory; docs/protocol.md "Limits")
MAX_PROBE_RATE = 100_000.0  # single pushes per second from one prober
MAX_PROBE_DURATION_S = 24 * 3600.0
# one Toxiproxy process holds at most 20,000 descriptors, two per proxied connection (and a few of its own)
DEVICES_PER_TOXIPROXY = 9_900


@dataclass(frozen=True)
class ProbeOptions:
    devices: int = 300
    rate: float = 200.0  # single pushes per second
    group_rate: float = 0.0  # group pushes per second
    group_size: int = 10
    group_target: Literal["devices", "region"] = "devices"
    region_group_rate: float = 0.0  # group pushes to a whole region per second (beside group_rate)
    duration: float | None = 10.0  # seconds of sending; None: until stop()
    deadline: float = 1.0  # on time when first delivered within this many seconds
    grace: float = 5.0  # after sending stops, how long a message may still arrive (late, not lost)
    regions: Mapping[str, float] | None = None  # home-region weights; None: the inventory's
    reconnect: bool = True
    workers: int | None = None  # worker processes; None: as many as needed, 0: all in this process
    connect_rate: float = DEFAULT_CONNECT_RATE  # device connections started per second, in total
    connect_timeout: float | None = None  # None: scaled with the number of devices
    recheck_s: float = 10.0  # devices re-ask the dispatcher this often (to return home)
    keepalive: float = 10.0  # devices ping this often and give a silent connection this long to answer
    seed: int | None = None
    cohort_share: float | None = None  # the experiment cohort's share of devices (pushctl.probe.cohorts)

    def validate(self) -> None:
        """Every bound, before anything is allocated: a typo must not take the machine down."""
        if not 1 <= self.devices <= MAX_PROBE_DEVICES:
            raise UsageError(
                f"--devices must be between 1 and {MAX_PROBE_DEVICES:,}",
                hint="one machine runs at most that many synthetic devices (descriptors and memory)",
            )
        rates = (self.rate, self.group_rate, self.region_group_rate, self.connect_rate)
        if not all(math.isfinite(r) and r >= 0 for r in rates):
            raise UsageError("--rate, --group-rate and the connect rate must be finite and >= 0")
        if self.rate > MAX_PROBE_RATE or self.group_rate > MAX_PROBE_RATE / 10 or self.region_group_rate > 100:
            raise UsageError(
                f"at most {MAX_PROBE_RATE:,.0f} single pushes/s, {MAX_PROBE_RATE / 10:,.0f} group pushes/s "
                "and 100 region group pushes/s from one prober"
            )
        if self.rate + self.group_rate + self.region_group_rate <= 0:
            raise UsageError("nothing to send: --rate and --group-rate are both 0")
        if not 0.1 <= self.keepalive <= 300:
            raise UsageError("--keepalive must be between 0.1s and 300s")
        if not 1 <= self.group_size <= MAX_PROBE_DEVICES:
            raise UsageError(f"--group-size must be between 1 and {MAX_PROBE_DEVICES:,}")
        if not 0 < self.deadline <= 3600 or not 0 <= self.grace <= 3600:
            raise UsageError("--deadline must be in (0, 1h] and --grace in [0, 1h]")
        if self.duration is not None and not 0 < self.duration <= MAX_PROBE_DURATION_S:
            raise UsageError(f"--duration must be in (0, {MAX_PROBE_DURATION_S / 3600:g}h]")
        if self.workers is not None and not 0 <= self.workers <= 64:
            raise UsageError("--workers must be between 0 and 64")
        if self.cohort_share is not None and not 0 < self.cohort_share < 1:
            raise UsageError("the experiment cohort's share must be more than 0% and less than 100%")


@dataclass(frozen=True)
class Spread:
    """How a drain's reconnections spread over time, in 100 ms buckets.

    `planned` is when each ordered device was told to move (its order's slot: the platform's
    spreading, whatever the rig does), `connected` when it had its new connection (the real storm).
    """

    orders: int
    planned_span_s: float | None  # last slot - first slot
    planned_peak_per_100ms: int
    connected_span_s: float | None
    connected_peak_per_100ms: int

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def spread_of(events: Sequence[ReconnectEvent]) -> Spread:
    """The spread of the order-caused reconnections among `events`."""
    ordered = [e for e in events if e.cause == "order"]
    planned = sorted(e.planned_at for e in ordered if e.planned_at is not None)
    connected = sorted(e.connected_at for e in ordered if e.connected_at is not None)

    def peak(times: list[float]) -> int:
        return max(Counter(math.floor(t * 10) for t in times).values(), default=0)

    return Spread(
        orders=len(ordered),
        planned_span_s=round(planned[-1] - planned[0], 3) if planned else None,
        planned_peak_per_100ms=peak(planned),
        connected_span_s=round(connected[-1] - connected[0], 3) if connected else None,
        connected_peak_per_100ms=peak(connected),
    )


@dataclass(frozen=True)
class DrainStats:
    """How fast devices got a connection back after losing one (reconnect order, loss, rebalance)."""

    reconnects: int
    by_cause: dict[str, int]
    to_region: dict[str, int]
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None
    offline: int  # devices without a connection right now
    spread: Spread | None = None


@dataclass(frozen=True)
class ProbeSnapshot:
    """What the probe sees right now; cheap enough to take a few times per second."""

    phase: Phase
    elapsed_s: float  # since sending began (0 before)
    devices: int
    online: int
    connected: dict[str, int]  # devices connected per broker region
    progress: Progress
    sender: SenderStats
    reconnects: int
    targets: dict[str, str] = field(default_factory=dict)  # dispatcher / access URLs
    away: int = 0  # devices offline on purpose (not counted as offline by the blast radius)

    @property
    def delivery_rate(self) -> float | None:
        return self.progress.delivery_rate


class _Backend(Protocol):
    size: int

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def kill(self) -> None: ...
    @property
    def connected(self) -> Counter[str]: ...
    @property
    def ever_connected(self) -> int: ...
    def events(self) -> list[ReconnectEvent]: ...
    def seen_in(self, region: str) -> list[str]: ...
    def device_stats(self) -> list[DeviceStats]: ...
    @property
    def away(self) -> int: ...
    def return_all(self) -> None: ...
    def dispatcher_answers(self) -> list[tuple[float, tuple[str, ...]]]: ...


class _Local:
    """Every device in this process."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.size = fleet.size

    async def start(self) -> None:
        await self.fleet.start()

    async def stop(self) -> None:
        await self.fleet.stop()
        if self.fleet.errors:
            errors = self.fleet.errors
            raise PushctlError(f"{len(errors)} probe devices crashed, first: {errors[0]}")

    def kill(self) -> None:
        """Tasks die with the event loop; nothing outlives this process."""

    @property
    def connected(self) -> Counter[str]:
        return self.fleet.connected_by_region

    @property
    def ever_connected(self) -> int:
        return self.fleet.ever_connected

    def events(self) -> list[ReconnectEvent]:
        return self.fleet.events

    def seen_in(self, region: str) -> list[str]:
        return self.fleet.seen_in(region)

    def device_stats(self) -> list[DeviceStats]:
        return self.fleet.stats()

    @property
    def away(self) -> int:
        return self.fleet.away

    def return_all(self) -> None:
        self.fleet.return_all()

    def dispatcher_answers(self) -> list[tuple[float, tuple[str, ...]]]:
        return list(self.fleet.dispatcher.answers)


class _Sharded:
    """Devices spread over worker processes."""

    def __init__(self, shards: list[WorkerShard]) -> None:
        self.shards = shards
        self.size = sum(s.size for s in shards)
        self._stats: list[DeviceStats] = []

    async def start(self) -> None:
        for shard in self.shards:
            await shard.start()

    async def stop(self) -> None:
        try:
            await asyncio.gather(*(s.stop() for s in self.shards))
        finally:
            self.kill()
        self._stats = [st for s in self.shards for st in s.stats]
        for shard in self.shards:
            shard.check()

    def kill(self) -> None:
        for shard in self.shards:
            shard.kill()

    @property
    def connected(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for shard in self.shards:
            total.update(shard.connected_by_region)
        return total

    @property
    def ever_connected(self) -> int:
        return sum(s.ever_connected for s in self.shards)

    def events(self) -> list[ReconnectEvent]:
        return [e for s in self.shards for e in s.events]

    def seen_in(self, region: str) -> list[str]:
        return [d for s in self.shards for d, regions in s.seen.items() if region in regions]

    def device_stats(self) -> list[DeviceStats]:
        return list(self._stats)

    @property
    def away(self) -> int:
        return 0  # only a local fleet takes devices offline

    def return_all(self) -> None:
        """Nothing is away in workers."""

    def dispatcher_answers(self) -> list[tuple[float, tuple[str, ...]]]:
        return []  # workers do not report them (experiments that read them run one process)


# ---- where the probe finds the platform ---------------------------------------------------------
def dispatcher_url(inv: Inventory) -> str:
    """The dispatcher as devices reach it: through its public link when the inventory has one."""
    dispatchers = inv.services_of(ServiceKind.DISPATCHER)
    if not dispatchers:
        raise UsageError(f"{inv.source or inv.name}: the inventory has no dispatcher service")
    for link in inv.links:
        upstream = link.upstream.split(":")[0]
        if link.kind == LinkKind.PUBLIC and upstream in dispatchers:
            return inv.link_url(link.name)
    svc = next(iter(dispatchers.values()))
    return f"http://{svc.host}:{svc.port}"


def access_url(inv: Inventory) -> str:
    """The access tier (the app servers' API): no proxy in front of it."""
    access = inv.services_of(ServiceKind.ACCESS)
    if not access:
        raise UsageError(f"{inv.source or inv.name}: the inventory has no access service")
    svc = next(iter(access.values()))
    return f"http://{svc.host}:{svc.port}"


def fallback_endpoints(inv: Inventory) -> dict[str, list[tuple[str, str]]]:
    """Each home region's static IP set: every region's device link, nearest first."""
    out: dict[str, list[tuple[str, str]]] = {}
    for name, region in inv.regions.items():
        order = list(region.nearest) + [r for r in inv.regions if r not in region.nearest]
        out[name] = [(r, inv.link_url(inv.device_link(r).name, scheme="ws") + "/ws") for r in order]
    return out


def device_config(
    inv: Inventory, *, reconnect: bool = True, recheck_s: float = 10.0, keepalive: float = 10.0
) -> DeviceConfig:
    return DeviceConfig(
        dispatcher_url=dispatcher_url(inv),
        secret=inv.token,
        fallback=fallback_endpoints(inv),
        reconnect=reconnect,
        recheck_s=recheck_s,
        ping_interval=keepalive,
        ping_timeout=keepalive,
    )


def check_toxiproxy_room(inv: Inventory, counts: Mapping[str, int]) -> None:
    """Refuse more devices of a region than its device link's Toxiproxy process can hold.

    A region's devices connect at home first; each connection costs its Toxiproxy two descriptors of
    the 20,000 a process may hold here. Past that, the proxy refuses connections and the probe would
    measure the rig, not the platform.
    """
    per_server: dict[str, int] = {}
    for region, n in counts.items():
        link = inv.device_link(region)
        server = inv.toxiproxy.get(link.toxiproxy)
        if server is not None and server.managed:
            per_server[link.toxiproxy] = per_server.get(link.toxiproxy, 0) + n
    for name, n in per_server.items():
        if n > DEVICES_PER_TOXIPROXY:
            raise UsageError(
                f"{n:,} devices would connect through Toxiproxy {name}, which holds at most "
                f"{DEVICES_PER_TOXIPROXY:,} (20,000 descriptors, two per device)",
                hint="fewer --devices, or split the region's device link over more Toxiproxy servers",
            )


def region_weights(inv: Inventory, weights: Mapping[str, float] | None) -> dict[str, float]:
    if weights is None:
        return {name: r.weight for name, r in inv.regions.items()}
    unknown = sorted(set(weights) - set(inv.regions))
    if unknown:
        raise UsageError(f"unknown region {unknown[0]!r}; valid regions: {', '.join(sorted(inv.regions))}")
    if not any(w > 0 for w in weights.values()) or any(w < 0 for w in weights.values()):
        raise UsageError("region weights must be >= 0, at least one > 0")
    return dict(weights)


def worker_count(devices: int, workers: int | None) -> int:
    """0 (all in this process) when one process can hold them, else enough workers to."""
    if workers is None:
        return 0 if devices <= MAX_DEVICES_PER_PROCESS else math.ceil(devices / MAX_DEVICES_PER_PROCESS)
    if workers and math.ceil(devices / workers) > MAX_DEVICES_PER_PROCESS:
        raise UsageError(
            f"{devices} devices over {workers} workers is more than {MAX_DEVICES_PER_PROCESS} per process",
            hint="one process may hold at most 20,000 descriptors; add workers",
        )
    return workers


class Probe:
    """Synthetic devices + sender + ledger; see the module docstring."""

    def __init__(
        self,
        inventory: Inventory,
        options: ProbeOptions,
        *,
        config: DeviceConfig | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        options.validate()
        self.options = options
        self.run_id = secrets.token_hex(3)
        self.ledger = Ledger(deadline=options.deadline)
        self.phase: Phase = "idle"
        self.config = config or device_config(
            inventory, reconnect=options.reconnect, recheck_s=options.recheck_s, keepalive=options.keepalive
        )
        self.access_url = access_url(inventory)
        self._inventory = inventory
        self._token = inventory.token
        counts = spread(options.devices, region_weights(inventory, options.regions))
        check_toxiproxy_room(inventory, counts)
        self.devices = device_ids(self.run_id, counts)
        self.regions = [r for r, n in counts.items() if n > 0]
        self.cohorts: dict[str, frozenset[str]] = {}  # "control" / "experiment" -> devices, when split
        if options.cohort_share is not None:
            experiment = assign_cohorts(self.devices, options.cohort_share, options.seed)
            self.cohorts = {
                "control": frozenset(d for d, _ in self.devices if d not in experiment),
                "experiment": experiment,
            }
            self.config = replace(
                self.config, cohort_via=cohort_via(inventory), cohort_devices=tuple(sorted(experiment))
            )
        for dev, home in self.devices:
            self.ledger.register(dev, home)
        self._http = http
        self._backend = self._make_backend(worker_count(options.devices, options.workers))
        self._sender: Sender | None = None
        self._sending: asyncio.Task[None] | None = None
        self._summary: LedgerSummary | None = None
        self._closing: asyncio.Future[None] | None = None
        self._cutoff = math.inf
        self.rig = RigMonitor()  # is the rig keeping up? (pushctl.probe.rig)
        self._rig_task: asyncio.Task[None] | None = None

    def _make_backend(self, workers: int) -> _Backend:
        opts = self.options
        if workers == 0:
            return _Local(Fleet(self.config, self.devices, self.ledger, connect_rate=opts.connect_rate, seed=opts.seed))
        chunks = [self.devices[i::workers] for i in range(workers)]
        rate = opts.connect_rate / workers
        return _Sharded(
            [
                WorkerShard(
                    i,
                    self.config,
                    chunk,
                    self.ledger,
                    connect_rate=rate,
                    seed=None if opts.seed is None else opts.seed + i,
                )
                for i, chunk in enumerate(chunks)
                if chunk
            ]
        )

    # ---- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Probe:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bring the devices up, then start sending in the background."""
        if self.phase != "idle":
            return
        opts = self.options
        self.phase = "connecting"
        self._rig_task = asyncio.create_task(self.rig.run(), name="probe-rig")
        try:
            await self._backend.start()
            timeout = opts.connect_timeout or 10.0 + 1.5 * opts.devices / opts.connect_rate
            await self._wait_connected(timeout)
        except BaseException:
            await self.close()
            raise
        if self._backend.ever_connected == 0:
            await self.close()
            raise TargetUnreachable(
                f"no probe device could connect within {timeout:.0f}s (dispatcher {self.config.dispatcher_url})",
                hint="is the stack up? try `pushctl stack status`",
            )
        self._sender = Sender(
            self.access_url,
            self._token,
            [d for d, _ in self.devices],
            self.ledger,
            run_id=self.run_id,
            rate=opts.rate,
            group_rate=opts.group_rate,
            group_size=opts.group_size,
            group_target=opts.group_target,
            region_group_rate=opts.region_group_rate,
            regions=self.regions,
            region_members=self._backend.seen_in,
            seed=opts.seed,
            http=self._http,
        )
        self.rig.attach_sender(self._sender.delay_ms)
        self.phase = "sending"
        self._sending = asyncio.create_task(self._sender.run(opts.duration), name="probe-sender")

    async def _wait_connected(self, within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self._backend.ever_connected < self._backend.size and loop.time() < deadline:
            self._check_workers()
            await asyncio.sleep(0.05)

    def _check_workers(self) -> None:
        if isinstance(self._backend, _Sharded):
            for shard in self._backend.shards:
                shard.check()

    async def wait_sent(self) -> None:
        """Until the sender has sent for `duration` (returns at once when it is unbounded and stopped)."""
        if self._sending is not None:
            await asyncio.shield(self._sending)

    @property
    def rate(self) -> float:
        """Single pushes per second being sent now (the configured rate before sending starts)."""
        return self._sender.rate if self._sender is not None else self.options.rate

    def set_rate(self, rate: float) -> None:
        """Change the single-push rate while sending, e.g. a 10x spike and back."""
        if self._sender is None:
            raise UsageError("the probe is not sending yet")
        self._sender.set_rate(rate)

    async def stop(self) -> LedgerSummary:
        """Stop sending, wait out the grace period, take the devices away, classify (idempotent)."""
        if self._summary is not None:
            return self._summary
        try:
            if self._sender is not None and self._sending is not None:
                self._sender.stop()
                await self._sending
                self.phase = "grace"
                sent_until = self._sender.stopped_at or time.time()
                if self._backend.away:
                    # devices still away on purpose (an aborted offline step) come back now: what was
                    # sent to them gets the same grace as everything else, counted from their return
                    self._backend.return_all()
                    sent_until = max(sent_until, time.time())
                self._cutoff = sent_until + self.options.grace
                await self._wait_outstanding(self._cutoff)
        finally:
            await self.close()
        await self._mark_dead_letters()
        self._summary = self.ledger.summary(cutoff=self._cutoff, final=True)
        return self._summary

    async def _mark_dead_letters(self) -> None:
        """Pushes the platform accepted and then dead-lettered were visibly rejected, not lost: read
        its dead-letter topic (only when something is missing) and say so in the ledger."""
        if self.ledger.outstanding == 0 or self.ledger.t0 is None:
            return
        try:
            # a minute's slack for the clocks of the machines that wrote the records
            scan = await scan_dead_letters(self._inventory, since=self.ledger.t0 - 60.0, timeout=5.0)
        except TargetUnreachable as exc:
            log.warning("missing pushes not checked against the dead-letter topic: %s", exc.message)
            return
        for msg_id in scan.ids() if scan is not None else ():
            if msg_id in self.ledger:
                self.ledger.dead_lettered(msg_id)

    async def _wait_outstanding(self, cutoff: float) -> None:
        """Until every expected message arrived (plus a short settle for duplicates) or the cutoff."""
        while time.time() < cutoff:
            self._check_workers()
            if self.ledger.outstanding == 0:
                await asyncio.sleep(min(0.5, max(0.0, cutoff - time.time())))
                return
            await asyncio.sleep(min(0.1, max(0.0, cutoff - time.time())))

    async def run(self) -> LedgerSummary:
        """start(), send for `duration`, stop(): one bounded probe run."""
        if self.options.duration is None:
            raise UsageError("Probe.run() needs a bounded duration")
        try:
            await self.start()
            await self.wait_sent()
            return await self.stop()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop everything without classifying; always terminates worker processes (idempotent).

        Concurrent callers share one close; a caller cancelled while waiting does not cancel it.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close_routine())
        await asyncio.shield(self._closing)

    async def _close_routine(self) -> None:
        if self._rig_task is not None:
            self._rig_task.cancel()
        try:
            if self._sending is not None and not self._sending.done():
                assert self._sender is not None  # noqa: S101 - set together with _sending
                self._sender.stop()
                await cancel_and_wait(self._sending)
            await self._backend.stop()
        finally:
            self._backend.kill()
            self.phase = "done"

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def started_at(self) -> float | None:
        """Epoch seconds when sending began (t = 0 of per-second counters)."""
        return None if self._sender is None else self._sender.started_at

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (empty when every device runs in this process)."""
        if isinstance(self._backend, _Sharded):
            return [pid for shard in self._backend.shards if (pid := shard.pid) is not None]
        return []

    def snapshot(self) -> ProbeSnapshot:
        now = time.time()
        connected = {r: n for r, n in sorted(self._backend.connected.items()) if n > 0}
        return ProbeSnapshot(
            phase=self.phase,
            elapsed_s=0.0 if self.started_at is None else now - self.started_at,
            devices=self._backend.size,
            online=sum(connected.values()),
            connected=connected,
            progress=self.ledger.progress(now),
            sender=replace(self._sender.stats) if self._sender is not None else SenderStats(),
            reconnects=sum(1 for e in self._backend.events() if e.cause != "initial"),
            targets={"dispatcher": self.config.dispatcher_url, "access": self.access_url},
            away=self._backend.away,
        )

    def summary(
        self, *, since: float | None = None, until: float | None = None, devices: Collection[str] | None = None
    ) -> LedgerSummary:
        """The exact summary of messages sent in [since, until) (epoch seconds), e.g. while a fault was on;
        to `devices` only when given (a cohort: the devices a fault reached, or those it spared)."""
        return self.ledger.summary(
            cutoff=self._cutoff, since=since, until=until, final=self._summary is not None, devices=devices
        )

    def reconnects(self, *, since: float | None = None) -> list[ReconnectEvent]:
        """Completed reconnections (every device), optionally only those that started at or after `since`."""
        return [e for e in self._backend.events() if since is None or e.started_at >= since]

    def drain_stats(
        self, *, since: float | None = None, causes: Sequence[str] = ("order", "lost", "rebalance")
    ) -> DrainStats:
        events = [e for e in self.reconnects(since=since) if e.cause in causes]
        durations = sorted(e.duration for e in events if e.duration is not None)
        return DrainStats(
            reconnects=len(events),
            by_cause=dict(Counter(e.cause for e in events)),
            to_region=dict(Counter(e.to_region for e in events if e.to_region is not None)),
            p50_s=percentile(durations, 50),
            p95_s=percentile(durations, 95),
            p99_s=percentile(durations, 99),
            max_s=durations[-1] if durations else None,
            offline=self._backend.size - sum(self._backend.connected.values()),
            spread=spread_of(events),
        )

    # ---- devices away on purpose, what the dispatcher said -----------------------------------
    def take_offline(
        self,
        count: int,
        *,
        duration: float,
        region: str | None = None,
        mode: Literal["drop", "close"] = "drop",
        rng: random.Random | None = None,
    ) -> list[str]:
        """Take `count` connected devices (of home `region`, or any) offline for `duration`, then back.

        Returns the devices taken. Their messages meanwhile are the ledger's offline class.
        """
        fleet = self._local_fleet("taking devices offline")
        if region is not None and region not in self.regions:
            raise UsageError(f"no probe device has home region {region!r}; homes: {', '.join(self.regions)}")
        online = [
            dev for dev, home in self.devices
            if (region is None or home == region) and fleet.device(dev).region is not None
            and not self.ledger.is_away(dev)
        ]  # fmt: skip
        chosen = (rng or random.Random()).sample(online, min(count, len(online)))  # noqa: S311 - picking devices
        fleet.take_offline(chosen, duration, mode=mode)
        return chosen

    @property
    def away(self) -> int:
        """Devices offline on purpose right now."""
        return self._backend.away

    def dispatcher_answers(
        self, *, since: float | None = None, until: float | None = None
    ) -> list[tuple[float, tuple[str, ...]]]:
        """What the dispatcher answered probe devices in [since, until): (when, regions in order)."""
        answers = self._backend.dispatcher_answers()
        return [a for a in answers if (since is None or a[0] >= since) and (until is None or a[0] < until)]

    def _local_fleet(self, what: str) -> Fleet:
        if not isinstance(self._backend, _Local):
            raise UsageError(
                f"{what} needs every probe device in one process (at most {MAX_DEVICES_PER_PROCESS} devices)"
            )
        return self._backend.fleet

    def device_stats(self) -> list[DeviceStats]:
        """Per-device counters and reconnection history (complete once stopped)."""
        return self._backend.device_stats()
