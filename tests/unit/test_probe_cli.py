"""Probe pieces that need no platform: options, region weights, spreading, sharding, rendering."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from pushctl import render
from pushctl.cli.probe import GroupTarget, parse_regions, probe_options
from pushctl.cli.slo import breach_message, slo_held
from pushctl.contract.topology import load_inventory
from pushctl.errors import UsageError
from pushctl.probe.fleet import device_ids, spread
from pushctl.probe.ledger import Ledger, LedgerSummary
from pushctl.probe.probe import (
    access_url,
    device_config,
    dispatcher_url,
    fallback_endpoints,
    region_weights,
    worker_count,
)


def options(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "devices": 300, "rate": 200.0, "group_rate": 0.0, "group_size": 10,
        "group_target": GroupTarget.DEVICES, "duration": "10s", "deadline": "1s", "grace": "5s",
        "regions": None, "no_reconnect": False, "workers": None, "seed": None,
    }  # fmt: skip
    base.update(kw)
    return base


def test_probe_options_from_the_command_line() -> None:
    o = probe_options(**options(duration="1m", deadline="500ms", grace="0s", regions="north=2,east", no_reconnect=True))
    assert (o.duration, o.deadline, o.grace) == (60.0, 0.5, 0.0)
    assert o.regions == {"north": 2.0, "east": 1.0}
    assert o.reconnect is False


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"duration": "soon"}, "invalid --duration"),
        ({"deadline": "0s"}, "--deadline"),
        ({"rate": 0.0}, "nothing to send"),
        ({"regions": "north=x"}, "region=weight"),
        ({"regions": ","}, "at least one region"),
    ],
)
def test_bad_probe_options(kw: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        probe_options(**options(**kw))


def test_parse_regions() -> None:
    assert parse_regions(None) is None
    assert parse_regions("north=1, south=0.5") == {"north": 1.0, "south": 0.5}


@pytest.mark.parametrize(
    ("n", "weights", "expected"),
    [
        (300, {"north": 1, "east": 1, "south": 1}, {"north": 100, "east": 100, "south": 100}),
        (10, {"north": 1, "east": 1, "south": 1}, {"north": 4, "east": 3, "south": 3}),
        (7, {"north": 2, "east": 1, "south": 0}, {"north": 5, "east": 2}),
        (1, {"north": 1, "east": 1}, {"north": 1, "east": 0}),
        (0, {"north": 1}, {"north": 0}),
    ],
)
def test_spread_is_exact(n: int, weights: dict[str, float], expected: dict[str, int]) -> None:
    assert spread(n, weights) == expected
    assert sum(spread(n, weights).values()) == n


def test_device_ids_are_unique_carry_their_home_and_interleave_regions() -> None:
    ids = device_ids("ab12", {"north": 2, "east": 1})
    assert ids == [
        ("probe-ab12-north-00000", "north"),
        ("probe-ab12-east-00000", "east"),
        ("probe-ab12-north-00001", "north"),
    ]


@pytest.mark.parametrize(
    ("devices", "workers", "expected"),
    [(300, None, 0), (8000, None, 0), (8001, None, 2), (20000, None, 3), (100, 2, 2), (100, 0, 0)],
)
def test_worker_count(devices: int, workers: int | None, expected: int) -> None:
    assert worker_count(devices, workers) == expected


def test_too_many_devices_per_worker_is_refused() -> None:
    with pytest.raises(UsageError, match="per process"):
        worker_count(20000, 2)


def test_reference_inventory_targets() -> None:
    inv = load_inventory()
    assert dispatcher_url(inv) == "http://127.0.0.1:18100"  # through its Toxiproxy link
    assert access_url(inv) == "http://127.0.0.1:17400"  # no proxy in front of the access tier
    fallback = fallback_endpoints(inv)
    assert fallback["south"] == [
        ("south", "ws://127.0.0.1:18203/ws"),
        ("east", "ws://127.0.0.1:18202/ws"),
        ("north", "ws://127.0.0.1:18201/ws"),
    ]
    config = device_config(inv, reconnect=False)
    assert config.secret == inv.token and config.reconnect is False
    assert region_weights(inv, None) == {"north": 1.0, "east": 1.0, "south": 1.0}
    with pytest.raises(UsageError, match="unknown region 'west'"):
        region_weights(inv, {"west": 1.0})
    with pytest.raises(UsageError, match="at least one > 0"):
        region_weights(inv, {"north": 0.0})


def summary_with(lost: int, sent: int = 1000) -> LedgerSummary:
    ledger = Ledger(t0=0.0)
    ledger.register("d", "north")
    for i in range(sent):
        ledger.sent(f"m{i}", i / 100, ["d"])
        if i >= lost:
            ledger.delivered(f"m{i}", "d", i / 100 + 0.01)
    return ledger.summary(cutoff=100)


def test_slo_held_needs_the_rate_and_no_loss() -> None:
    assert slo_held(summary_with(0), 99.9)
    assert slo_held(summary_with(0), 100.0)
    assert not slo_held(summary_with(1), 99.9)  # 99.9 % on time, but one message lost
    assert not slo_held(summary_with(0, sent=0), 0.0)  # nothing measured is no pass
    message = breach_message(summary_with(3), 99.9)
    assert "99.700%" in message and "3 lost" in message and "t=0s" in message


def test_summary_renders_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=80, highlight=False))
    render.probe_summary(summary_with(3))
    render.slo_verdict(summary_with(3), 99.9, False)
    text = out.getvalue()
    assert "north" in text and "total" in text and "99.700%" in text
    assert "worst seconds" in text and "SLO BREACHED" in text
    assert "…" not in text  # nothing truncated


def test_live_view_renders_a_snapshot() -> None:
    from pushctl.probe.probe import ProbeSnapshot
    from pushctl.probe.sender import SenderStats

    ledger = Ledger(t0=0.0)
    ledger.sent("m", 0.0, ["d"])
    ledger.delivered("m", "d", 0.02)
    snap = ProbeSnapshot(
        phase="sending", elapsed_s=3.2, devices=30, online=29, connected={"north": 9, "east": 20},
        progress=ledger.progress(now=5.0), sender=SenderStats(requests=4), reconnects=2,
    )  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=100).print(render.probe_view(snap))
    text = out.getvalue()
    assert "29/30" in text and "east" in text and "100.000%" in text and "reconnects 2" in text
