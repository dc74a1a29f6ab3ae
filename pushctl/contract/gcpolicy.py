"""Keep CPython's full collections away from processes that hold thousands of connections.

CPython runs a full (generation 2) collection whenever the long-lived heap has grown by a quarter
since the last one, and a full collection walks every tracked object: 0.3-0.9 s with 3,000-6,000
connections in one process. A drained region's devices arriving at a broker (its heap doubling) cost
three such pauses in four seconds, and every delivery through that broker during a pause was late.
Young collections still run as usual (they find most cyclic garbage); reference counting frees the
rest. Long-lived cyclic garbage waits for `collect_fully`, which the owner runs on its own schedule.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

_NEVER = 1 << 30  # young collections between two automatic full ones: never, in practice


def defer_full_collections() -> tuple[int, int, int]:
    """Stop automatic full collections; returns the thresholds to restore."""
    before = gc.get_threshold()
    gc.set_threshold(before[0], before[1], _NEVER)
    return before


def collect_fully(log: logging.Logger) -> float:
    """One full collection now, logged with its pause; returns the pause in seconds."""
    started = time.perf_counter()
    found = gc.collect()
    pause = time.perf_counter() - started
    log.info("full garbage collection: %d unreachable objects, paused %.0f ms", found, pause * 1000)
    return pause


async def full_collection_routine(every_s: float, log: logging.Logger) -> None:
    """A full collection every `every_s` seconds (bounds long-lived cyclic garbage)."""
    while True:
        await asyncio.sleep(every_s)
        collect_fully(log)
