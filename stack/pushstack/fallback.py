"""The storage fallback decision (the seed's option 3), kept pure so it can be tested alone.

The access tier PINGs the cache Redis every ~200 ms and also reports every failed write. One
failure switches to `fallback` at once (detection well within 1 s); `recover_after` successes in a
row switch back to `redis`, so a flapping link does not flip the mode on every probe.

    health = StorageHealth()
    health.observe(ok=False, now=time.time())   # True: the mode changed (now "fallback")
    health.mode                                 # "fallback"
"""

from __future__ import annotations

from typing import Literal

from pushctl.contract.api import StorageMode

Mode = Literal["redis", "fallback"]


class StorageHealth:
    def __init__(self, *, recover_after: int = 2, now: float = 0.0) -> None:
        self.mode: Mode = "redis"
        self.since = now
        self._recover_after = recover_after
        self._ok_streak = 0

    def observe(self, ok: bool, now: float) -> bool:
        """Record one probe or write outcome; True when the mode changed."""
        if not ok:
            self._ok_streak = 0
            return self._switch("fallback", now)
        self._ok_streak += 1
        if self.mode == "fallback" and self._ok_streak >= self._recover_after:
            return self._switch("redis", now)
        return False

    def _switch(self, mode: Mode, now: float) -> bool:
        if self.mode == mode:
            return False
        self.mode = mode
        self.since = now
        return True

    def state(self) -> StorageMode:
        return StorageMode(mode=self.mode, since=self.since)


def carry_inline(mode: Mode, write_failed: bool, inline_fallback: bool) -> bool:
    """Whether single pushes carry their payload inline (instead of a cache reference)."""
    if not inline_fallback:
        return False  # PUSHCTL_INLINE_FALLBACK=0: refs only, even when the cache lost them
    return mode == "fallback" or write_failed
