"""Nothing accepted is dropped silently (issue 14): the dead-letter record, how the bypass sorts what the
gateways answered (retry what nobody took, isolate and dead-letter what they refuse as invalid), the
sink that writes letters before offsets are committed, and how `pushctl status` shows them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, Counter
from pushstack.bypass import BypassConsumer
from pushstack.deadletters import DeadLetterSink, Settled, settle
from pushstack.routing import LogicRouter, PushReply, Refusal

from pushctl import render
from pushctl.actions.status import _dead_letters
from pushctl.contract.api import TOPIC_DEADLETTER, Message, PushBatch
from pushctl.contract.deadletter import DeadLetter, salvage_ids
from pushctl.contract.topology import load_inventory
from pushctl.probe.deadletters import DeadLetterScan, kafka_bootstrap

INV = load_inventory()


def msg(i: str) -> Message:
    return Message(id=i, device=f"dev-{i}", sent_at=1.0, payload="p")


# ---- the record format -------------------------------------------------------------------------------
def test_an_unparseable_record_keeps_its_bytes_and_says_where_it_came_from() -> None:
    raw = b'{"messages": [{"id": "m1", "device": "d"}, {"id": "m2", "sent_at": "soon"}]}'
    letter = DeadLetter.unparseable(raw, topic="buffer", partition=3, offset=42, at=1700.5, detail="x" * 900)
    back = DeadLetter.from_record(letter.value, letter.headers())
    assert back == DeadLetter(raw, "unparseable", "buffer", 3, 42, 1700.5, "x" * 500)
    assert back.kind == "unparseable"
    assert back.ids() == ["m1", "m2"]  # the ids a probe can still count as visibly rejected
    assert {k for k, _ in letter.headers()} == {
        "deadletter.reason", "deadletter.detail", "deadletter.topic",
        "deadletter.partition", "deadletter.offset", "deadletter.at",
    }  # fmt: skip


def test_an_undeliverable_message_is_a_replayable_push_batch() -> None:
    letter = DeadLetter.undeliverable(
        [msg("m7")], "idc1 answered 400", topic="buffer", partition=0, offset=9, at=2.0, detail="invalid body"
    )
    assert letter.reason == "undeliverable: idc1 answered 400" and letter.kind == "undeliverable"
    assert PushBatch.model_validate_json(letter.value).messages == [msg("m7")]
    assert DeadLetter.from_record(letter.value, letter.headers()).ids() == ["m7"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"\xff\xfe\x00", b"[1, 2]", b'{"messages": 7}', b'{"messages": [{"id": 5}, "x", {"id": ""}]}'],
)
def test_salvaging_ids_from_garbage_finds_none_and_never_raises(raw: bytes) -> None:
    assert salvage_ids(raw) == []


def test_a_record_without_the_reason_header_is_not_a_dead_letter() -> None:
    with pytest.raises(ValueError, match="not a dead-letter record"):
        DeadLetter.from_record(b"{}", [("other", b"x")])


# ---- sorting what the gateways answered ---------------------------------------------------------------
def test_settle_retries_what_nobody_took_and_isolates_what_was_refused_as_invalid() -> None:
    part = [msg(str(i)) for i in range(6)]
    reply = PushReply(
        ok=[True, False, False, False, False, False],
        missing=set(),
        refused={
            2: Refusal("idc1", 429, "slow down"),  # not about the message: retry
            3: Refusal("idc2", 401, "token"),  # a wrong token is not an invalid message: retry
            4: Refusal("idc1", 400, "invalid body", batch=3),  # invalid, but which one?
            5: Refusal("idc1", 413, "payload too large", batch=1),  # invalid on its own
        },
    )
    s = settle(part, reply)
    assert s.taken == 1
    assert [m.id for m in s.retry] == ["1", "2", "3"]  # 1: no answer at all (an IDC outage)
    assert [m.id for m in s.suspect] == ["4"] and s.suspect_batch == 3
    assert [(m.id, r.status) for m, r in s.dead] == [("5", 413)]


def test_suspects_are_sent_again_in_requests_half_as_large() -> None:
    s = Settled(suspect=[msg(str(i)) for i in range(5)], suspect_batch=5)
    assert [len(p) for p in s.next_suspect_parts()] == [3, 2]
    s = Settled(suspect=[msg("a"), msg("b")], suspect_batch=2)
    assert [len(p) for p in s.next_suspect_parts()] == [1, 1]


# ---- the bypass forwarding through a real HTTP gateway -------------------------------------------------
class Gateway:
    """A logic gateway that refuses (400) any request holding a `bad` id, and answers 503 to the first
    `down_for` requests (an outage)."""

    def __init__(self, down_for: int = 0) -> None:
        self.down_for = down_for
        self.requests = 0
        self.taken: list[str] = []

    async def push(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.down_for:
            return web.json_response({"error": "down"}, status=503)
        batch = PushBatch.model_validate_json(await request.read())
        if any(m.id.startswith("bad") for m in batch.messages):
            return web.json_response({"error": "invalid body"}, status=400)
        self.taken += [m.id for m in batch.messages]
        return web.json_response({"accepted": len(batch.messages)}, status=202)


async def forward(gateway: Gateway, messages: list[Message]) -> tuple[list[tuple[Message, Refusal]], float]:
    app = web.Application()
    app.router.add_post("/v1/push", gateway.push)
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            bypass = BypassConsumer(INV, "bypass")
            bypass.router = LogicRouter(INV, "token", session=session, timeout=2.0)
            url = str(server.make_url("")).rstrip("/")
            bypass.router.urls = {idc: url for idc in bypass.router.idcs}
            bypass.governor.workers = 2
            async with asyncio.timeout(20):
                dead = await bypass._forward(messages)
            return dead, bypass.m_consumed._value.get()
    finally:
        await server.close()


async def test_one_invalid_message_is_isolated_and_its_neighbours_are_delivered() -> None:
    gateway = Gateway()
    messages = [msg(f"m{i}") for i in range(20)] + [msg("bad-1")] + [msg(f"n{i}") for i in range(11)]
    dead, consumed = await forward(gateway, messages)
    assert [(m.id, r.status, r.batch) for m, r in dead] == [("bad-1", 400, 1)]
    assert consumed == 31 and sorted(gateway.taken) == sorted(m.id for m in messages if m.id != "bad-1")


async def test_an_outage_is_waited_out_and_nothing_is_dead_lettered() -> None:
    gateway = Gateway(down_for=6)  # every gateway answers 503 for a while: retried, then delivered
    messages = [msg(f"m{i}") for i in range(10)]
    dead, consumed = await forward(gateway, messages)
    assert dead == [] and consumed == 10 and sorted(gateway.taken) == sorted(m.id for m in messages)


# ---- the sink: written, counted, logged; retried until Kafka acked ---------------------------------------
class FakeKafka:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.sent: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    async def send_many(
        self, topic: str, records: Sequence[tuple[bytes | None, bytes]], *, headers: Any = None
    ) -> list[bool]:
        if self.fail_first > 0:
            self.fail_first -= 1
            return [False] * len(records)
        self.sent += [(topic, value, list(h)) for (_, value), h in zip(records, headers, strict=True)]
        return [True] * len(records)


async def test_the_sink_retries_until_kafka_acks_then_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    kafka = FakeKafka(fail_first=2)
    counter = Counter("dl_total", "test", ("reason",), registry=CollectorRegistry())
    sink = DeadLetterSink(kafka, counter, retry_s=0.01)  # type: ignore[arg-type]
    letter = DeadLetter.unparseable(b'{"messages": [{"id": "m1"}]}', topic="buffer", partition=1, offset=5, at=3.0)
    await sink.write([letter])
    assert [(t, v) for t, v, _ in kafka.sent] == [(TOPIC_DEADLETTER, letter.value)]
    assert DeadLetter.from_record(kafka.sent[0][1], kafka.sent[0][2]) == letter
    assert counter.labels("unparseable")._value.get() == 1 and sink.written == 1
    assert "dead-lettered unparseable record buffer[1]@5 (1 ids, first 'm1')" in caplog.text


async def test_the_sink_without_letters_sends_nothing() -> None:
    kafka = FakeKafka(fail_first=0)
    sink = DeadLetterSink(kafka, Counter("dl2_total", "t", ("reason",), registry=CollectorRegistry()))  # type: ignore[arg-type]
    await sink.write([])
    assert kafka.sent == []


# ---- what `pushctl status` shows -----------------------------------------------------------------------
def test_status_shows_the_topic_count_beside_the_bypass_counters(capsys: pytest.CaptureFixture[str]) -> None:
    data = _dead_letters(DeadLetterScan(TOPIC_DEADLETTER, 3), {"unparseable": 2.0, "undeliverable": 1.0})
    assert data == {
        "topic": "push-deadletter",
        "records": 3,
        "bypass": {"unparseable": 2.0, "undeliverable": 1.0},
    }
    assert json.loads(json.dumps(data)) == data
    unreachable = _dead_letters({"error": "dead-letter topic via 127.0.0.1:1: TimeoutError"}, None)
    assert unreachable["records"] is None and "TimeoutError" in unreachable["error"]
    render.live_status({"connections": {}, "dead_letters": data})
    out = capsys.readouterr().out
    assert "3 in push-deadletter (bypass since start: unparseable 2, undeliverable 1)" in out


def test_the_reference_inventory_reaches_kafka_through_its_link() -> None:
    assert kafka_bootstrap(INV) == "{}:{}".format(*INV.link_addr("kafka"))


# ---- the probe: a missing push found in the dead-letter topic is rejected, not lost ---------------------
async def test_the_probe_counts_dead_lettered_pushes_as_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from pushctl.probe import probe as probe_mod
    from pushctl.probe.probe import Probe, ProbeOptions

    probe = Probe(INV, ProbeOptions(devices=3, duration=1.0, workers=0))
    device = probe.devices[0][0]
    for msg_id in ("m1", "m2"):
        probe.ledger.sent(msg_id, 100.0, [device])
    assert probe.ledger.summary(final=True).lost == 2  # what the probe says without the topic

    asked: list[float | None] = []

    async def scan(_inv: object, *, since: float | None = None, **_: object) -> DeadLetterScan:
        asked.append(since)
        letters = (
            DeadLetter.unparseable(b'{"messages": [{"id": "m2"}, {"id": "elsewhere"}]}', topic="buffer",
                                   partition=0, offset=1, at=101.0),
        )  # fmt: skip
        return DeadLetterScan(TOPIC_DEADLETTER, 1, letters)

    monkeypatch.setattr(probe_mod, "scan_dead_letters", scan)
    await probe._mark_dead_letters()
    s = probe.ledger.summary(final=True)
    assert (s.lost, s.rejected, s.dead_lettered) == (1, 1, 1) and "elsewhere" not in probe.ledger
    assert asked == [40.0]  # from the run's start, with a minute's slack for clocks
