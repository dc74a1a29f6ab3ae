"""A prober worker process: runs one shard of devices and streams its partial ledger to the parent.

    python -m pushctl.probe.worker      # started by pushctl.probe.shards.WorkerShard, never by hand

Protocol (JSON lines). The parent writes one `Setup` line on stdin, then `{"cmd": "stop"}` (or just
closes stdin: a parent that dies takes its workers with it). Every `flush_s` the worker writes an
`update` line on stdout: the deliveries seen since the last update as a partial ledger (the parent
merges it: merging is exact), connections per region, regions newly seen per device and completed
reconnections. On stop it writes a last `update`, then `{"type": "final", "stats": [...]}`.
Nothing else may be written on stdout; diagnostics go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

import uvloop

from pushctl.probe._tasks import cancel_and_wait
from pushctl.probe.device import DeviceConfig
from pushctl.probe.fleet import DEFAULT_CONNECT_RATE, Fleet
from pushctl.probe.ledger import Ledger

FLUSH_S = 0.2


def setup_line(
    config: DeviceConfig,
    devices: list[tuple[str, str]],
    *,
    deadline: float,
    connect_rate: float = DEFAULT_CONNECT_RATE,
    seed: int | None = None,
    flush_s: float = FLUSH_S,
) -> bytes:
    setup = {
        "config": config.to_json(),
        "devices": devices,
        "deadline": deadline,
        "connect_rate": connect_rate,
        "seed": seed,
        "flush_s": flush_s,
    }
    return json.dumps(setup).encode() + b"\n"


class _Worker:
    def __init__(self, setup: dict[str, Any], write: Callable[[dict[str, Any]], None]) -> None:
        self.deadline = float(setup["deadline"])
        self.flush_s = float(setup.get("flush_s", FLUSH_S))
        self.fleet = Fleet(
            DeviceConfig.from_json(setup["config"]),
            [(str(d), str(h)) for d, h in setup["devices"]],
            Ledger(deadline=self.deadline),
            connect_rate=float(setup.get("connect_rate", DEFAULT_CONNECT_RATE)),
            seed=setup.get("seed"),
        )
        self.write = write
        self._events_sent = 0

    def flush(self) -> None:
        fleet = self.fleet
        delta, fleet.ledger = fleet.ledger, Ledger(deadline=self.deadline)
        events = fleet.events[self._events_sent :]
        self._events_sent += len(events)
        self.write(
            {
                "type": "update",
                "ledger": delta.to_wire(),
                "connected": dict(fleet.connected_by_region),
                "ever_connected": fleet.ever_connected,
                "seen": fleet.take_seen(),
                "events": [e.to_json() for e in events],
            }
        )

    async def run(self, stop: asyncio.Event) -> None:
        await self.fleet.start()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.flush_s):
                        await stop.wait()
                self.flush()
        finally:
            await self.fleet.stop()
            self.flush()
            stats = [s.to_json() for s in self.fleet.stats()]
            self.write({"type": "final", "stats": stats, "errors": self.fleet.errors})


def _write(msg: dict[str, Any]) -> None:
    sys.stdout.buffer.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
    sys.stdout.buffer.flush()


async def _stdin_routine(reader: asyncio.StreamReader, stop: asyncio.Event) -> None:
    while True:
        line = await reader.readline()
        if not line or json.loads(line).get("cmd") == "stop":
            stop.set()
            return


async def _main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    first = await reader.readline()
    if not first:
        return 2
    worker = _Worker(json.loads(first), _write)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    watcher = asyncio.create_task(_stdin_routine(reader, stop), name="worker-stdin")
    try:
        await worker.run(stop)
    finally:
        await cancel_and_wait(watcher)
    return 0


def main() -> None:
    # Ctrl-C reaches the whole process group: the parent decides when its workers stop
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a worker is thousands of sockets on one loop: uvloop's transports cost less CPU per frame,
    # and this process shares the machine with the platform it measures
    sys.exit(uvloop.run(_main()))


if __name__ == "__main__":
    main()
