"""Link faults (pushctl.faults.links) and `pushctl fault ...`, against a fake Toxiproxy per server."""

from __future__ import annotations

import json

import pytest

from pushctl.cli import fault as fault_cli
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.errors import InventoryError, PushctlError, TargetUnreachable, UsageError
from pushctl.faults import links
from pushctl.faults.toxics import Stream
from tests.fake_toxiproxy import FakeToxiproxy, _err
from tests.helpers import run_main

NORTH = "127.0.0.1:17474"
INTERNAL = "127.0.0.1:17477"


@pytest.fixture
def inv(monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    return load_inventory()


@pytest.fixture
def fake(inv: Inventory) -> FakeToxiproxy:
    """Four fake servers holding every link's proxy, as `stack up` leaves them."""
    fake = FakeToxiproxy()
    for lk in inv.links:
        tp = inv.toxiproxy[lk.toxiproxy]
        fake.add_proxy(lk.name, f"{tp.host}:{lk.listen}", lk.upstream_addr, server=f"{tp.host}:{tp.port}")
    return fake


def run(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy, *args: str) -> tuple[int, str, str]:
    """`pushctl ARGS` through main() (see `run_main`), talking to the fake Toxiproxy."""
    monkeypatch.setattr(fault_cli, "TRANSPORT", fake.transport())
    return run_main(monkeypatch, *args)


def unwrap(text: str) -> str:
    """render.error's text without the console's line wrapping (it wraps at 80 columns)."""
    return text.replace("\n", "")


# ---- links -------------------------------------------------------------------------------------
async def test_sync_links_creates_every_proxy_on_its_server_then_is_idempotent(inv: Inventory) -> None:
    fake = FakeToxiproxy()
    changes = await links.sync_links(inv, transport=fake.transport())
    assert [c.action for c in changes] == ["created"] * len(inv.links)
    assert fake.proxies(NORTH)["device-north"]["listen"] == "127.0.0.1:18201"
    assert fake.proxies(NORTH)["device-north"]["upstream"] == "127.0.0.1:17201"
    assert fake.proxies(INTERNAL)["vpc-north"]["upstream"] == "127.0.0.1:17211"
    assert "device-north" not in fake.proxies(INTERNAL)

    fake.proxies(INTERNAL)["kafka"]["upstream"] = "127.0.0.1:1"
    fake.proxies(INTERNAL)["store"]["enabled"] = False
    again = {c.name: c.action for c in await links.sync_links(inv, transport=fake.transport())}
    assert again.pop("kafka") == "updated"
    assert again.pop("store") == "enabled"
    assert set(again.values()) == {"unchanged"}


async def test_remove_links_deletes_every_proxy(inv: Inventory, fake: FakeToxiproxy) -> None:
    removed = await links.remove_links(inv, transport=fake.transport())
    assert removed == inv.link_names
    assert not any(fake.servers.values())
    assert await links.remove_links(inv, transport=fake.transport()) == []


async def test_add_fault_both_streams_warns_about_open_connections(inv: Inventory, fake: FakeToxiproxy) -> None:
    res = await links.add_fault(
        inv, "device-north", "latency", {"latency": 150}, Stream.BOTH, transport=fake.transport()
    )
    toxics = fake.proxies(NORTH)["device-north"]["toxics"]
    assert {(t["name"], t["stream"]) for t in toxics} == {
        ("latency-up", "upstream"),
        ("latency-down", "downstream"),
    }
    assert [t.name for t in res.added] == ["latency-up", "latency-down"]
    assert res.caution
    assert "applies to new connections" in res.connections
    assert "--reset-connections" in res.connections
    assert fake.calls("PATCH") == 0


async def test_add_fault_with_reset_closes_connections_after_adding(inv: Inventory, fake: FakeToxiproxy) -> None:
    res = await links.add_fault(inv, "kafka", "timeout", {}, reset_connections=True, transport=fake.transport())
    order = [(r.method, json.loads(r.content)) for r in fake.requests if r.method in ("POST", "PATCH")]
    assert order[0][0] == "POST"
    assert [body for method, body in order if method == "PATCH"] == [{"enabled": False}, {"enabled": True}]
    assert res.enabled
    assert "every open connection" in res.connections
    assert fake.proxies(INTERNAL)["kafka"]["enabled"] is True


async def test_reset_does_not_bring_a_down_link_up(inv: Inventory, fake: FakeToxiproxy) -> None:
    await links.link_down(inv, "kafka", transport=fake.transport())
    res = await links.reset_connections(inv, "kafka", transport=fake.transport())
    assert not res.enabled
    assert fake.proxies(INTERNAL)["kafka"]["enabled"] is False


async def test_failed_second_toxic_removes_the_first(inv: Inventory, fake: FakeToxiproxy) -> None:
    fake.inject("POST", "/proxies/store/toxics", lambda r: None)
    fake.inject("POST", "/proxies/store/toxics", lambda r: _err(400, "bad toxic"))
    with pytest.raises(PushctlError, match="bad toxic"):
        await links.add_fault(inv, "store", "latency", {"latency": 5}, "both", transport=fake.transport())
    assert fake.proxies(INTERNAL)["store"]["toxics"] == []


async def test_existing_toxic_name_is_a_usage_error(inv: Inventory, fake: FakeToxiproxy) -> None:
    await links.add_fault(inv, "store", "latency", {"latency": 5}, transport=fake.transport())
    with pytest.raises(UsageError, match="link store already has toxic latency-down") as info:
        await links.add_fault(inv, "store", "latency", {"latency": 9}, transport=fake.transport())
    assert info.value.hint is not None and "--name" in info.value.hint
    assert len(fake.proxies(INTERNAL)["store"]["toxics"]) == 1


async def test_down_up_and_clear(inv: Inventory, fake: FakeToxiproxy) -> None:
    t = fake.transport()
    down = await links.link_down(inv, "device-south", transport=t)
    assert not down.enabled
    assert "every open connection" in down.connections
    await links.add_fault(inv, "cache", "bandwidth", {"rate": 10}, transport=t)
    cleared = {r.link: r for r in await links.clear_faults(inv, transport=t)}
    assert cleared["device-south"].changed and cleared["device-south"].enabled
    assert cleared["cache"].removed == ("bandwidth-down",)
    assert not cleared["kafka"].changed
    assert all(p["enabled"] and not p["toxics"] for s in fake.servers.values() for p in s.values())
    up = await links.link_up(inv, "device-south", transport=t)
    assert up.enabled


async def test_clear_tries_every_link_and_names_the_ones_it_could_not(inv: Inventory, fake: FakeToxiproxy) -> None:
    t = fake.transport()
    await links.add_fault(inv, "cache", "timeout", {}, transport=t)
    fake.down.add(NORTH)
    with pytest.raises(TargetUnreachable, match=r"cannot connect to Toxiproxy at http://127\.0\.0\.1:17474"):
        await links.clear_faults(inv, transport=t)
    assert fake.proxies(INTERNAL)["cache"]["toxics"] == []  # the reachable servers were cleared


async def test_list_faults_reports_unreachable_servers_per_link(inv: Inventory, fake: FakeToxiproxy) -> None:
    t = fake.transport()
    await links.add_fault(inv, "diskkv", "slow_close", {"delay": 50}, transport=t)
    fake.down.add(NORTH)
    rows = {r.link: r for r in await links.list_faults(inv, transport=t)}
    assert rows["device-north"].error is not None and "17474" in rows["device-north"].error
    assert rows["diskkv"].enabled and [x.name for x in rows["diskkv"].toxics] == ["slow_close-down"]
    statuses = {s.name: s for s in await links.link_statuses(inv, transport=t)}
    assert not statuses["device-north"].present
    assert statuses["diskkv"].toxics == ["slow_close-down"]
    assert statuses["diskkv"].listen == "127.0.0.1:18601"


async def test_plan_is_pure_serializable_and_revertible(inv: Inventory, fake: FakeToxiproxy) -> None:
    spec = links.plan_fault(inv, "vpc-east", "latency", {"latency": 80}, "both", 0.5, "lag", True)
    assert fake.requests == []
    assert links.FaultSpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.url == "http://127.0.0.1:17477"
    await links.apply_fault(spec, transport=fake.transport())
    assert len(fake.proxies(INTERNAL)["vpc-east"]["toxics"]) == 2
    res = await links.revert_fault(spec, transport=fake.transport())
    assert res.removed == ("lag-up", "lag-down")
    assert fake.proxies(INTERNAL)["vpc-east"]["toxics"] == []
    again = await links.revert_fault(spec, transport=fake.transport())
    assert again.removed == ()


def test_unknown_link_fails_before_any_call(inv: Inventory) -> None:
    with pytest.raises(InventoryError, match=r"unknown link 'device-mars'; valid links: cache, "):
        links.plan_fault(inv, "device-mars", "latency", {"latency": 5})


# ---- the CLI -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device-mars", "latency", "--latency", "5"], "unknown link 'device-mars'; valid links: cache, "),
        (["kafka", "lag"], "unknown toxic kind 'lag'; valid kinds: latency, bandwidth, slow_close"),
        (["kafka", "latency", "--rate", "5"], "toxic latency has no attribute 'rate'; valid: latency (ms"),
        (["kafka", "latency"], "toxic latency needs latency (ms)"),
        (["kafka", "latency", "--attr", "latency"], "--attr expects key=value, got 'latency'"),
        (["kafka", "latency", "--latency", "5", "--attr", "latency=6"], "attribute 'latency' given twice"),
        (["kafka", "timeout", "--toxicity", "2"], "toxicity must be between 0 and 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy, args: list[str], message: str
) -> None:
    code, out, err = run(monkeypatch, fake, "fault", "add", *args)
    assert code == 2
    text = unwrap(err)
    assert text.startswith(f"error: {message}")
    assert text.count("error:") == 1
    assert "Traceback" not in out + err
    assert fake.requests == []


def test_unknown_link_on_down_lists_valid_links(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    code, _, err = run(monkeypatch, fake, "fault", "down", "nowhere")
    assert code == 2
    assert "valid links: cache, cross-idc-cache" in unwrap(err)


def test_bad_stream_is_rejected_by_the_parser(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    code, _, err = run(monkeypatch, fake, "fault", "add", "kafka", "timeout", "--stream", "sideways")
    assert code == 2
    assert "sideways" in err
    assert "Traceback" not in err


def test_add_json(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    code, out, err = run(
        monkeypatch, fake, "fault", "add", "device-north", "latency", "--latency", "100", "--jitter", "10",
        "--stream", "both", "--json",
    )  # fmt: skip
    assert code == 0, err
    body = json.loads(out)
    assert [t["name"] for t in body["results"][0]["added"]] == ["latency-up", "latency-down"]
    assert body["results"][0]["added"][0]["attributes"] == {"latency": 100, "jitter": 10}
    assert body["plan"]["link"] == "device-north"
    assert "open connections may not see it" in body["results"][0]["connections"]


def test_add_text_says_what_open_connections_saw(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    code, out, _ = run(monkeypatch, fake, "fault", "add", "kafka", "timeout", "--reset-connections")
    assert code == 0
    assert "timeout-down: timeout 0 ms (down, all connections)" in out
    assert "every open connection through the link was closed" in out


def test_down_list_clear(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    code, out, _ = run(monkeypatch, fake, "fault", "down", "kafka")
    assert code == 0
    assert "DOWN" in out and "every open connection" in out
    code, out, _ = run(monkeypatch, fake, "fault", "list", "--json")
    assert code == 0
    rows = {r["link"]: r for r in json.loads(out)["links"]}
    assert rows["kafka"]["enabled"] is False and rows["cache"]["enabled"] is True
    code, out, _ = run(monkeypatch, fake, "fault", "list")
    assert code == 0
    assert f"1 of {len(load_inventory(None).links)} links have a fault" in out
    code, out, _ = run(monkeypatch, fake, "fault", "clear", "--json")
    assert code == 0
    assert [r["link"] for r in json.loads(out)["results"] if r["changed"]] == ["kafka"]
    code, out, _ = run(monkeypatch, fake, "fault", "up", "kafka")
    assert code == 0


def test_unreachable_server_exits_4(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    fake.down.add(NORTH)
    code, out, err = run(monkeypatch, fake, "fault", "list")
    assert code == 4
    assert "device-north" in out  # the table is still printed
    inv = load_inventory(None)
    on_north = len(inv.links_on("tp-north"))  # device-north and the experiment cohort's device-north-x
    assert unwrap(err).startswith(
        f"error: could not read {on_north} of {len(inv.links)} links: device-north: cannot connect"
    )
    code, _, err = run(monkeypatch, fake, "fault", "down", "device-north")
    assert code == 4
    assert "http://127.0.0.1:17474" in unwrap(err)


def test_missing_proxy_is_named_with_a_hint(monkeypatch: pytest.MonkeyPatch, fake: FakeToxiproxy) -> None:
    del fake.proxies(INTERNAL)["kafka"]
    code, _, err = run(monkeypatch, fake, "fault", "up", "kafka")
    assert code == 4
    assert "has no proxy 'kafka'" in unwrap(err)
    assert "pushctl stack up" in unwrap(err)
