"""The rig watches itself: was the probe (and the machine it runs on) able to keep up?

A chaos gate must tell a slow platform from a slow test rig. While the probe runs, `RigMonitor`
samples, every second:

- `loop_lag_ms`: how late the probe's own event loop woke up (a 50 ms tick, worst of the second):
  a late loop reads pushes late, so they look late;
- `send_delay_ms`: how late, against the send plan, the worst request of the second left (a late
  loop, or the sender's in-flight limit holding requests back);
- `cpu_wait_pct`: the share of the second in which runnable tasks waited for a CPU (Linux PSI,
  `/proc/pressure/cpu` "some"), and `steal_pct`: CPU time the hypervisor took (`/proc/stat`).

`trouble(since, until)` names every limit a window broke; a verdict that failed only on timing
(lateness, latency, pace) in such a window is *inconclusive*, never *failed* (and never passed):
see `pushctl.actions.verdict`. A loss is never excused.

    rig = RigMonitor(send_delay_ms=sender.delay_ms)
    task = asyncio.create_task(rig.run())
    rig.trouble(t0, t1)   # -> ["the probe's event loop lagged 640 ms (limit 250 ms)", ...]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TICK_S = 0.05
PSI_CPU = Path("/proc/pressure/cpu")
PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class RigLimits:
    """Beyond these, the rig (not the platform) may be why a timing check failed."""

    loop_lag_ms: float = 250.0
    send_delay_ms: float = 250.0
    cpu_wait_pct: float = 40.0  # mean over the window
    steal_pct: float = 10.0  # mean over the window


@dataclass(frozen=True)
class RigSample:
    at: float  # epoch seconds at the end of the sampled second
    loop_lag_ms: float
    send_delay_ms: float
    cpu_wait_pct: float | None
    steal_pct: float | None

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def read_psi_total() -> int | None:
    """Microseconds some task waited for a CPU since boot (None without PSI)."""
    try:
        for line in PSI_CPU.read_text().splitlines():
            if line.startswith("some "):
                return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def read_cpu_times() -> tuple[int, int] | None:
    """(total, steal) jiffies of all CPUs since boot (None without /proc/stat)."""
    try:
        fields = PROC_STAT.read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
    except (OSError, ValueError):
        return None
    steal = values[7] if len(values) > 7 else 0
    return sum(values[:8]), steal


class RigMonitor:
    """Samples the rig's health every second while `run()` runs; keeps every sample."""

    def __init__(
        self,
        *,
        send_delay_ms: Callable[[], float] | None = None,
        limits: RigLimits | None = None,
        tick_s: float = TICK_S,
    ) -> None:
        self.limits = limits or RigLimits()
        self.samples: list[RigSample] = []
        self._send_delay_ms = send_delay_ms
        self._tick = tick_s

    def attach_sender(self, send_delay_ms: Callable[[], float]) -> None:
        self._send_delay_ms = send_delay_ms

    async def run(self) -> None:
        """Sample until cancelled."""
        loop = asyncio.get_running_loop()
        psi, cpu = read_psi_total(), read_cpu_times()
        second_start = loop.time()
        wall_start = time.time()
        lag = 0.0
        while True:
            before = loop.time()
            await asyncio.sleep(self._tick)
            lag = max(lag, loop.time() - before - self._tick)
            now = loop.time()
            if now - second_start < 1.0:
                continue
            psi2, cpu2 = read_psi_total(), read_cpu_times()
            elapsed = now - second_start
            cpu_wait = None if psi is None or psi2 is None else min(100.0, (psi2 - psi) / 1e6 / elapsed * 100)
            steal = None
            if cpu is not None and cpu2 is not None and cpu2[0] > cpu[0]:
                steal = (cpu2[1] - cpu[1]) * 100.0 / (cpu2[0] - cpu[0])
            delay = self._send_delay_ms() if self._send_delay_ms is not None else 0.0
            self.samples.append(
                RigSample(
                    at=wall_start + elapsed,
                    loop_lag_ms=lag * 1000,
                    send_delay_ms=delay,
                    cpu_wait_pct=cpu_wait,
                    steal_pct=steal,
                )
            )
            psi, cpu, lag = psi2, cpu2, 0.0
            second_start, wall_start = now, time.time()

    def window(self, since: float, until: float) -> list[RigSample]:
        """Samples whose second overlaps [since, until]."""
        return [s for s in self.samples if s.at > since and s.at - 1.0 < until]

    def trouble(self, since: float, until: float) -> list[str]:
        """Every rig limit broken in [since, until]; empty when the rig kept up."""
        return rig_trouble(self.window(since, until), self.limits)


def rig_trouble(samples: list[RigSample], limits: RigLimits) -> list[str]:
    """Pure: the reasons, if any, why these samples say the rig could not keep up."""
    if not samples:
        return []
    out: list[str] = []
    lag = max(s.loop_lag_ms for s in samples)
    if lag > limits.loop_lag_ms:
        out.append(f"the probe's event loop lagged {lag:.0f} ms (limit {limits.loop_lag_ms:.0f} ms)")
    delay = max(s.send_delay_ms for s in samples)
    if delay > limits.send_delay_ms:
        out.append(f"pushes waited {delay:.0f} ms in the sender before leaving (limit {limits.send_delay_ms:.0f} ms)")
    waits = [s.cpu_wait_pct for s in samples if s.cpu_wait_pct is not None]
    if waits and sum(waits) / len(waits) > limits.cpu_wait_pct:
        out.append(
            f"runnable tasks waited for a CPU {sum(waits) / len(waits):.0f}% of the time "
            f"(limit {limits.cpu_wait_pct:.0f}%; the machine is overloaded)"
        )
    steals = [s.steal_pct for s in samples if s.steal_pct is not None]
    if steals and sum(steals) / len(steals) > limits.steal_pct:
        out.append(f"the hypervisor stole {sum(steals) / len(steals):.0f}% of the CPU (limit {limits.steal_pct:.0f}%)")
    return out
