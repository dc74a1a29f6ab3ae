"""The devices one process runs: started at a bounded rate, counted per region, feeding a ledger.

A process may hold at most 20,000 descriptors here, one per device connection, so a prober runs at
most `MAX_DEVICES_PER_PROCESS` devices in one fleet and shards the rest over worker processes.

    fleet = Fleet(config, [("probe-1", "north")], ledger)
    await fleet.start()
    await fleet.wait_connected(within=10)
    await fleet.stop()
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Literal

import httpx

from pushctl._http import tls
from pushctl.contract.gcpolicy import defer_full_collections
from pushctl.probe.device import Device, DeviceConfig, DeviceStats, Dispatcher, ReconnectEvent
from pushctl.probe.ledger import Ledger

MAX_DEVICES_PER_PROCESS = 8000
DEFAULT_CONNECT_RATE = 400.0  # new devices per second (WebSocket handshakes cost ~0.5-0.7 ms each)
FREEZE_FROM_DEVICES = 1000  # a fleet this large freezes itself out of the GC once connected (_freeze)
FREEZE_WAIT_S = 300.0


def spread(n: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split n devices over regions by weight (largest remainder; exact total, stable order)."""
    live = {r: w for r, w in weights.items() if w > 0}
    if n < 0 or not live:
        raise ValueError("need n >= 0 and at least one region with a positive weight")
    total = sum(live.values())
    quotas = {r: n * w / total for r, w in live.items()}
    counts = {r: math.floor(q) for r, q in quotas.items()}
    order = sorted(live, key=lambda r: (-(quotas[r] - counts[r]), list(live).index(r)))
    for r in order[: n - sum(counts.values())]:
        counts[r] += 1
    return counts


def device_ids(run_id: str, counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """(device id, home region) for every probe device; ids are unique per run.

    Regions are interleaved (round robin) because devices connect in this order: a probe whose
    connect phase is cut short by its timeout still has devices in every region.
    """
    out: list[tuple[str, str]] = []
    for i in range(max(counts.values(), default=0)):
        out.extend((f"probe-{run_id}-{region}-{i:05d}", region) for region, count in counts.items() if i < count)
    return out


class Fleet:
    """Runs devices in this process; implements the DeviceObserver they report to."""

    def __init__(
        self,
        config: DeviceConfig,
        devices: Sequence[tuple[str, str]],
        ledger: Ledger,
        *,
        connect_rate: float = DEFAULT_CONNECT_RATE,
        seed: int | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if len(devices) > MAX_DEVICES_PER_PROCESS:
            raise ValueError(f"one process runs at most {MAX_DEVICES_PER_PROCESS} devices")
        self.config = config
        self.ledger = ledger
        self.connected_by_region: Counter[str] = Counter()
        self.seen: dict[str, set[str]] = {}  # device -> regions it authenticated in
        self.new_seen: list[tuple[str, str]] = []  # (device, region) not yet collected by take_seen
        self.events: list[ReconnectEvent] = []  # completed reconnections, in order
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            verify=tls(), trust_env=False, limits=httpx.Limits(max_connections=32, max_keepalive_connections=32)
        )
        self.dispatcher = Dispatcher(config, self._http)
        experiment = frozenset(config.cohort_devices)
        self._devices = [
            Device(
                dev, home, config, self.dispatcher, self,
                rng=random.Random(self._rng.random()),  # noqa: S311 - reproducible simulation jitter, not security
                via=config.cohort_via if dev in experiment else None,
            )
            for dev, home in devices
        ]  # fmt: skip
        self._by_id = {d.id: d for d in self._devices}
        self._task_of: dict[str, asyncio.Task[None]] = {}
        self._returns: set[asyncio.TimerHandle] = set()
        for dev, home in devices:
            ledger.register(dev, home)
        self._connect_rate = connect_rate
        self._tasks: list[asyncio.Task[None]] = []
        self._ramp: asyncio.Task[None] | None = None
        self._thresholds: tuple[int, int, int] | None = None  # set while frozen (_freeze)
        self.errors: list[str] = []  # devices that crashed: a bug in the probe, never a platform fault

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start bringing devices up (at `connect_rate` per second); returns at once."""
        if self._ramp is None:
            self._ramp = asyncio.create_task(self._ramp_routine(), name="fleet-ramp")

    async def wait_connected(self, within: float) -> bool:
        """Wait until every device has connected once (at most `within` seconds); True if all have."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.ever_connected < len(self._devices):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def stop(self) -> None:
        """Take every device away (idempotent)."""
        for handle in self._returns:
            handle.cancel()
        self._returns.clear()
        tasks = [t for t in (self._ramp, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # device crashes are in self.errors
        self._tasks.clear()
        self._ramp = None
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            gc.unfreeze()
            self._thresholds = None
        if self._own_http:
            await self._http.aclose()

    async def _ramp_routine(self) -> None:
        step = 0.05
        per_step = max(1, round(self._connect_rate * step))
        for i, device in enumerate(self._devices):
            if i and i % per_step == 0:
                await asyncio.sleep(step)
            self._launch(device, "initial")
        if len(self._devices) >= FREEZE_FROM_DEVICES and await self.wait_connected(FREEZE_WAIT_S):
            self._freeze()

    def _freeze(self) -> None:
        """Move the connected fleet out of the garbage collector's sight until stop().

        Thousands of devices are hundreds of thousands of long-lived objects: every full collection
        walked them all (0.8-0.9 s with 5,000 devices in one process, every ~15 s), and every
        delivery in that pause was late. Frozen objects are still freed by reference counting; the
        connections a drain makes later would grow the heap again, so full collections wait too.
        """
        gc.freeze()
        self._thresholds = defer_full_collections()

    def _launch(self, device: Device, cause: Literal["initial", "return"]) -> None:
        task = asyncio.create_task(device.run(cause), name=f"device-{device.id}")
        task.add_done_callback(self._device_done)
        self._tasks.append(task)
        self._task_of[device.id] = task

    # ---- devices away on purpose ----------------------------------------------------------------
    def take_offline(self, devices: Sequence[str], duration: float, *, mode: Literal["drop", "close"]) -> None:
        """Take `devices` off the platform for `duration` seconds, then bring them back.

        `drop` loses the connection abruptly (no close frame: a phone in a tunnel), `close` leaves
        politely (a close frame: the app sent to the background). Away, a device does not reconnect;
        back, it asks the dispatcher like a device that joins. Messages sent meanwhile must reach it
        after it is back, from the platform's offline queue (the ledger's offline class).
        """
        now = time.time()
        loop = asyncio.get_running_loop()
        for dev in devices:
            device = self._by_id[dev]
            task = self._task_of.get(dev)
            if task is None or task.done() or self.ledger.is_away(dev):
                continue
            self.ledger.away(dev, now, now + duration)
            if mode == "drop":
                device.drop()
            task.cancel()
        handle = loop.call_later(duration, self._bring_back, list(devices))
        self._returns.add(handle)

    def return_all(self) -> None:
        """Bring every device that is away on purpose back now (the run is ending)."""
        for handle in self._returns:
            handle.cancel()
        self._returns.clear()
        self._bring_back([dev for dev in self._by_id if self.ledger.is_away(dev)])

    def _bring_back(self, devices: list[str]) -> None:
        for dev in devices:
            task = self._task_of.get(dev)
            if task is not None and task.done() and self.ledger.is_away(dev):
                self._launch(self._by_id[dev], "return")

    @property
    def away(self) -> int:
        """Devices taken offline on purpose and not connected again yet."""
        return sum(1 for dev in self._by_id if self.ledger.is_away(dev))

    def device(self, dev: str) -> Device:
        return self._by_id[dev]

    def _device_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(f"{task.get_name()}: {exc!r}")

    # ---- reading -------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._devices)

    @property
    def online(self) -> int:
        return sum(self.connected_by_region.values())

    @property
    def ever_connected(self) -> int:
        return len(self.seen)

    def stats(self) -> list[DeviceStats]:
        """Per-device stats; a stretch still without a connection is appended as an open event."""
        out = []
        for device in self._devices:
            stats = DeviceStats.from_json(device.stats.to_json())
            pending = device.pending_event()
            if pending is not None:
                stats.events.append(pending)
            out.append(stats)
        return out

    def pending_events(self) -> list[ReconnectEvent]:
        return [e for d in self._devices if (e := d.pending_event()) is not None]

    def take_seen(self) -> list[tuple[str, str]]:
        taken, self.new_seen = self.new_seen, []
        return taken

    def seen_in(self, region: str) -> list[str]:
        return [dev for dev, regions in self.seen.items() if region in regions]

    # ---- DeviceObserver -----------------------------------------------------------------------
    def delivered(self, msg_id: str, device: str, at: float, app: bool) -> None:
        self.ledger.delivered(msg_id, device, at, app=app)

    def connected(self, device: str, region: str, at: float) -> None:
        if self.ledger.is_away(device):
            self.ledger.returned(device, at)
        self.connected_by_region[region] += 1
        regions = self.seen.setdefault(device, set())
        if region not in regions:
            regions.add(region)
            self.new_seen.append((device, region))

    def disconnected(self, device: str, region: str) -> None:
        self.connected_by_region[region] -= 1

    def reconnected(self, event: ReconnectEvent) -> None:
        self.events.append(event)
