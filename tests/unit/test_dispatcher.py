"""Endpoint ordering and the dispatcher's public endpoint (mocked requests, no sockets)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request
from pushstack.dispatcher import Dispatcher, endpoint_urls, home_region, order_regions
from pushstack.policy_watch import drained_regions, scheduler_url, unhealthy_regions

from pushctl.contract.api import Policy, PolicySet, RegionState
from pushctl.contract.topology import load_inventory

REFERENCE = Path(__file__).resolve().parents[2] / "stack" / "topology.toml"
ALL = ["north", "east", "south"]


def test_nearest_order_when_all_is_well() -> None:
    assert order_regions(["south", "east", "north"], ALL) == ["south", "east", "north"]


def test_drained_regions_are_left_out() -> None:
    assert order_regions(["south", "east", "north"], ALL, drained={"south"}) == ["east", "north"]


def test_unhealthy_regions_go_last_keeping_nearest_order() -> None:
    got = order_regions(["south", "east", "north"], ALL, unhealthy={"south", "east"})
    assert got == ["north", "south", "east"]


def test_regions_missing_from_nearest_are_offered_after_it() -> None:
    assert order_regions(["south"], ALL) == ["south", "north", "east"]


def test_everything_drained_still_offers_somewhere() -> None:
    got = order_regions(["south", "east", "north"], ALL, drained=set(ALL), unhealthy={"south"})
    assert got == ["east", "north", "south"]


def test_home_region_is_stable_and_follows_weights(tmp_path: Path) -> None:
    inv = load_inventory(REFERENCE)
    assert home_region(inv, "dev-42") == home_region(inv, "dev-42")
    spread = Counter(home_region(inv, f"dev-{i}") for i in range(3000))
    assert set(spread) == set(ALL) and min(spread.values()) > 850
    text = REFERENCE.read_text().replace("weight = 1.0\n\n[regions.east]", "weight = 8.0\n\n[regions.east]")
    heavy = tmp_path / "topology.toml"
    heavy.write_text(text)
    north_heavy = Counter(home_region(load_inventory(heavy), f"dev-{i}") for i in range(3000))
    assert north_heavy["north"] > 2000


def test_endpoint_urls_are_the_device_links() -> None:
    urls = endpoint_urls(load_inventory(REFERENCE))
    assert urls == {
        "north": "ws://127.0.0.1:18201/ws",
        "east": "ws://127.0.0.1:18202/ws",
        "south": "ws://127.0.0.1:18203/ws",
    }


def test_policy_set_helpers() -> None:
    policy = Policy(region="east", id="p", created_at=0.0)
    ps = PolicySet(
        version=3,
        policies=[policy],
        regions={"south": RegionState(healthy=False, connections=0, limit=10, drained=False)},
    )
    assert drained_regions(ps) == {"east"} and unhealthy_regions(ps) == {"south"}


def test_brokers_reach_the_scheduler_through_its_link_even_without_a_connect_entry() -> None:
    inv = load_inventory(REFERENCE)
    assert scheduler_url(inv, {"scheduler": "scheduler"}) == "http://127.0.0.1:18110"
    assert scheduler_url(inv, {}) == "http://127.0.0.1:18110"


async def _get(d: Dispatcher, query: str) -> tuple[int, dict[str, Any]]:
    resp = await d._endpoints(make_mocked_request("GET", f"/v1/endpoints?{query}"))
    assert resp.text is not None
    return resp.status, json.loads(resp.text)


@pytest.mark.timeout(10)
async def test_endpoints_follow_the_policy_set() -> None:
    d = Dispatcher(load_inventory(REFERENCE), "dispatcher")
    status, body = await _get(d, "device=dev-1&region=south")
    assert status == 200 and body["device"] == "dev-1"
    assert body["endpoints"] == [
        {"region": "south", "url": "ws://127.0.0.1:18203/ws"},
        {"region": "east", "url": "ws://127.0.0.1:18202/ws"},
        {"region": "north", "url": "ws://127.0.0.1:18201/ws"},
    ]
    d.follower.offer(PolicySet(version=1, policies=[Policy(region="south", id="p", created_at=0.0)]))
    _, body = await _get(d, "device=dev-1&region=south")
    assert [e["region"] for e in body["endpoints"]] == ["east", "north"]
    d.follower.offer(PolicySet(version=2, policies=[]))
    _, body = await _get(d, "device=dev-1&region=south")
    assert [e["region"] for e in body["endpoints"]] == ["south", "east", "north"]
    _, body = await _get(d, "device=dev-1")
    assert body["endpoints"][0]["region"] == home_region(d.inv, "dev-1")
    assert (await _get(d, "region=south"))[0] == 400
    status, body = await _get(d, "device=x&region=mars")
    assert status == 400 and "valid regions" in str(body["error"])
