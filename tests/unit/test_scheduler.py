"""The scheduler's rules (PolicyBook, fake clock) and its control API in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from pushstack.policy_book import PolicyBook, PolicyConflict, UnknownPolicy, UnknownRegion
from pushstack.scheduler import Scheduler, policy_targets

from pushctl.contract.api import Connections, PolicyIn
from pushctl.contract.topology import load_inventory
from tests.helpers import free_inventory

REGIONS = ["north", "east", "south"]
REFERENCE = Path(__file__).resolve().parents[2] / "stack" / "topology.toml"


def seen(count: int, limit: int = 100, draining: bool = False) -> Connections:
    return Connections(broker="b", region="r", count=count, limit=limit, draining=draining)


def book(now: float = 1000.0) -> PolicyBook:
    return PolicyBook(REGIONS, now=now)


# ---- policies -----------------------------------------------------------------------------------
def test_add_and_remove_a_drain_bumps_the_version() -> None:
    b = book()
    v0 = b.version
    policy = b.add(PolicyIn(region="south", spread_s=3), now=1001.0)
    assert policy.region == "south" and policy.origin == "operator" and policy.created_at == 1001.0
    assert b.version > v0 and b.drained() == {"south"}
    v1 = b.version
    b.remove(policy.id, now=1001.0)  # same clock: still a strictly higher version
    assert b.version > v1 and b.drained() == set()


def test_version_is_at_least_the_clock_in_ms_so_a_fresh_scheduler_is_not_ignored() -> None:
    b = book()
    b.add(PolicyIn(region="south"), now=1_700_000_000.0)
    assert b.version >= 1_700_000_000_000


def test_one_drain_per_region() -> None:
    b = book()
    first = b.add(PolicyIn(region="south"), now=1.0)
    with pytest.raises(PolicyConflict, match=first.id):
        b.add(PolicyIn(region="south"), now=2.0)


def test_draining_the_last_healthy_region_is_refused() -> None:
    b = book()
    b.add(PolicyIn(region="south"), now=1.0)
    b.add(PolicyIn(region="east"), now=1.0)
    with pytest.raises(PolicyConflict, match="last healthy region") as info:
        b.add(PolicyIn(region="north"), now=1.0)
    assert info.value.status == 409
    assert "east: drained" in str(info.value) and "south: drained" in str(info.value)


def test_an_unhealthy_region_does_not_count_as_somewhere_to_go() -> None:
    b = book(now=0.0)
    b.observe("east", None, now=5.0)  # silent for 5 s
    b.add(PolicyIn(region="south"), now=5.0)
    with pytest.raises(PolicyConflict, match="east: unhealthy"):
        b.add(PolicyIn(region="north"), now=5.0)


def test_unknown_region_and_policy() -> None:
    b = book()
    with pytest.raises(UnknownRegion, match="valid regions: north, east, south"):
        b.add(PolicyIn(region="west"), now=1.0)
    with pytest.raises(UnknownPolicy):
        b.remove("nope", now=1.0)


def test_clear_withdraws_everything_or_one_origin() -> None:
    b = book()
    b.add(PolicyIn(region="south"), now=1.0)
    b.add(PolicyIn(region="east", origin="auto"), now=1.0)
    assert b.clear(now=2.0, origin="auto") == 1
    assert b.drained() == {"south"}
    assert b.clear(now=2.0) == 1
    assert b.policies == {}


def test_persisted_set_is_restored_with_its_version() -> None:
    b = book()
    b.add(PolicyIn(region="south"), now=5.0)
    persisted = b.snapshot()
    fresh = book()
    fresh.load(persisted)
    assert fresh.version == persisted.version and fresh.drained() == {"south"}


# ---- health and the auto rule -------------------------------------------------------------------
def test_unreachable_broker_becomes_unhealthy_after_two_seconds() -> None:
    b = book(now=0.0)
    assert not b.observe("north", None, now=1.9)
    assert b.regions["north"].healthy
    assert b.observe("north", None, now=2.5)
    assert not b.regions["north"].healthy and "unreachable" in b.regions["north"].reason
    assert b.observe("north", seen(0), now=3.0)
    assert b.regions["north"].healthy


def test_broker_at_95_percent_of_its_limit_is_unhealthy() -> None:
    b = book(now=0.0)
    b.observe("south", seen(94, limit=100), now=1.0)
    assert b.regions["south"].healthy
    b.observe("south", seen(95, limit=100), now=2.0)
    assert not b.regions["south"].healthy and "95/100" in b.regions["south"].reason
    snap = b.snapshot().regions["south"]
    assert (snap.healthy, snap.connections, snap.limit) == (False, 95, 100)


def test_a_full_region_is_offered_last_but_never_drained() -> None:
    """Draining a region for being full would evacuate it and refill it, over and over."""
    b = book(now=0.0)
    b.observe("south", seen(99, limit=100), now=6.0)
    assert not b.regions["south"].healthy
    assert b.auto_step(now=6.0) == []
    assert b.policies == {}
    assert not b.snapshot().regions["south"].healthy  # the dispatcher puts it last


def test_auto_drains_an_unhealthy_region_and_withdraws_after_three_healthy_seconds() -> None:
    b = book(now=0.0)
    b.observe("south", None, now=3.0)
    actions = b.auto_step(now=3.0)
    assert actions and actions[0].startswith("drain south")
    (policy,) = b.policies.values()
    assert policy.origin == "auto" and policy.region == "south"
    assert b.auto_step(now=3.5) == []  # no second drain
    b.observe("south", seen(0), now=4.0)
    assert b.auto_step(now=6.5) == []  # healthy 2.5 s: not yet
    actions = b.auto_step(now=7.0)
    assert actions and actions[0].startswith("withdraw drain of south")
    assert b.policies == {}


def test_flapping_region_restarts_its_recovery_clock() -> None:
    b = book(now=0.0)
    b.observe("south", None, now=3.0)
    b.auto_step(now=3.0)
    b.observe("south", seen(0), now=4.0)
    b.observe("south", seen(99), now=5.0)  # unhealthy again (near the limit)
    b.observe("south", seen(0), now=6.0)
    assert b.auto_step(now=8.0) == []  # healthy since 6.0 only
    assert b.auto_step(now=9.0) != []


def test_auto_never_drains_the_last_healthy_region() -> None:
    b = book(now=0.0)
    for region in REGIONS:
        b.observe(region, None, now=3.0)
    assert b.auto_step(now=3.0) == []
    assert b.policies == {}


def test_auto_leaves_operator_drains_alone() -> None:
    b = book(now=0.0)
    operator = b.add(PolicyIn(region="south"), now=0.0)
    b.observe("south", seen(0), now=10.0)
    assert b.auto_step(now=20.0) == []
    assert list(b.policies) == [operator.id]


def test_operator_drain_takes_over_an_auto_drain() -> None:
    b = book(now=0.0)
    b.observe("south", None, now=3.0)
    b.auto_step(now=3.0)
    policy = b.add(PolicyIn(region="south"), now=3.5)
    assert [p.origin for p in b.policies.values()] == ["operator"]
    b.observe("south", seen(0), now=4.0)
    assert b.auto_step(now=10.0) == []
    assert list(b.policies) == [policy.id]


# ---- the service over HTTP ----------------------------------------------------------------------
def test_policy_targets_are_vpc_links_and_the_dispatcher_link() -> None:
    inv = load_inventory(REFERENCE)
    assert policy_targets(inv) == {
        "broker-north": "http://127.0.0.1:18211",
        "broker-east": "http://127.0.0.1:18212",
        "broker-south": "http://127.0.0.1:18213",
        "dispatcher": "http://127.0.0.1:18100",
    }


@pytest.fixture
async def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    monkeypatch.setenv("PUSHCTL_SCHEDULER_AUTO", "0")
    inv = free_inventory(tmp_path)
    async with Scheduler(inv, "scheduler") as svc:  # no store, no brokers: both unreachable
        yield f"http://127.0.0.1:{svc.spec.port}"


@pytest.mark.timeout(30)
async def test_control_api(scheduler: str) -> None:
    auth = {"Authorization": "Bearer pushctl-reference-token"}
    async with aiohttp.ClientSession(headers=auth) as http:
        async with http.post(f"{scheduler}/v1/policies", json={"region": "south", "spread_s": 2}) as r:
            assert r.status == 201
            policy = await r.json()
        async with http.post(f"{scheduler}/v1/policies", json={"region": "south"}) as r:
            assert r.status == 409 and "already drained" in (await r.json())["error"]
        async with http.post(f"{scheduler}/v1/policies", json={"region": "mars"}) as r:
            assert r.status == 400
        async with http.get(f"{scheduler}/v1/policies") as r:
            body = await r.json()
            assert [p["id"] for p in body["policies"]] == [policy["id"]]
            assert set(body["regions"]) == set(REGIONS) and body["regions"]["south"]["drained"]
        async with http.delete(f"{scheduler}/v1/policies/{policy['id']}") as r:
            assert r.status == 204
        async with http.delete(f"{scheduler}/v1/policies/{policy['id']}") as r:
            assert r.status == 404
        async with http.get(f"{scheduler}/v1/auto") as r:
            assert await r.json() == {"enabled": False}
        async with http.put(f"{scheduler}/v1/auto", json={"enabled": True}) as r:
            assert await r.json() == {"enabled": True}
        async with http.delete(f"{scheduler}/v1/policies") as r:
            assert r.status == 204
        async with http.get(f"{scheduler}/metrics") as r:
            assert "pushstack_scheduler_policies 0.0" in await r.text()
    async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{scheduler}/v1/policies") as r:
        assert r.status == 401
