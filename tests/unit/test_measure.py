"""Experiment probes shown failing: the measures a broken path makes miss, read by the Measurer."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pushctl.contract.topology import load_inventory
from pushctl.experiments.measure import Measurer
from pushctl.experiments.model import DeliveryCheck, MetricCheck, Tolerance
from pushctl.probe.ledger import Ledger

T0 = 1_000.0


class FakeApi:
    """The one call the Measurer makes for metrics: a counter that moves as the test says."""

    def __init__(self, values: list[float | None]) -> None:
        self.values = values

    async def metric_value(self, service: str, metric: str, labels: Any = None) -> float | None:
        return self.values.pop(0)


def measurer(probe: Any, api: Any = None) -> Measurer:
    return Measurer(load_inventory(None), api, probe)


def test_dispatcher_offered_counts_the_answers_that_offered_the_drained_region() -> None:
    answers = [(T0 + 1, ("east", "north")), (T0 + 2, ("south", "east", "north")), (T0 + 3, ("east", "south"))]
    probe = SimpleNamespace(dispatcher_answers=lambda since, until: [a for a in answers if since <= a[0] < until])
    check = DeliveryCheck.model_validate(
        {"measure": "dispatcher_offered", "region": "south", "tolerance": Tolerance(max=0)}
    )
    result = measurer(probe).delivery(check, since=T0, until=T0 + 10, cutoff=T0 + 10)
    assert (result.ok, result.value, result.timing) == (False, 2, False)
    assert "offered south in 2 of 3 answers" in result.detail
    clean = measurer(probe).delivery(check, since=T0, until=T0 + 1.5, cutoff=T0 + 10)
    assert (clean.ok, clean.value) == (True, 0)


async def test_a_delta_check_reads_the_increase_not_the_lifetime_counter() -> None:
    """500 pushes went to the buffer before the method; none during it: the delta check fails."""
    check = MetricCheck(
        metric="pushstack_access_pushes_total", service="access", labels={"path": "buffer"}, delta=True,
        tolerance=Tolerance(min=1),
    )  # fmt: skip
    m = measurer(None, FakeApi([500.0, 500.0]))
    await m.take_baselines([check])
    result = await m.metric(check)
    assert (result.ok, result.value) == (False, 0.0)
    assert "increase of pushstack_access_pushes_total{path=buffer} during the method = 0" in result.detail
    m = measurer(None, FakeApi([500.0, 640.0]))
    await m.take_baselines([check])
    assert (await m.metric(check)).value == 140.0


async def test_a_delta_check_without_a_starting_point_fails_rather_than_guessing() -> None:
    check = MetricCheck(metric="x_total", service="access", delta=True, tolerance=Tolerance(max=0))
    result = await measurer(None, FakeApi([3.0])).metric(check)  # no baseline taken
    assert result.ok is False and "no reading from the start of the method" in result.detail


def test_population_and_kind_filters_read_their_own_rows() -> None:
    ledger = Ledger(deadline=1.0, t0=T0)
    for dev in ("n0", "n1"):
        ledger.register(dev, "north")
    ledger.away("n1", T0 + 1, planned_end=T0 + 3)
    ledger.sent("m1", T0 + 2, ["n0"])
    ledger.sent("m2", T0 + 2, ["n1"])  # to the away device: lost by the offline queue
    ledger.sent("g1", T0 + 2, ["n0"], kind="group")
    ledger.returned("n1", T0 + 3)
    ledger.delivered("m1", "n0", T0 + 2.1)
    ledger.delivered("g1", "n0", T0 + 2.1)
    probe = SimpleNamespace(ledger=ledger)
    m = measurer(probe)

    def read(**kw: Any) -> Any:
        check = DeliveryCheck.model_validate({"measure": "lost", "tolerance": Tolerance(max=0), **kw})
        return m.delivery(check, since=T0, until=T0 + 5, cutoff=T0 + 10)

    assert (read().ok, read().value) == (False, 1)
    assert (read(population="offline").ok, read(population="offline").value) == (False, 1)
    assert (read(population="online").ok, read(kind="group").ok) == (True, True)
    assert read(population="offline").timing is False  # a loss is never a timing finding
