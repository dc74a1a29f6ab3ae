"""Long-connection faults (`pushctl fault storm`, `fault connections --drop/--half-open`): the pure parts.

Plans, shares, bounds and bad input; every verified claim shown failing on the measurements of a
broken platform (a device that never comes back, a share that is not the one asked, a broker that
keeps silent connections, a message that never arrives).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from pushctl import render
from pushctl.actions.base import Outcome
from pushctl.actions.connections import ConnectionFault, Storm, parse_share, share_tolerance
from pushctl.actions.reconnects import peak_rate
from pushctl.actions.runner import ActionReport
from pushctl.contract.topology import load_inventory
from pushctl.errors import UsageError
from tests.helpers import run_main

INV = load_inventory(None)


def failed(outcomes: list[Outcome]) -> list[str]:
    return [o.text for o in outcomes if not o.ok]


def cohorts(lost: int = 0, late: int = 0) -> dict[str, dict[str, object]]:
    hit: dict[str, object] = {
        "devices": 10,
        "sent": 40,
        "on_time": 40 - lost - late,
        "late": late,
        "lost": lost,
        "duplicates": 0,
    }
    return {"affected": hit, "unaffected": {**hit, "devices": 90, "lost": 0, "late": 0, "on_time": 40}}


def measured(
    on: int = 100, hit: int = 100, back: int | None = None, all_back_s: float | None = 1.2
) -> dict[str, object]:
    back = hit if back is None else back
    return {
        "region": "north",
        "devices_on_region": on,
        "affected": hit,
        "back": back,
        "not_back": hit - back,
        "all_back_s": all_back_s if back == hit else None,
        "cohorts": cohorts(),
    }


# ---- shares ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "share"), [("30%", 0.3), ("0.3", 0.3), (" 10 % ".replace(" %", "%"), 0.1), ("100%", 1.0)]
)
def test_parse_share_takes_a_percentage_or_a_fraction(text: str, share: float) -> None:
    assert parse_share(text, what="--drop") == pytest.approx(share)


@pytest.mark.parametrize("text", ["30", "0", "0%", "-5%", "101%", "nan", "lots", "30%%", ""])
def test_parse_share_refuses_what_is_not_a_share(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_share(text, what="--drop")
    assert "--drop" in exc.value.message


def test_share_tolerance_narrows_with_more_connections() -> None:
    assert share_tolerance(0.3, 30) > share_tolerance(0.3, 3000) >= 0.05
    assert share_tolerance(0.3, 0) == 1.0


def test_peak_rate_is_the_steepest_step_and_ignores_counter_resets() -> None:
    assert peak_rate([(0.0, 0.0), (0.5, 10.0), (1.0, 60.0), (1.5, 0.0)]) == 100.0
    assert peak_rate([(0.0, 5.0)]) is None


# ---- plans and bounds --------------------------------------------------------------------------
def test_drop_plans_a_reset_peer_toxic_drawn_per_connection_on_the_device_link() -> None:
    action = ConnectionFault(INV, "north", "drop", 0.3)
    toxic = action.spec.toxics[0]
    assert (action.spec.link, toxic.type, toxic.toxicity, toxic.stream) == (
        "device-north",
        "reset_peer",
        0.3,
        "upstream",
    )
    assert action.params() == {"region": "north", "drop": "30%", "max_recovery": "15s"}
    [step] = action.plan()
    assert "toxicity 0.3" in step.change and step.undo == "remove toxic pushctl-drop-up"
    assert action.probe_hints() == {"keepalive": 1.0}  # every connection sends a ping meanwhile


def test_half_open_plans_a_silent_stream_and_a_keepalive_that_notices_it() -> None:
    action = ConnectionFault(INV, "south", "half-open", 0.1, duration_s=8, keepalive_s=0.5)
    toxic = action.spec.toxics[0]
    assert (toxic.type, toxic.attributes, toxic.toxicity, toxic.stream) == (
        "latency",
        {"latency": 3_600_000, "jitter": 0},
        0.1,
        "downstream",
    )
    assert action.params() == {"region": "south", "half-open": "10%", "duration": "8s", "max_recovery": "8s"}
    assert action.probe_hints() == {"keepalive": 0.5}


def test_storm_plans_a_reset_of_every_connection_undone_by_bringing_the_link_up() -> None:
    action = Storm(INV, "east")
    [step] = action.plan()
    assert step.component == "link device-east" and "every device of east" in step.change
    assert action.spec.action == "down"  # its undo: the link up, should the reset stop half-way


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Storm(INV, "west"), "unknown region 'west'"),
        (lambda: Storm(INV, "north", max_recovery_s=0), "--max-recovery"),
        (lambda: ConnectionFault(INV, "north", "sever", 0.3), "unknown connection fault"),
        (lambda: ConnectionFault(INV, "north", "drop", 1.5), "at most 100%"),
        (lambda: ConnectionFault(INV, "north", "half-open", 0.1, duration_s=0), "--duration"),
        (lambda: ConnectionFault(INV, "north", "half-open", 0.1, keepalive_s=0.01), "--keepalive"),
    ],
)
def test_bad_parameters_are_usage_errors(build: object, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        build()  # type: ignore[operator]
    assert message in exc.value.message


@pytest.mark.parametrize(
    "args",
    [
        ["fault", "connections", "--region", "north", "--drop", "30"],
        ["fault", "connections", "--region", "north", "--drop", "30%", "--half-open", "10%"],
        ["fault", "connections", "--region", "north"],
        ["fault", "connections", "--region", "atlantis", "--drop", "30%"],
        ["fault", "connections", "--region", "north", "--half-open", "10%", "--duration", "soon"],
        ["fault", "storm", "--region", "north", "--max-recovery", "0s"],
    ],
)
def test_bad_input_is_one_error_line_exit_2_and_nothing_applied(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str]
) -> None:
    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("PUSHCTL_INVENTORY", raising=False)
    code, _out, err = run_main(monkeypatch, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert (
        lines[0].startswith("error: ") and lines[1:] in ([], [lines[-1]]) and lines[-1].startswith(("error", "hint"))
    ), err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no journal, no lock: nothing was applied


# ---- checks: each claim fails on a broken platform ---------------------------------------------
def test_storm_passes_when_every_device_was_hit_and_came_back_and_nothing_was_lost() -> None:
    outcomes = Storm(INV, "north").checks(measured())
    assert failed(outcomes) == []
    assert [o.timing for o in outcomes] == [False, False, True, False]


def test_storm_fails_when_a_device_never_comes_back() -> None:
    texts = failed(Storm(INV, "north").checks(measured(back=97)))
    assert texts == ["3 of 100 devices that lost their connection never came back"]


def test_storm_fails_when_it_did_not_reach_every_device() -> None:
    texts = failed(Storm(INV, "north").checks(measured(hit=60)))
    assert texts == ["the storm disconnected 60 of the 100 devices on north"]


def test_storm_recovery_past_the_bound_is_a_timing_failure() -> None:
    outcomes = Storm(INV, "north", max_recovery_s=5).checks(measured(all_back_s=7.5))
    [late] = [o for o in outcomes if not o.ok]
    assert late.timing and "back 7.5s after the fault (max 5s)" in late.text


def test_a_message_missing_for_an_affected_device_fails_whatever_the_timing() -> None:
    m = measured() | {"cohorts": cohorts(lost=2, late=3)}
    [missing] = [o for o in Storm(INV, "north").checks(m) if not o.ok]
    assert not missing.timing
    assert missing.text == "affected devices: 35 of 40 on time, 3 late, 2 undelivered 2s after they were back"


def test_drop_fails_when_the_share_dropped_is_not_the_share_asked() -> None:
    action = ConnectionFault(INV, "north", "drop", 0.3)
    assert failed(action.checks(measured(on=300, hit=95))) == []
    texts = failed(action.checks(measured(on=300, hit=300)))
    assert texts == ["dropped: 300 of 300 connections (100%; asked 30% ± 8)"]


def test_drop_fails_when_no_device_was_on_the_region() -> None:
    texts = failed(ConnectionFault(INV, "north", "drop", 0.3).checks(measured(on=0, hit=0)))
    assert "no probe device was on north when the fault began" in texts


def test_half_open_fails_when_nobody_noticed_the_silence() -> None:
    texts = failed(ConnectionFault(INV, "north", "half-open", 0.1).checks(measured(on=100, hit=0)))
    assert texts == [
        "silenced and noticed: 0 of 100 connections (0%; asked 10% ± 9)",
        "no probe device on north lost its connection",
    ]


def test_half_open_fails_when_the_broker_keeps_the_silent_connections() -> None:
    action = ConnectionFault(INV, "north", "half-open", 0.1)
    ok = measured(on=100, hit=10) | {"broker_ghost_connections": 1}
    assert failed(action.checks(ok)) == []
    texts = failed(action.checks(ok | {"broker_ghost_connections": 10}))
    assert texts == [
        "north's broker still held 10 connections no device was using at the end of the fault: "
        "it does not notice connections gone silent"
    ]


def test_without_the_probe_only_what_the_platform_reports_is_checked() -> None:
    assert Storm(INV, "north").checks({"region": "north", "dispatcher_requests_peak_per_s": 3.0}) == []


def test_the_report_shows_the_affected_and_unaffected_ledgers_as_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(render, "console", Console(file=out, width=160, color_system=None))
    m = measured() | {"cohorts": cohorts(lost=2, late=3), "broker_handshakes_peak_per_s": 412.0}
    report = ActionReport("storm", {"region": "north"}, [], "", False, m, None, None, [], 99.9, False, "FAILED", 1.0)
    render.action_report(report)
    text = out.getvalue()
    assert re.search(r"broker_handshakes_peak_per_s\s*│\s*412.0", text), text
    assert "cohorts" not in text  # the ledgers are rows of the delivery table, not a dict
    assert re.search(r"affected devices \(10\)\s*│\s*40\s*│\s*35\s*│\s*3\s*│\s*2", text), text
    assert re.search(r"unaffected devices \(90\)\s*│\s*40\s*│\s*40\s*│\s*0\s*│\s*0", text), text
