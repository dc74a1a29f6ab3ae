"""The sender: pacing without drift, unique ids, ledger records, batches and groups on the wire."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from pushctl.probe.ledger import Ledger
from pushctl.probe.sender import Pacer, Sender

pytestmark = pytest.mark.timeout(30)


def test_pacer_hits_the_rate_exactly_over_uneven_ticks() -> None:
    pacer = Pacer(200.0, start=10.0)
    ticks = [10.0 + t / 1000 for t in range(0, 5001, 13)] + [15.0]
    counts = [pacer.due(t) for t in ticks]
    assert sum(counts) == 1000
    assert max(counts) <= 3  # 13 ms at 200/s: never a burst


def test_pacer_catches_up_after_a_stall_but_never_exceeds_the_total() -> None:
    pacer = Pacer(100.0, start=0.0)
    assert pacer.due(0.0) == 0
    assert pacer.due(0.5) == 50  # the loop stalled: what was due is sent now
    assert pacer.due(0.5) == 0
    assert pacer.due(1.0) == 50


def test_pacer_at_fractional_and_zero_rates() -> None:
    slow = Pacer(0.5, start=0.0)
    assert [slow.due(t) for t in (1.0, 1.99, 2.0, 4.0)] == [0, 0, 1, 1]
    assert Pacer(0.0, start=0.0).due(100.0) == 0
    with pytest.raises(ValueError, match="rate"):
        Pacer(-1.0, start=0.0)


class FakeAccess:
    """An httpx MockTransport handler standing in for the access tier."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.batches: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.auth: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.auth.add(request.headers["authorization"])
        body = json.loads(request.content)
        if request.url.path == "/v1/push/batch":
            self.batches.append(body)
            n = len(body["messages"])
        else:
            assert request.url.path == "/v1/push/group"
            self.groups.append(body)
            n = 1
        if self.status != 200:
            return httpx.Response(self.status)
        return httpx.Response(200, json={"accepted": n, "direct": n - n // 2, "buffered": n // 2, "rejected": 0})


def devices(n: int = 20) -> list[str]:
    return [f"d{i}" for i in range(n)]


async def test_sender_batches_singles_and_records_every_message() -> None:
    access = FakeAccess()
    ledger = Ledger()
    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        sender = Sender("http://access", "tok", devices(), ledger, run_id="r1", rate=100.0, seed=1, http=http)
        await sender.run(duration=0.5)
    messages = [m for b in access.batches for m in b["messages"]]
    assert len(messages) == 50
    assert len({m["id"] for m in messages}) == 50
    assert all(m["id"].startswith("r1-") for m in messages)
    assert len(access.batches) >= 10  # ~every 15 ms, not one big request
    assert access.auth == {"Bearer tok"}
    assert all(m["sent_at"] > 0 and m["device"] in devices() for m in messages)
    assert ledger.summary().sent == 50  # all recorded (and, undelivered here, lost)
    assert sender.stats.messages == 50 and sender.stats.accepted == 50
    assert sender.stats.buffered > 0 and sender.stats.failed_requests == 0


async def test_targets_are_spread_over_all_devices() -> None:
    access = FakeAccess()
    ledger = Ledger()
    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        sender = Sender("http://access", "tok", devices(5), ledger, run_id="r", rate=1000.0, seed=2, http=http)
        await sender.run(duration=0.5)
    per_device = Counter(m["device"] for b in access.batches for m in b["messages"])
    assert set(per_device) == set(devices(5))
    assert min(per_device.values()) > 50


async def test_group_pushes_name_their_devices_and_count_each() -> None:
    access = FakeAccess()
    ledger = Ledger()
    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        sender = Sender(
            "http://access", "tok", devices(), ledger, run_id="r", rate=0.0, group_rate=10.0,
            group_size=4, seed=3, http=http,
        )  # fmt: skip
        await sender.run(duration=0.5)
    assert len(access.groups) == 5
    for group in access.groups:
        assert len(set(group["devices"])) == 4
        assert "region" not in group
    assert ledger.summary().sent == 20
    assert sender.stats.expected == 20 and sender.stats.groups == 5


async def test_region_group_pushes_target_devices_seen_there() -> None:
    access = FakeAccess()
    ledger = Ledger()
    seen = {"north": ["d1", "d2"], "east": ["d3"]}
    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        sender = Sender(
            "http://access", "tok", devices(), ledger, run_id="r", rate=0.0, group_rate=20.0,
            group_target="region", regions=["north", "east"], region_members=seen.__getitem__,
            seed=4, http=http,
        )  # fmt: skip
        await sender.run(duration=0.5)
    assert {g["region"] for g in access.groups} == {"north", "east"}
    assert all("devices" not in g for g in access.groups)
    expected = sum(len(seen[str(g["region"])]) for g in access.groups)
    assert ledger.summary().sent == expected


async def test_pushes_the_platform_answers_it_refused_are_rejected_not_lost() -> None:
    access = FakeAccess(status=503)
    ledger = Ledger()
    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        sender = Sender("http://access", "tok", devices(), ledger, run_id="r", rate=100.0, seed=5, http=http)
        await sender.run(duration=0.3)
    assert sender.stats.failed_requests == sender.stats.requests > 0
    summary = ledger.summary()
    assert (summary.sent, summary.lost, summary.rejected) == (0, 0, 30)  # visibly refused: no loss to hide


async def test_pushes_whose_request_got_no_answer_stay_expected() -> None:
    """No answer: the platform may have taken them, so they must still arrive (here: lost)."""

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    ledger = Ledger()
    async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as http:
        sender = Sender("http://access", "tok", devices(), ledger, run_id="r", rate=100.0, seed=5, http=http)
        await sender.run(duration=0.3)
    assert sender.stats.failed_requests == sender.stats.requests > 0
    summary = ledger.summary()
    assert (summary.sent, summary.lost, summary.rejected) == (30, 30, 0)


async def test_only_the_pushes_named_rejected_are_rejected() -> None:
    def half(request: httpx.Request) -> httpx.Response:
        ids = [m["id"] for m in json.loads(request.content)["messages"]]
        gone = ids[::2]
        n = len(ids)
        body = {"accepted": n - len(gone), "direct": n - len(gone), "buffered": 0, "rejected": len(gone),
                "rejected_ids": gone}  # fmt: skip
        return httpx.Response(200, json=body)

    ledger = Ledger()
    async with httpx.AsyncClient(transport=httpx.MockTransport(half)) as http:
        sender = Sender("http://access", "tok", devices(), ledger, run_id="r", rate=100.0, seed=5, http=http)
        await sender.run(duration=0.3)
    summary = ledger.summary()
    assert summary.rejected == sender.stats.rejected > 0
    assert summary.sent + summary.rejected == 30 and summary.lost == summary.sent


async def test_stop_ends_an_unbounded_sender() -> None:
    access = FakeAccess()
    async with httpx.AsyncClient(transport=httpx.MockTransport(access)) as http:
        sender = Sender("http://access", "tok", devices(), Ledger(), run_id="r", rate=100.0, http=http)
        import asyncio

        task = asyncio.create_task(sender.run(duration=None))
        await asyncio.sleep(0.2)
        sender.stop()
        await asyncio.wait_for(task, 2)
    assert 10 <= sender.stats.messages <= 30
    assert sender.stopped_at is not None and sender.started_at is not None


def test_sender_needs_devices_and_region_members() -> None:
    with pytest.raises(ValueError, match="at least one device"):
        Sender("http://a", "t", [], Ledger(), run_id="r", rate=1.0)
    with pytest.raises(ValueError, match="region"):
        Sender("http://a", "t", ["d"], Ledger(), run_id="r", rate=1.0, group_target="region")
