"""The buffer path's arithmetic: token bucket, rate meter, and the fixed/auto direct limiter."""

from __future__ import annotations

import pytest
from pushstack.throttle import DirectLimiter, RateMeter, TokenBucket

from pushctl.contract.api import Throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_bucket_grants_its_burst_then_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=100, clock=clock)
    assert bucket.take(500) == 100
    assert bucket.take(1) == 0
    clock.now += 0.05
    assert bucket.take(500) == 50
    assert bucket.wait_time(10) == pytest.approx(0.01)


def test_rate_meter_measures_and_decays() -> None:
    clock = FakeClock()
    meter = RateMeter(window=1.0, alpha=1.0, clock=clock)
    for _ in range(10):
        meter.add(300)
        clock.now += 0.1
    clock.now += 0.01  # close the window
    assert 2_900 < meter.rate < 3_100
    clock.now += 5
    assert meter.rate < 1_000


def test_off_admits_everything() -> None:
    limiter = DirectLimiter(Throttle(mode="off"), clock=FakeClock())
    assert limiter.admit(10_000) == 10_000


def test_fixed_limits_to_its_rate() -> None:
    clock = FakeClock()
    limiter = DirectLimiter(Throttle(mode="fixed", limit_per_s=1000), clock=clock)
    admitted = 0
    for _ in range(100):  # 10 s at 3000/s offered
        admitted += limiter.admit(300)
        clock.now += 0.1
    assert 9_500 < admitted < 10_500


def test_fixed_zero_sends_everything_to_the_buffer() -> None:
    limiter = DirectLimiter(Throttle(mode="fixed", limit_per_s=0), clock=FakeClock())
    assert limiter.admit(500) == 0


def test_auto_engages_above_the_threshold_and_lifts_below_it() -> None:
    clock = FakeClock()
    limiter = DirectLimiter(Throttle(mode="auto", safe_load_per_s=1000, threshold=0.8), clock=clock)
    # 2000/s offered: over 800/s, so the direct path gets limited
    for _ in range(30):
        limiter.admit(200)
        clock.now += 0.1
        limiter.observe(downstream_load=0)
    assert limiter.engaged
    admitted = 0
    for _ in range(10):
        admitted += limiter.admit(200)
        clock.now += 0.1
        limiter.observe(0)
    assert admitted < 1_200
    # load falls to 300/s: the limit lifts
    for _ in range(40):
        limiter.admit(30)
        clock.now += 0.1
        limiter.observe(0)
    assert not limiter.engaged
    assert limiter.admit(500) == 500


def test_auto_engages_on_the_gateways_reported_load() -> None:
    limiter = DirectLimiter(Throttle(mode="auto", safe_load_per_s=1000, threshold=0.8), clock=FakeClock())
    limiter.observe(downstream_load=900)
    assert limiter.engaged


def test_bypass_governor_backs_off_when_busy_and_grows_with_a_backlog() -> None:
    from pushstack.bypass import CpuGovernor

    gov = CpuGovernor(min_workers=1, max_workers=4, cpu_target=0.5, system_max=1.0, max_rate=10_000)
    start = gov.rate
    for _ in range(10):
        gov.update(cpu=0.1, system=0.5, backlog=1_000)
    assert gov.workers == 4
    assert gov.rate > start
    high = gov.rate
    gov.update(cpu=0.9, system=0.5, backlog=1_000)
    assert gov.rate < high and gov.workers == 3
    for _ in range(10):
        gov.update(cpu=0.1, system=0.5, backlog=0)
    assert gov.workers == 1


def test_bypass_governor_can_also_watch_the_whole_machine() -> None:
    from pushstack.bypass import CpuGovernor

    gov = CpuGovernor(min_workers=1, max_workers=4, cpu_target=0.5, system_max=0.9, max_rate=10_000)
    start = gov.rate
    gov.update(cpu=0.1, system=0.95, backlog=1_000)
    assert gov.rate < start
