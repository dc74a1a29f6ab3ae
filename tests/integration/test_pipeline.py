"""The push pipeline end to end: app server -> access -> logic -> broker -> device, and back (ack).

Every hop is the real service behind its real Toxiproxy link; the devices of the first three tests
are plain `websockets` clients (tests/integration/helpers_ws.py), not pushctl's probe, so the stack
is held to docs/protocol.md. Then the probe and its ledger: a clean run loses nothing, and a region
whose device link goes down under connected devices is reported as loss (exit 1 from the CLI).
Every test leaves the stack as it found it: no toxics, every link up, no drain in force.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from pushctl.cli.slo import slo_held
from pushctl.contract.topology import Inventory
from pushctl.faults.links import clear_faults, link_down, link_up, list_faults
from pushctl.probe.fleet import spread
from pushctl.probe.probe import Probe, ProbeOptions
from tests.integration.conftest import REPO, Stack
from tests.integration.helpers_ws import (
    RawDevice,
    broker_connections,
    broker_url,
    close_all,
    eventually,
    logic_metric,
    metric,
    new_id,
    offline_ids,
    push_group,
    push_single,
    route_of,
    scheduler_policies,
    store,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FAULT_REGION = "south"
BASELINE_TIMEOUT_S = 45.0  # an auto drain is withdrawn 3 s after its region is healthy again
SETTLE_S = 1.5  # after the last expected push: time for a duplicate to show up


# ---- baseline: no toxics, every link up, no drain, every region healthy --------------------------
async def _baseline_problems(inv: Inventory) -> list[str]:
    problems = [
        f"link {lf.link}: " + (lf.error or ("down" if not lf.enabled else f"toxics {lf.summaries}"))
        for lf in await list_faults(inv)
        if lf.error or not lf.enabled or lf.toxics
    ]
    async with httpx.AsyncClient() as http:
        ps = await scheduler_policies(http, inv)
    problems += [f"policy {p['id']}: drain {p['region']} ({p['origin']})" for p in ps["policies"]]
    problems += [f"region {r} unhealthy" for r, st in ps["regions"].items() if not st["healthy"]]
    return problems


async def _wait_baseline(inv: Inventory) -> list[str]:
    """[] once the stack is at baseline; else what is still off after BASELINE_TIMEOUT_S."""
    deadline = time.monotonic() + BASELINE_TIMEOUT_S
    while problems := await _baseline_problems(inv):
        if time.monotonic() > deadline:
            return problems
        await asyncio.sleep(0.5)
    return []


@pytest.fixture(autouse=True)
def at_baseline(stack: Stack) -> Iterator[None]:
    """Each test starts at baseline and must leave it there; one that leaves a fault behind fails
    (and the fault is cleared, so the tests after it still start clean)."""
    before = asyncio.run(_wait_baseline(stack.inventory))
    assert not before, f"stack not at baseline before the test: {before}"
    yield
    after = asyncio.run(_wait_baseline(stack.inventory))
    if after:
        asyncio.run(clear_faults(stack.inventory))
    assert not after, f"the test left the stack off baseline: {after}"


# ---- 1. one device, one single push, one ack ---------------------------------------------------
async def test_single_push_reaches_a_plain_websocket_device_and_its_ack_is_accounted(stack: Stack) -> None:
    inv = stack.inventory
    payload = '{"title": "héllo ✓", "n": 1}'
    async with asyncio.timeout(60), httpx.AsyncClient() as http:
        db = store(inv)
        dev = RawDevice(inv, new_id("it-one"))
        try:
            ok = await dev.connect(http)
            offered = [e["region"] for e in dev.endpoints]
            assert sorted(offered) == sorted(inv.regions)
            first = offered[0]
            assert dev.endpoints[0]["url"] == inv.link_url(inv.device_link(first).name, scheme="ws") + "/ws"
            broker, _ = inv.broker(first)
            assert ok == {"type": "auth_ok", "broker": broker, "region": first}
            # the route is written before auth_ok (docs/protocol.md §1)
            assert await route_of(db, dev.device) == broker

            acks_before = await metric(http, broker_url(inv, first), "pushstack_broker_acks_total")
            acked_before = await logic_metric(http, inv, "pushstack_logic_messages_total", result="acked")
            sent = await push_single(http, inv, dev.device, payload)
            await dev.wait_for([sent.id], within=10)

            assert dev.push(sent.id) == {
                "type": "push",
                "id": sent.id,
                "payload": payload,
                "sent_at": pytest.approx(sent.sent_at, abs=1e-3),
            }
            assert dev.acked == [sent.id]
            await eventually(
                "the broker counted the ack",
                lambda: metric(http, broker_url(inv, first), "pushstack_broker_acks_total"),
                lambda n: n == acks_before + 1,
                within=5,
            )
            await eventually(
                "a logic gateway finished the message as acked",
                lambda: logic_metric(http, inv, "pushstack_logic_messages_total", result="acked"),
                lambda n: n >= acked_before + 1,
                within=5,
            )
            await asyncio.sleep(SETTLE_S)
            assert dev.counts() == {sent.id: 1}
        finally:
            await dev.close()
            await db.aclose()


# ---- 2. group pushes: a device list, and a region ----------------------------------------------
async def test_group_push_reaches_each_listed_device_once_and_a_region_push_its_region(stack: Stack) -> None:
    inv = stack.inventory
    async with asyncio.timeout(90), httpx.AsyncClient() as http:
        devs = [RawDevice(inv, new_id(f"it-grp-{r}"), home=r) for r in inv.regions]
        try:
            await asyncio.gather(*(d.connect(http) for d in devs))
            assert [d.region for d in devs] == list(inv.regions)  # each at its home (nearest first)

            gid, result = await push_group(http, inv, "to the list", devices=[d.device for d in devs])
            assert (result.accepted, result.rejected) == (len(devs), 0), result
            await asyncio.gather(*(d.wait_for([gid], within=15) for d in devs))
            await asyncio.sleep(SETTLE_S)
            for d in devs:
                assert d.counts() == {gid: 1}, d.device
                assert d.push(gid)["payload"] == "to the list"

            target, others = devs[-1], devs[:-1]
            rid, result = await push_group(http, inv, "to the region", region=target.home)
            # every device ever seen in the region is targeted; ours is connected there now
            assert result.accepted >= 1 and result.rejected == 0, result
            await target.wait_for([rid], within=15)
            await asyncio.sleep(SETTLE_S)
            assert target.counts()[rid] == 1
            assert target.push(rid)["payload"] == "to the region"
            for d in others:
                assert rid not in d.counts(), f"{d.device} of {d.region} got a push for {target.home}"
        finally:
            await close_all(devs)


# ---- 3. offline queue: pushes to a device that is away arrive when it is back -------------------
async def test_pushes_to_an_offline_device_arrive_exactly_once_when_it_reconnects(stack: Stack) -> None:
    inv = stack.inventory
    device = new_id("it-away")
    async with asyncio.timeout(120), httpx.AsyncClient() as http:
        db = store(inv)
        first = RawDevice(inv, device, home="north")
        back = RawDevice(inv, device, home="north")
        try:
            await first.connect(http)
            broker = first.auth_ok["broker"]
            assert await route_of(db, device) == broker
            await first.close()
            await eventually(
                "the broker dropped the route", lambda: route_of(db, device), lambda r: r is None, within=10
            )

            sent = [await push_single(http, inv, device, f"while away #{i}") for i in range(5)]
            ids = {s.id for s in sent}
            await eventually(
                "every push waits in the offline queue",
                lambda: offline_ids(db, device),
                lambda waiting: waiting == ids,
                within=15,
            )

            await back.connect(http)
            assert back.auth_ok["broker"] == broker
            await back.wait_for(ids, within=15)
            await asyncio.sleep(SETTLE_S)
            assert back.counts() == dict.fromkeys(ids, 1)
            assert {s.id: s.payload for s in sent} == {i: back.push(i)["payload"] for i in ids}
            await eventually(
                "the offline queue is emptied", lambda: offline_ids(db, device), lambda w: not w, within=10
            )
        finally:
            await close_all([first, back])
            await db.aclose()


# ---- 4. the probe: a clean run loses nothing ---------------------------------------------------
def test_probe_run_on_a_healthy_stack_loses_nothing(stack: Stack) -> None:
    proc = stack.pushctl("probe", "run", "--devices", "60", "--rate", "100", "--duration", "4s", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    assert summary["sent"] >= 300, summary["sent"]  # ~100/s for 4 s
    assert summary["lost"] == 0, summary["worst_seconds"]
    assert summary["delivery_rate"] >= 99.9, summary["worst_seconds"]
    assert set(summary["by_region"]) == set(stack.inventory.regions)
    assert all(c["sent"] > 0 and c["lost"] == 0 for c in summary["by_region"].values())


# ---- 5. the ledger shown to fail: a device link goes down under connected devices --------------
async def test_probe_ledger_counts_the_loss_of_a_region_whose_device_link_went_down(stack: Stack) -> None:
    inv = stack.inventory
    link = inv.device_link(FAULT_REGION).name
    options = ProbeOptions(devices=30, rate=60, duration=None, grace=1.5, reconnect=False, seed=7)
    probe = Probe(inv, options)
    try:
        async with asyncio.timeout(120):
            await probe.start()  # every device connected once, sending has begun
            assert probe.snapshot().connected.get(FAULT_REGION, 0) == spread(30, _weights(inv))[FAULT_REGION]
            await asyncio.sleep(1.5)
            downed_at = time.time()
            await link_down(inv, link)
            await asyncio.sleep(2.5)
            summary = await probe.stop()
    finally:
        await probe.close()
        await link_up(inv, link)
        await clear_faults(inv, link)

    assert summary.lost > 0
    assert summary.by_region[FAULT_REGION].lost > 0
    assert all(c.lost == 0 for r, c in summary.by_region.items() if r != FAULT_REGION), summary.by_region
    before = probe.summary(until=downed_at - 0.5)
    assert before.sent > 0 and before.lost == 0  # the loss is pinned to the fault, not spread over the run
    assert not slo_held(summary, 99.9)


def test_slo_check_exits_1_and_reports_loss_when_a_device_link_goes_down(stack: Stack) -> None:
    inv = stack.inventory
    link = inv.device_link(FAULT_REGION).name
    devices = 30
    there = spread(devices, _weights(inv))[FAULT_REGION]
    conns_before, pushes_before = asyncio.run(_broker_state(inv, FAULT_REGION))
    # a long, slow run: `pushctl fault down` itself takes seconds to start on a loaded 2-core machine
    cmd = [
        sys.executable, "-m", "pushctl.cli.main", "--inventory", inv.source,
        "slo", "check", "--target", "99.9", "--no-reconnect", "--devices", str(devices),
        "--rate", "30", "--duration", "15s", "--grace", "2s", "--seed", "11", "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=stack.env, cwd=REPO)
    try:
        # `slo check` connects every device first, then sends: take the link away once the region's
        # devices are connected and pushes reach them
        asyncio.run(_wait_sending(inv, FAULT_REGION, conns_before + there, pushes_before, proc))
        stack.pushctl("fault", "down", link, *stack.confirm, check=True)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
        stack.pushctl("fault", "up", link)
        stack.pushctl("fault", "clear", link)

    assert proc.returncode == 1, f"{err[-2000:]}\n{out[-3000:]}"
    assert "Traceback" not in err
    assert "SLO breached" in err
    report = json.loads(out)
    assert report["passed"] is False
    assert report["target"] == 99.9
    summary = report["summary"]
    assert summary["lost"] > 0
    assert summary["by_region"][FAULT_REGION]["lost"] > 0
    assert summary["delivery_rate"] < 99.9


def _weights(inv: Inventory) -> dict[str, float]:
    return {name: r.weight for name, r in inv.regions.items()}


async def _broker_state(inv: Inventory, region: str) -> tuple[int, float]:
    """(connections, push frames written so far) of the region's broker."""
    async with httpx.AsyncClient() as http:
        conns = await broker_connections(http, inv, region)
        pushes = await metric(http, broker_url(inv, region), "pushstack_broker_pushes_total")
    return conns, pushes


async def _wait_sending(
    inv: Inventory, region: str, connections: int, pushes_before: float, proc: subprocess.Popen[str]
) -> None:
    """Until `connections` devices are on the region's broker and it has written a push since."""

    async def state() -> tuple[int, float]:
        assert proc.poll() is None, f"slo check ended before it sent anything: exit {proc.returncode}"
        return await _broker_state(inv, region)

    await eventually(
        f"{connections} devices connected in {region}, pushes written to them",
        state,
        lambda st: st[0] >= connections and st[1] > pushes_before,
        within=60,
    )
