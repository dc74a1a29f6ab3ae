"""Waiting for the platform to undo its own changes (the scheduler's auto drain, the storage fallback):
one helper behind `pushctl recover`'s settling and an experiment's end-of-run check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from pushctl.actions.common import wait_platform_back
from pushctl.actions.journal import JournalEntry
from pushctl.actions.recover import describe_settled, settle
from pushctl.contract.api import Policy
from pushctl.contract.driverspec import BaselineCommand, DriverSpec
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.control import PlatformClient

pytestmark = pytest.mark.timeout(30)


class Platform:
    """A scheduler whose auto drain of `region` goes after `drain_reads` reads, and an access tier
    back on redis after `storage_reads` reads (None: never)."""

    def __init__(self, *, region: str = "south", drain_reads: int | None = 0, storage_reads: int | None = 0) -> None:
        self.region = region
        self.drain_reads, self.storage_reads = drain_reads, storage_reads
        self.reads = {"policies": 0, "storage": 0}

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/policies":
            self.reads["policies"] += 1
            gone = self.drain_reads is not None and self.reads["policies"] > self.drain_reads
            policies: list[dict[str, Any]] = [] if gone else [
                {"kind": "drain", "region": self.region, "spread_s": 5.0, "origin": "auto", "id": "drain-x",
                 "created_at": 1.0}
            ]  # fmt: skip
            return httpx.Response(200, json={"version": 1, "policies": policies, "regions": {}})
        if request.url.path == "/v1/storage":
            self.reads["storage"] += 1
            back = self.storage_reads is not None and self.reads["storage"] > self.storage_reads
            return httpx.Response(200, json={"mode": "redis" if back else "fallback", "since": 1.0})
        return httpx.Response(404)


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path))
    return load_inventory()


def auto(policy: Policy) -> bool:
    return policy.origin == "auto"


async def test_the_wait_ends_once_the_auto_drain_is_withdrawn(inv: Inventory) -> None:
    platform = Platform(drain_reads=2)
    async with PlatformClient(inv, transport=httpx.MockTransport(platform.handle)) as api:
        seconds, left = await wait_platform_back(api, stray=auto, timeout=5, poll=0.01)
    assert seconds is not None and left == []
    assert platform.reads == {"policies": 3, "storage": 0}  # storage not asked for: not read


async def test_a_drain_never_withdrawn_is_named_when_the_wait_times_out(inv: Inventory) -> None:
    platform = Platform(drain_reads=None, storage_reads=None)
    async with PlatformClient(inv, transport=httpx.MockTransport(platform.handle)) as api:
        seconds, left = await wait_platform_back(api, stray=auto, storage="redis", timeout=0.2, poll=0.01)
    assert seconds is None
    assert left == ["auto drain of south never withdrawn", "storage still on fallback (was redis)"]


async def test_recover_measures_how_long_each_self_undo_took_and_none_when_it_did_not_happen(
    inv: Inventory,
) -> None:
    entries = [
        JournalEntry("a", "fail-region", {"region": "south"}, inv.source, 1, 1.0),
        JournalEntry("b", "fail-redis", {"mode": "down"}, inv.source, 1, 1.0),
    ]
    platform = Platform(drain_reads=1, storage_reads=None)
    settled = await settle(inv, entries, timeout=0.5, transport=httpx.MockTransport(platform.handle))
    assert isinstance(settled["auto_drain_withdrawn_s"], float)
    assert settled["storage_on_redis_s"] is None


def test_recover_names_what_did_not_settle_and_the_bound_it_waited() -> None:
    inv = load_inventory(Path("stack/topology.toml"))
    assert describe_settled(inv, {"auto_drain_withdrawn_s": 4.2, "storage_on_redis_s": None}) == [
        "the scheduler's automatic drains withdrawn after 4.2 s",
        "storage back on Redis: NOT within 30 s",
    ]
    spec = DriverSpec(kind="command", baseline=BaselineCommand(command="echo ok", settle_s=2))
    shown = describe_settled(inv.model_copy(update={"driver": spec}), {"back_at_baseline_s": None})
    assert shown == ["the driver's baseline command printing what it printed before: NOT within 2 s"]
