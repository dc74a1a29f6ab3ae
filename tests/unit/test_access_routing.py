"""The gateway split: weights, health marks, failover order, and the router's failover over HTTP."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from pushstack.routing import LogicRouter, WeightTable, failover_order, split

from pushctl.contract.api import Accepted, Message
from pushctl.contract.topology import load_inventory

DEVICES = [f"dev-{i}" for i in range(10_000)]


def _counts(table: WeightTable) -> dict[str, int]:
    parts = split(DEVICES, lambda d: d, table)
    return {idc: len(items) for idc, items in parts.items()}


def test_even_weights_split_devices_about_evenly() -> None:
    counts = _counts(WeightTable({"idc1": 50, "idc2": 50}, ["idc1", "idc2"]))
    assert counts.keys() == {"idc1", "idc2"}
    assert 4_700 < counts["idc1"] < 5_300


def test_uneven_weights_follow_the_ratio() -> None:
    counts = _counts(WeightTable({"idc1": 80, "idc2": 20}, ["idc1", "idc2"]))
    assert 7_700 < counts["idc1"] < 8_300


def test_zero_weight_gets_nothing() -> None:
    assert _counts(WeightTable({"idc1": 0, "idc2": 100}, ["idc1", "idc2"])) == {"idc2": 10_000}


def test_unhealthy_gateway_is_left_out() -> None:
    assert _counts(WeightTable({"idc1": 50, "idc2": 50}, ["idc2"])) == {"idc2": 10_000}


def test_weights_only_on_dead_gateways_spread_over_the_healthy_ones() -> None:
    # 100/0 and idc1 is down: an IDC power loss must not strand traffic on a zero weight
    assert _counts(WeightTable({"idc1": 100, "idc2": 0}, ["idc2"])) == {"idc2": 10_000}


def test_a_device_always_picks_the_same_gateway() -> None:
    table = WeightTable({"idc1": 30, "idc2": 70}, ["idc1", "idc2"])
    assert [table.pick(d) for d in DEVICES[:500]] == [table.pick(d) for d in DEVICES[:500]]


def test_failover_order_tries_healthy_before_unhealthy() -> None:
    order = failover_order("idc1", ["idc1", "idc2", "idc3"], {"idc2": False, "idc3": True})
    assert order == ["idc1", "idc3", "idc2"]


async def _gateway(status: int, seen: list[int]) -> TestServer:
    async def push(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(len(body["messages"]))
        if status != 202:
            return web.json_response({"error": "down"}, status=status)
        return web.Response(
            body=Accepted(accepted=len(body["messages"])).model_dump_json(),
            status=202,
            content_type="application/json",
        )

    app = web.Application()
    app.router.add_post("/v1/push", push)
    server = TestServer(app)
    await server.start_server()
    return server


async def test_router_fails_over_to_the_other_gateway_and_marks_the_first() -> None:
    seen1: list[int] = []
    seen2: list[int] = []
    down, up = await _gateway(503, seen1), await _gateway(202, seen2)
    async with aiohttp.ClientSession() as session:
        router = LogicRouter(load_inventory(), "token", session=session, timeout=2.0)
        router.urls = {"idc1": str(down.make_url("")).rstrip("/"), "idc2": str(up.make_url("")).rstrip("/")}
        msgs = [Message(id=f"m{i}", device=d, sent_at=0.0, payload="p") for i, d in enumerate(DEVICES[:200])]
        reply = await router.push(msgs)
        assert all(reply.ok)
        assert sum(seen2) == 200  # idc2 got its own share and idc1's
        assert router.healthy == {"idc1": False, "idc2": True}
        seen1.clear()
        reply = await router.push(msgs)
        assert all(reply.ok)
        assert seen1 == []  # the health mark sends the next batch straight to idc2
    await down.close()
    await up.close()


async def test_router_reports_failure_when_no_gateway_takes_it() -> None:
    seen: list[int] = []
    down1, down2 = await _gateway(503, seen), await _gateway(500, seen)
    async with aiohttp.ClientSession() as session:
        router = LogicRouter(load_inventory(), "token", session=session, timeout=2.0)
        router.urls = {
            "idc1": str(down1.make_url("")).rstrip("/"),
            "idc2": str(down2.make_url("")).rstrip("/"),
        }
        reply = await router.push([Message(id="m", device="d", sent_at=0.0, payload="p")])
        assert reply.ok == [False]
    await down1.close()
    await down2.close()
