"""Pieces of the experiment runner: stop-condition timing, status paths, exit codes, the spike hook."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from types import SimpleNamespace

import httpx
import pytest

from pushctl.experiments.measure import CheckResult, counts_value, status_value
from pushctl.experiments.model import BlastRadius, Measure, StopDelivery, Tolerance
from pushctl.experiments.run import ExperimentRun, worst_exit
from pushctl.experiments.watch import Watch
from pushctl.probe.ledger import Ledger
from pushctl.probe.sender import Sender

pytestmark = pytest.mark.timeout(30)


def result(ok: bool, value: float, at: float) -> CheckResult:
    return CheckResult("delivery", "delivery", ">= 90", value, ok, f"delivery_rate = {value}", at)


def watch(for_s: float) -> Watch:
    cond = StopDelivery.model_validate({"measure": "delivery_rate", "tolerance": {"min": 90}, "for": for_s})
    return Watch(measurer=None, conditions=[cond], blast=BlastRadius(), deadline=1.0)  # type: ignore[arg-type]


async def test_a_stop_condition_fires_once_broken_for_its_duration() -> None:
    w = watch(1.0)
    state = w.states[0]
    w._update(state, result(False, 50.0, 100.0), 100.0)
    w._update(state, result(False, 40.0, 100.5), 100.5)
    assert not w.fired.is_set()
    w._update(state, result(False, 60.0, 101.0), 101.0)
    assert w.fired.is_set() and w.fired_by is state
    assert state.to_json()["breached_at"] == 100.0 and state.fired_at == 101.0 and state.worst == 40.0


async def test_a_breach_that_recovers_in_time_does_not_fire() -> None:
    w = watch(1.0)
    state = w.states[0]
    w._update(state, result(False, 50.0, 100.0), 100.0)
    w._update(state, result(True, 99.0, 100.5), 100.5)
    w._update(state, result(False, 50.0, 101.0), 101.0)
    w._update(state, result(False, 50.0, 101.5), 101.5)
    assert not w.fired.is_set()
    w._update(state, result(False, 50.0, 102.0), 102.0)
    assert w.fired.is_set() and state.first_breach_at == 100.0


async def test_the_blast_radius_is_watched_like_a_stop_condition() -> None:
    w = Watch(measurer=None, conditions=[], blast=BlastRadius(devices=40), deadline=1.0)  # type: ignore[arg-type]
    assert [s.name for s in w.states] == ["blast radius: at most 40% of devices offline"]
    assert BlastRadius.model_validate({"devices": "40%"}).devices == 40.0


def test_status_paths() -> None:
    data = {"storage": {"mode": "redis"}, "policies": [{"region": "south"}], "routing": {"weights": {"idc1": 50.0}}}
    assert status_value(data, "storage.mode") == "redis"
    assert status_value(data, "policies") == 1
    assert status_value(data, "policies.0.region") == "south"
    assert status_value(data, "routing.weights.idc1") == 50.0
    assert status_value(data, "storage.nope") is None


def test_measures_read_from_the_ledger() -> None:
    ledger = Ledger(deadline=1.0)
    ledger.register("d1", "north")
    for i in range(4):
        ledger.sent(f"m{i}", 100.0 + i, ["d1"])
    ledger.delivered("m0", "d1", 100.1)
    ledger.delivered("m1", "d1", 103.0)  # late
    ledger.delivered("m2", "d1", 102.2)
    summary = ledger.summary(cutoff=110.0)
    assert counts_value(summary, Measure.DELIVERY_RATE) == 50.0
    assert counts_value(summary, Measure.LOST) == 1 and counts_value(summary, Measure.LATE) == 1
    assert counts_value(summary, Measure.LATENCY_P99_MS) == 2000.0  # the late one
    assert not Tolerance(max=1000).holds(counts_value(summary, Measure.LATENCY_P99_MS))


def test_the_most_severe_exit_code_wins() -> None:
    assert worst_exit([]) == 0
    assert worst_exit([0, 1, 0]) == 1
    assert worst_exit([1, 4, 0]) == 4
    assert worst_exit([4, 7, 130]) == 7
    assert worst_exit([1, 130]) == 130


async def test_the_sender_changes_rate_on_the_fly_without_a_burst() -> None:
    """Judged on the sender's own send stamps, so a busy machine delaying requests cannot fail it."""
    batches: list[tuple[float, int]] = []  # (send stamp of the batch, pushes in it)

    def handler(request: httpx.Request) -> httpx.Response:
        messages = json.loads(request.content)["messages"]
        batches.append((messages[0]["sent_at"], len(messages)))
        n = len(messages)
        return httpx.Response(200, json={"accepted": n, "direct": n, "buffered": 0, "rejected": 0})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        sender = Sender("http://access", "t", ["d1", "d2"], Ledger(), run_id="r", rate=100.0, http=http)
        task = asyncio.create_task(sender.run(None))
        await asyncio.sleep(0.5)
        spike_at = time.time()
        sender.set_rate(1000.0)
        assert sender.rate == 1000.0
        await asyncio.sleep(0.5)
        calm_at = time.time()
        sender.set_rate(100.0)
        await asyncio.sleep(0.3)
        sender.stop()
        await task
    assert sender.started_at is not None
    batches.sort()
    before = sum(n for at, n in batches if at < spike_at)
    during = sum(n for at, n in batches if spike_at <= at < calm_at)
    assert sender.stopped_at is not None
    planned = 100 * (spike_at - sender.started_at) + 1000 * (calm_at - spike_at) + 100 * (sender.stopped_at - calm_at)
    sent = sum(n for _, n in batches)
    assert abs(sent - planned) <= 15, (before, during, sent, planned)  # never drifts from the plan
    assert during >= 0.9 * 1000 * (calm_at - spike_at) - 10, during  # the new rate, from the change on
    # no catch-up burst at the change: a batch holds what the rate allows since the previous one
    # (after a stall of the event loop the pacer catches up, in proportion to the stall, never more)
    gaps = [(at - prev, n) for (prev, _), (at, n) in itertools.pairwise(batches)]
    assert all(n <= 1000 * gap + 2 for gap, n in gaps), max(gaps, key=lambda g: g[1] - 1000 * g[0])
    with pytest.raises(ValueError, match="rate"):
        sender.set_rate(-1)


class _Platform:
    """The two reads the left-behind check makes, answering from a script of states."""

    def __init__(self, states: list[tuple[list[tuple[str, str]], str]]) -> None:
        self.states = states

    def _now(self) -> tuple[list[tuple[str, str]], str]:
        return self.states[0] if len(self.states) == 1 else self.states.pop(0)

    async def policies(self) -> SimpleNamespace:
        return SimpleNamespace(policies=[SimpleNamespace(origin=o, region=r) for o, r in self._now()[0]])

    async def storage(self) -> SimpleNamespace:
        return SimpleNamespace(mode=self.states[0][1])


def left_behind_run(states: list[tuple[list[tuple[str, str]], str]]) -> ExperimentRun:
    run = object.__new__(ExperimentRun)
    run.api = _Platform(states)  # type: ignore[assignment]
    run._start_state = (frozenset(), "redis")
    run.findings = []
    run.journal = SimpleNamespace(phase=lambda _name: None)  # type: ignore[assignment]
    run.exp = SimpleNamespace(title="t")  # type: ignore[assignment]
    run.log = lambda _msg: None
    return run


async def test_an_auto_drain_the_scheduler_never_withdraws_is_the_runs_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pushctl.experiments.run.LEFT_BEHIND_TIMEOUT_S", 1.2)
    run = left_behind_run([([("auto", "south")], "redis")])
    await run._check_left_behind()
    [finding] = run.findings
    assert not finding.timing and "auto drain of south never withdrawn" in finding.detail


async def test_what_the_platform_undoes_by_itself_in_time_is_no_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pushctl.experiments.run.LEFT_BEHIND_TIMEOUT_S", 3.0)
    run = left_behind_run([([("auto", "south")], "fallback"), ([], "redis")])
    await run._check_left_behind()
    assert run.findings == []
