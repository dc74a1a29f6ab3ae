"""The parent's side of a sharded prober: one `WorkerShard` per `python -m pushctl.probe.worker`.

Each worker runs its own devices (at most 8,000: one process holds at most 20,000 descriptors) and
streams its partial ledger; the shard merges every update into the parent's ledger as it arrives.
`stop()` asks the worker to finish, waits for its last update and kills it if it does not answer;
`kill()` is the synchronous last resort for `finally` blocks and signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections import Counter, deque
from typing import Any

from pushctl.errors import PushctlError
from pushctl.probe.device import DeviceConfig, DeviceStats, ReconnectEvent
from pushctl.probe.fleet import MAX_DEVICES_PER_PROCESS
from pushctl.probe.ledger import Ledger
from pushctl.probe.worker import setup_line

_LINE_LIMIT = 256 * 1024 * 1024


class WorkerShard:
    """One worker process and what it reported so far."""

    def __init__(
        self,
        index: int,
        config: DeviceConfig,
        devices: list[tuple[str, str]],
        ledger: Ledger,
        *,
        connect_rate: float,
        seed: int | None = None,
    ) -> None:
        if len(devices) > MAX_DEVICES_PER_PROCESS:
            raise ValueError(f"a worker runs at most {MAX_DEVICES_PER_PROCESS} devices")
        self.index = index
        self.size = len(devices)
        self.connected_by_region: Counter[str] = Counter()
        self.ever_connected = 0
        self.seen: dict[str, set[str]] = {}
        self.events: list[ReconnectEvent] = []
        self.stats: list[DeviceStats] = []
        self.error: str | None = None
        self._ledger = ledger
        self._setup = setup_line(config, devices, deadline=ledger.deadline, connect_rate=connect_rate, seed=seed)
        self._proc: asyncio.subprocess.Process | None = None
        self._final = asyncio.Event()
        self._stderr: deque[str] = deque(maxlen=20)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pushctl.probe.worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        assert self._proc.stdin is not None  # noqa: S101 - we asked for a pipe
        self._proc.stdin.write(self._setup)
        await self._proc.stdin.drain()
        self._tasks = [
            asyncio.create_task(self._stdout_routine(), name=f"shard-{self.index}-stdout"),
            asyncio.create_task(self._stderr_routine(), name=f"shard-{self.index}-stderr"),
        ]

    @property
    def online(self) -> int:
        return sum(self.connected_by_region.values())

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    async def stop(self, within: float = 15.0) -> None:
        """Ask the worker to finish and collect its final stats; kill it if it does not."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.returncode is None and proc.stdin is not None and not proc.stdin.is_closing():
                with contextlib.suppress(ConnectionError):
                    proc.stdin.write(b'{"cmd": "stop"}\n')
                    await proc.stdin.drain()
                    proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._final.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5.0):
                    await proc.wait()
        finally:
            self.kill()
            with contextlib.suppress(ProcessLookupError):
                await proc.wait()
            if self._tasks:  # they end at EOF, which the kill guarantees
                await asyncio.wait(self._tasks)
        if not self._final.is_set() and self.error is None:
            self.error = f"worker {self.index} did not finish in {within:.0f}s"

    def kill(self) -> None:
        """Kill the worker process now if it still runs (safe to call any time)."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def check(self) -> None:
        """Raise if the worker failed: its devices' numbers would be meaningless."""
        if self.error is not None:
            raise PushctlError(f"probe worker {self.index} failed: {self.error}")

    # ---- reading the worker --------------------------------------------------------------------
    async def _stdout_routine(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None  # noqa: S101 - narrows the type for mypy; guaranteed by the caller
        while line := await self._proc.stdout.readline():
            self._apply(json.loads(line))
        if not self._final.is_set():
            await self._proc.wait()
            tail = " | ".join(self._stderr) or "no output"
            self.error = f"exited with {self._proc.returncode} before finishing: {tail}"

    async def _stderr_routine(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None  # noqa: S101 - narrows the type for mypy; guaranteed by the caller
        while line := await self._proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())

    def _apply(self, msg: dict[str, Any]) -> None:
        if msg.get("type") == "final":
            self.stats = [DeviceStats.from_json(s) for s in msg["stats"]]
            if msg.get("errors"):
                self.error = f"{len(msg['errors'])} devices crashed, first: {msg['errors'][0]}"
            self._final.set()
            return
        self._ledger.merge(Ledger.from_wire(msg["ledger"]))
        self.connected_by_region = Counter({r: int(n) for r, n in msg["connected"].items()})
        self.ever_connected = int(msg["ever_connected"])
        for device, region in msg["seen"]:
            self.seen.setdefault(device, set()).add(region)
        self.events.extend(ReconnectEvent.from_json(e) for e in msg["events"])
