"""Hardening, each shown on the input that broke it (issue: hardening): validation at the edge, a
supervisor for every background routine, policy versions from the future, bounded CLI inputs, one
error boundary, and a router that does not mistake a bad request for a dead gateway."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pushstack.policy_watch import PolicyFollower
from pushstack.routing import LogicRouter
from pushstack.service import PushService
from pydantic import ValidationError

from pushctl.contract.api import MAX_ID, MAX_PAYLOAD, GroupPush, Message, PolicySet, SinglePush, Throttle
from pushctl.contract.topology import load_inventory
from tests.helpers import run_main

INV = load_inventory()


# ---- validation at the edge ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sent_at", math.nan),
        ("sent_at", math.inf),
        ("sent_at", -1.0),
        ("id", ""),
        ("id", "x" * (MAX_ID + 1)),
        ("device", ""),
        ("payload", "p" * (MAX_PAYLOAD + 1)),
    ],
    ids=["NaN", "Infinity", "negative", "empty-id", "long-id", "empty-device", "big-payload"],
)
def test_a_push_the_platform_could_not_deliver_is_refused_at_the_door(field: str, value: Any) -> None:
    good: dict[str, Any] = {"id": "m1", "device": "d1", "payload": "p", "sent_at": 1.0}
    SinglePush.model_validate(good)
    with pytest.raises(ValidationError):
        SinglePush.model_validate({**good, field: value})
    with pytest.raises(ValidationError):
        Message.model_validate({**good, field: value})


def test_a_group_push_names_its_audience_once() -> None:
    with pytest.raises(ValidationError, match="exactly one of devices or region"):
        GroupPush(id="g", payload="p", sent_at=1.0)
    with pytest.raises(ValidationError, match="exactly one of devices or region"):
        GroupPush(id="g", payload="p", sent_at=1.0, devices=["d"], region="south")
    with pytest.raises(ValidationError):
        GroupPush(id="g", payload="p", sent_at=1.0, devices=[])
    assert GroupPush(id="g", payload="p", sent_at=1.0, region="south").region == "south"


def test_throttle_and_policy_numbers_are_bounded() -> None:
    with pytest.raises(ValidationError):
        Throttle(mode="auto", safe_load_per_s=-1)
    with pytest.raises(ValidationError):
        Throttle(mode="fixed", limit_per_s=math.inf)
    with pytest.raises(ValidationError):
        PolicySet(version=-5, policies=[])


class Echo(PushService):
    kind: ClassVar[str] = "access"

    def routes(self) -> None:
        self.control("POST", "/v1/push/single", self._single)

    async def _single(self, request: web.Request) -> web.Response:
        push = await self.body(request, SinglePush)
        return web.json_response({"id": push.id})


@pytest.fixture
async def echo() -> Any:
    svc = Echo(INV, "access")
    async with TestClient(TestServer(svc.app)) as client:
        yield client, {"Authorization": f"Bearer {INV.token}"}


async def test_the_edge_answers_415_413_and_400_with_the_reason(echo: Any) -> None:
    client, auth = echo
    good = {"id": "m1", "device": "d1", "payload": "p", "sent_at": 1.0}
    assert (await client.post("/v1/push/single", json=good, headers=auth)).status == 200
    resp = await client.post("/v1/push/single", data=json.dumps(good), headers={**auth, "Content-Type": "text/plain"})
    assert resp.status == 415 and "application/json" in (await resp.json())["error"]
    resp = await client.post("/v1/push/single", json={**good, "payload": "p" * (MAX_PAYLOAD + 1)}, headers=auth)
    assert resp.status == 413 and str(MAX_PAYLOAD) in (await resp.json())["error"]
    nan = json.dumps(good).replace("1.0", "NaN")
    resp = await client.post("/v1/push/single", data=nan, headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 400


# ---- supervised routines ---------------------------------------------------------------------------
class Flaky(PushService):
    kind: ClassVar[str] = "access"
    runs = 0

    async def _flaky_routine(self) -> None:
        Flaky.runs += 1
        if Flaky.runs == 1:
            raise TimeoutError("Redis went away at the wrong moment")
        await asyncio.sleep(3600)


async def test_a_crashed_routine_is_restarted_and_healthz_says_so_meanwhile(caplog: pytest.LogCaptureFixture) -> None:
    """The access tier's storage routine once died for good on one Redis timeout."""
    svc = Flaky(INV, "access")
    Flaky.runs = 0
    svc.spawn(svc._flaky_routine, "_flaky_routine")
    async with TestClient(TestServer(svc.app)) as client:
        await asyncio.sleep(0.1)
        health = await (await client.get("/healthz")).json()
        assert health["status"] == "degraded" and "routine _flaky_routine" in health["detail"]
        await asyncio.sleep(0.8)  # the first backoff is 0.5 s
        assert Flaky.runs == 2
        assert (await (await client.get("/healthz")).json())["status"] == "ok"
        metrics = await (await client.get("/metrics")).text()
        assert 'pushstack_routine_restarts_total{routine="_flaky_routine"} 1.0' in metrics
    await svc.stop()
    assert "routine _flaky_routine crashed" in caplog.text


# ---- policy versions from the future ---------------------------------------------------------------
class Follower(PushService):
    kind: ClassVar[str] = "broker"

    def __init__(self) -> None:
        super().__init__(INV, "broker-south")
        self.follower = PolicyFollower(self, lambda _ps: None)
        self.follower.routes()


async def test_a_policy_version_from_the_future_is_refused_and_a_held_one_gives_way() -> None:
    svc = Follower()
    auth = {"Authorization": f"Bearer {INV.token}"}
    async with TestClient(TestServer(svc.app)) as client:
        resp = await client.post("/v1/policies", json={"version": 9_000_000_000_000_000, "policies": []}, headers=auth)
        assert resp.status == 409 and "future" in (await resp.json())["error"]
    now_ms = int(time.time() * 1000)
    svc.follower.current = PolicySet(version=now_ms + 10**9, policies=[])  # held from before the fix
    assert not svc.follower.offer(PolicySet(version=now_ms, policies=[]))  # a push: still older
    assert svc.follower.offer(PolicySet(version=now_ms, policies=[]), authoritative=True)  # the scheduler's word
    assert svc.follower.current.version == now_ms


# ---- the router: a bad request is not a dead gateway -----------------------------------------------
async def test_a_gateway_that_refuses_a_request_stays_healthy() -> None:
    async def refuse(_: web.Request) -> web.Response:
        return web.json_response({"error": "invalid body"}, status=400)

    app = web.Application()
    app.router.add_post("/v1/push", refuse)
    server = TestServer(app)
    await server.start_server()
    async with aiohttp.ClientSession() as session:
        router = LogicRouter(INV, "token", session=session, timeout=2.0)
        url = str(server.make_url("")).rstrip("/")
        router.urls = {"idc1": url, "idc2": url}
        reply = await router.push([Message(id="m", device="d", sent_at=0.0, payload="p")])
        assert reply.ok == [False]  # not taken: the caller reports it rejected
        assert router.healthy == {"idc1": True, "idc2": True}
    await server.close()


# ---- the CLI: bounded inputs, one error boundary ---------------------------------------------------
def test_a_billion_devices_is_one_line_and_exit_2_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    started = time.monotonic()
    code, out, err = run_main(monkeypatch, "probe", "run", "--devices", "1000000000", "--duration", "1s")
    assert code == 2 and "--devices must be between 1 and 50,000" in err
    assert time.monotonic() - started < 5 and "Traceback" not in out + err


def test_more_devices_than_a_regions_toxiproxy_holds_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_main(monkeypatch, "probe", "run", "--devices", "40000", "--duration", "1s")
    assert code == 2 and "holds at most 9,900" in err.replace("\n", " ")


def test_a_negative_safe_load_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = run_main(monkeypatch, "throttle", "access", "--auto", "--safe-load", "-1", "--dry-run")
    assert code == 2 and "--safe-load" in err


def test_a_bug_in_pushctl_exits_3_with_one_line_and_a_traceback_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A crash must never read as exit 1, "SLO breached", in CI."""
    from pushctl.cli import stack as stack_cli

    def boom(*_: Any, **__: Any) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path))
    monkeypatch.setattr(stack_cli, "get_runtime", boom)
    code, _, err = run_main(monkeypatch, "stack", "status")
    assert code == 3
    assert "internal error in pushctl: ZeroDivisionError: a bug" in err
    (crash,) = (tmp_path / "crashes").glob("*.log")
    assert "ZeroDivisionError" in crash.read_text() and "Traceback" not in err
