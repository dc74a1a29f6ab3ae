"""Three verdicts, never two: a loss always fails; timing missed on a rig that could not keep up is
inconclusive (with the reasons); timing missed on a rig that kept up fails."""

from __future__ import annotations

import asyncio

from pushctl.actions.verdict import Finding, judge
from pushctl.probe.rig import RigLimits, RigMonitor, RigSample, rig_trouble

T0 = 1_000.0


def slow_rig(since: float, until: float) -> list[str]:
    return ["the probe's event loop lagged 640 ms (limit 250 ms)"]


def quiet_rig(since: float, until: float) -> list[str]:
    return []


def late(where: str = "during") -> Finding:
    return Finding("delivery_rate >= 99.9", "delivery_rate = 97.2", True, T0, T0 + 5, where)


def lost() -> Finding:
    return Finding("nothing lost over the whole run", "lost 3 of 2000", False, T0, T0 + 30, "whole run")


def test_no_finding_passes_whatever_the_rig_did() -> None:
    assert judge([], slow_rig).verdict == "passed"


def test_timing_missed_on_a_slow_rig_is_inconclusive_with_the_reasons() -> None:
    j = judge([late(), late("after")], slow_rig)
    assert j.verdict == "inconclusive"
    assert j.reasons == ["the probe's event loop lagged 640 ms (limit 250 ms)"]


def test_timing_missed_on_a_rig_that_kept_up_fails() -> None:
    assert judge([late()], quiet_rig).verdict == "failed"


def test_a_loss_is_never_excused_by_a_slow_rig() -> None:
    assert judge([late(), lost()], slow_rig).verdict == "failed"
    assert judge([lost()], slow_rig).verdict == "failed"


def test_one_timing_finding_in_a_window_where_the_rig_kept_up_fails_the_run() -> None:
    def trouble_early_only(since: float, until: float) -> list[str]:
        return ["cpu"] if until <= T0 + 10 else []

    later = Finding("latency_p99_ms <= 1000", "p99 1800", True, T0 + 20, T0 + 23, "after")
    assert judge([late(), later], trouble_early_only).verdict == "failed"


def sample(
    at: float, lag: float = 5.0, delay: float = 10.0, cpu: float | None = 5.0, steal: float | None = 0.0
) -> RigSample:
    return RigSample(at=at, loop_lag_ms=lag, send_delay_ms=delay, cpu_wait_pct=cpu, steal_pct=steal)


def test_rig_trouble_names_each_limit_a_window_broke() -> None:
    limits = RigLimits()
    assert rig_trouble([sample(T0 + i) for i in range(5)], limits) == []
    found = rig_trouble(
        [sample(T0, lag=700), sample(T0 + 1, delay=400), sample(T0 + 2, cpu=95), sample(T0 + 3, cpu=90)], limits
    )
    assert [r.split(" ")[0:3] for r in found] == [
        ["the", "probe's", "event"],
        ["pushes", "waited", "400"],
        ["runnable", "tasks", "waited"],
    ]
    assert rig_trouble([sample(T0, steal=50.0)], limits) == ["the hypervisor stole 50% of the CPU (limit 10%)"]
    assert rig_trouble([], limits) == []


def test_the_monitor_keeps_samples_and_answers_for_a_window() -> None:
    rig = RigMonitor(send_delay_ms=lambda: 0.0)
    rig.samples = [sample(T0 + i) for i in range(10)] + [sample(T0 + 10, lag=900)]
    assert rig.trouble(T0, T0 + 5) == []
    assert rig.trouble(T0 + 8, T0 + 10.5) and "900 ms" in rig.trouble(T0 + 8, T0 + 10.5)[0]


async def test_the_monitor_sees_its_own_event_loop_stall() -> None:
    """The measurement shown to work: block the loop for 0.4 s and the sample says so."""
    rig = RigMonitor(send_delay_ms=lambda: 0.0)
    task = asyncio.create_task(rig.run())
    await asyncio.sleep(0.3)
    import time

    time.sleep(0.4)  # noqa: ASYNC251 - blocking the loop on purpose
    await asyncio.sleep(1.3)
    task.cancel()
    assert rig.samples
    assert max(s.loop_lag_ms for s in rig.samples) >= 350
