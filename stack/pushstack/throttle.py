"""Rate arithmetic for the access tier's buffer path and the bypass consumer: pure, clock injected.

- `TokenBucket` grants at most `rate` items per second (with a burst), the rest is "over".
- `RateMeter` measures a recent rate (per-second windows, smoothed).
- `DirectLimiter` turns a `Throttle` setting and the measured load into how many of `n` pushes
  may take the direct path now; the others go to the Kafka buffer.

    limiter = DirectLimiter(Throttle(mode="fixed", limit_per_s=1000))
    direct = limiter.admit(250)      # <= 250; 250 - direct go to the buffer
"""

from __future__ import annotations

import time
from collections.abc import Callable

from pushctl.contract.api import Throttle

Clock = Callable[[], float]


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst if burst is not None else (max(rate * 0.25, 1.0) if rate > 0 else 0.0)
        self._tokens = self.burst
        self._at = clock()

    def take(self, n: int) -> int:
        """Take up to `n` tokens; returns how many were granted."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        granted = min(n, int(self._tokens + 1e-9))  # 0.05 s * 1000/s is 49.999...
        self._tokens -= granted
        return max(granted, 0)

    def wait_time(self, n: int) -> float:
        """Seconds until `n` tokens would be available (0 when they are)."""
        now = self._clock()
        tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        missing = min(n, self.burst) - tokens
        return 0.0 if missing <= 0 or self.rate <= 0 else missing / self.rate


class RateMeter:
    """Events per second over the last completed window, smoothed (EWMA)."""

    def __init__(self, window: float = 1.0, alpha: float = 0.5, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._window = window
        self._alpha = alpha
        self._start = clock()
        self._count = 0
        self._rate = 0.0

    def add(self, n: int = 1) -> None:
        self._roll()
        self._count += n

    @property
    def rate(self) -> float:
        self._roll()
        return self._rate

    def _roll(self) -> None:
        now = self._clock()
        elapsed = now - self._start
        if elapsed < self._window:
            return
        current = self._count / elapsed
        # whole windows without events decay the rate towards 0
        idle = int(elapsed // self._window) - 1
        self._rate = self._alpha * current + (1 - self._alpha) * self._rate * (1 - self._alpha) ** idle
        self._start = now
        self._count = 0


class DirectLimiter:
    """How much of the offered load may take the direct path under a `Throttle` setting.

    - off: everything is direct.
    - fixed: a token bucket at `limit_per_s`.
    - auto: engaged when the load (the offered direct rate, or the logic gateways' reported rate)
      passes `threshold * safe_load_per_s`; then a bucket at that rate. It lifts when the offered
      rate falls under 90 % of it (hysteresis, so it does not flap at the boundary).
    """

    RELEASE = 0.9

    def __init__(self, setting: Throttle | None = None, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.offered = RateMeter(clock=clock)
        self.engaged = False
        self.setting = setting or Throttle()
        self._bucket: TokenBucket | None = None
        self.configure(self.setting)

    def configure(self, setting: Throttle) -> None:
        self.setting = setting
        self.engaged = False
        self._bucket = None
        if setting.mode == "fixed" and setting.limit_per_s is not None:
            self._bucket = TokenBucket(setting.limit_per_s, clock=self._clock)
            self.engaged = True

    @property
    def auto_limit(self) -> float:
        return self.setting.threshold * self.setting.safe_load_per_s

    def observe(self, downstream_load: float) -> None:
        """Feed the latest downstream load (messages/s); only `auto` mode uses it."""
        if self.setting.mode != "auto":
            return
        limit = self.auto_limit
        load = max(self.offered.rate, downstream_load)
        if not self.engaged and load > limit:
            self.engaged = True
            self._bucket = TokenBucket(limit, clock=self._clock)
        elif self.engaged and self.offered.rate < self.RELEASE * limit:
            self.engaged = False
            self._bucket = None

    def admit(self, n: int) -> int:
        """How many of `n` pushes go direct now (the rest go to the buffer)."""
        self.offered.add(n)
        if self.setting.mode == "off":
            return n
        if self.setting.mode == "fixed" and self.setting.limit_per_s is None:
            return n
        if self._bucket is None:
            return n
        return self._bucket.take(n)
