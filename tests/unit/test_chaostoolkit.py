"""The Chaos Toolkit extension: the CLI calls it builds, the target it resolves, how failures map to ActivityFailed.

The subprocess is the one thing faked (`_cli._run`); tests/integration/test_chaostoolkit.py runs the
real `chaos run` against a real stack.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from pushctl.chaostoolkit import _cli, actions, control, discover, probes


class FakeCli:
    """Records every argv and answers with one canned result."""

    def __init__(self, returncode: int = 0, stdout: Any = None, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.result = _cli.Completed(returncode, json.dumps({"ok": True} if stdout is None else stdout), stderr)

    def __call__(self, argv: Sequence[str], timeout: float) -> _cli.Completed:
        assert timeout > 0
        self.calls.append(list(argv))
        return self.result

    @property
    def args(self) -> list[str]:
        """The last call's arguments after `python -m pushctl.cli.main`."""
        argv = self.calls[-1]
        assert argv[:3] == [sys.executable, "-m", "pushctl.cli.main"]
        return argv[3:]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> FakeCli:
    fake = FakeCli()
    monkeypatch.setattr(_cli, "_run", fake)
    return fake


def _answer(monkeypatch: pytest.MonkeyPatch, returncode: int, stdout: Any = None, stderr: str = "") -> FakeCli:
    fake = FakeCli(returncode, stdout, stderr)
    monkeypatch.setattr(_cli, "_run", fake)
    return fake


def test_drain_is_held_by_default_for_ctk_rollbacks_and_returns_the_json(cli: FakeCli) -> None:
    result = actions.drain("south", inventory="/srv/prod.toml", confirm_target="prod")

    assert result == {"ok": True}
    assert cli.args == [
        "--inventory",
        "/srv/prod.toml",
        "drain",
        "--region",
        "south",
        "--spread",
        "5s",
        "--hold",
        "--confirm-target",
        "prod",
        "--json",
    ]


def test_a_drill_that_rolls_back_itself_and_its_probe_options(cli: FakeCli) -> None:
    actions.drain("north", spread="2s", hold=False, devices=50, rate=20.0, slo=99.0)

    assert cli.args == [
        "drain",
        "--region",
        "north",
        "--spread",
        "2s",
        "--devices",
        "50",
        "--rate",
        "20.0",
        "--slo",
        "99.0",
        "--json",
    ]


def test_no_target_named_leaves_the_choice_to_the_cli(cli: FakeCli) -> None:
    """$PUSHCTL_INVENTORY and $PUSHCTL_CONFIRM_TARGET reach the CLI through its environment."""
    actions.restore("south", probe=False)

    assert cli.args == ["restore", "--region", "south", "--no-probe", "--json"]


def test_the_experiment_configuration_names_the_target_and_arguments_win(cli: FakeCli) -> None:
    config = {"pushctl_inventory": "/srv/staging.toml", "pushctl_confirm_target": "staging"}

    actions.switch_idc(to="idc2", configuration=config)
    assert cli.args[:2] == ["--inventory", "/srv/staging.toml"]
    assert cli.args[-3:] == ["--confirm-target", "staging", "--json"]

    actions.switch_idc(weights="idc1=30,idc2=70", inventory="/srv/other.toml", configuration=config)
    assert cli.args[:2] == ["--inventory", "/srv/other.toml"]


def test_undo_verbs_take_no_confirmation(cli: FakeCli) -> None:
    """The CLI does not accept --confirm-target on undo: recover, heal and fault clear need none."""
    config = {"pushctl_inventory": "/srv/prod.toml", "pushctl_confirm_target": "prod"}

    actions.heal_redis(configuration=config)
    assert cli.args == ["--inventory", "/srv/prod.toml", "heal", "redis", "--json"]
    actions.clear_faults("cache", configuration=config)
    assert cli.args == ["--inventory", "/srv/prod.toml", "fault", "clear", "cache", "--json"]
    actions.recover(include_held=True, configuration=config)
    assert cli.args == ["--inventory", "/srv/prod.toml", "recover", "--all", "--json"]
    actions.abort(within="30s", configuration=config)
    assert cli.args == ["--inventory", "/srv/prod.toml", "abort", "--timeout", "30s", "--json"]


def test_any_fault_on_any_link_with_its_attributes(cli: FakeCli) -> None:
    actions.add_fault("device-south", "latency", {"latency": 200, "jitter": 20}, stream="both", toxicity=0.5)
    assert cli.args == [
        "fault",
        "add",
        "device-south",
        "latency",
        "--stream",
        "both",
        "--attr",
        "latency=200",
        "--attr",
        "jitter=20",
        "--toxicity",
        "0.5",
        "--json",
    ]

    actions.take_link_down("cache", confirm_target="ctk")
    assert cli.args == ["fault", "down", "cache", "--confirm-target", "ctk", "--json"]


def test_the_other_failover_verbs(cli: FakeCli) -> None:
    actions.throttle_access(limit="500/s", hold=False, duration="20s", probe=False)
    assert cli.args == ["throttle", "access", "--limit", "500/s", "--duration", "20s", "--no-probe", "--json"]
    actions.throttle_access(auto=True, safe_load=1000.0, threshold=0.5)
    auto = ["--auto", "--safe-load", "1000.0", "--threshold", "0.5"]
    assert cli.args == ["throttle", "access", *auto, "--hold", "--json"]
    actions.fail_redis(mode="latency", latency=300)
    assert cli.args == ["fail", "redis", "--mode", "latency", "--latency", "300", "--hold", "--json"]


def test_a_failing_command_raises_activity_failed_with_its_one_line_error_and_exit_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = "error: another action holds the lock of 'ctk' (drain, pid 4242)\nhint: wait, or pushctl abort\n"
    _answer(monkeypatch, 6, stdout="", stderr=stderr)

    with pytest.raises(ActivityFailed) as failed:
        actions.drain("south")

    message = str(failed.value)
    assert "exited 6 (another action holds the lock" in message
    assert message.endswith("another action holds the lock of 'ctk' (drain, pid 4242)")
    assert "pushctl drain --region south" in message


def test_an_unknown_link_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """ToxicOnUnknownLink: pushctl refuses (exit 2), nothing applied, and CTK sees why."""
    _answer(monkeypatch, 2, stdout="", stderr="error: unknown link 'nosuch'; valid links: cache, kafka\n")

    with pytest.raises(ActivityFailed, match=r"exited 2 \(bad input\): unknown link 'nosuch'"):
        actions.add_fault("nosuch", "latency", {"latency": 5})


def test_success_without_json_is_a_failure_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_cli, "_run", lambda argv, timeout: _cli.Completed(0, "drained\n", ""))

    with pytest.raises(ActivityFailed, match="printed no JSON"):
        actions.drain("south")


def test_slo_check_returns_a_breach_for_the_tolerance_to_judge(monkeypatch: pytest.MonkeyPatch) -> None:
    summary = {"sent": 500, "on_time": 480, "late": 15, "lost": 5, "duplicates": 0, "delivery_rate": 96.0}
    fake = _answer(monkeypatch, 1, stdout={"target": 99.9, "passed": False, "summary": summary})

    result = probes.slo_check(duration="3s", devices=20, rate=10.0)

    assert fake.args == [
        "slo",
        "check",
        "--target",
        "99.9",
        "--devices",
        "20",
        "--rate",
        "10.0",
        "--duration",
        "3s",
        "--deadline",
        "1s",
        "--grace",
        "3s",
        "--json",
    ]
    assert result["passed"] is False
    assert result["delivery_rate"] == 96.0
    assert result["lost"] == 5
    assert result["summary"] == summary


def test_slo_check_on_an_unreachable_target_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, 4, stdout="", stderr="error: access at 127.0.0.1:17400 did not answer\n")

    with pytest.raises(ActivityFailed, match=r"exited 4 \(target unreachable\)"):
        probes.slo_check()


def test_applied_changes_counts_policies_faults_and_held_actions(monkeypatch: pytest.MonkeyPatch) -> None:
    state = {"policies": [{"kind": "drain"}], "faults": [{"link": "cache"}, {"link": "device-south"}], "actions": []}
    fake = _answer(monkeypatch, 0, stdout=state)

    assert probes.applied_changes() == 3
    assert fake.args == ["status", "--json"]

    _answer(monkeypatch, 0, stdout={"policies": [], "faults": [], "actions": []})
    assert probes.applied_changes() == 0


def test_ledger_figures_of_a_short_probe_run(monkeypatch: pytest.MonkeyPatch) -> None:
    run = {"sent": 10, "on_time": 9, "late": 1, "lost": 0, "duplicates": 0, "delivery_rate": 90.0, "by_region": {}}
    fake = _answer(monkeypatch, 0, stdout=run)

    assert probes.ledger(duration="2s") == {
        "sent": 10,
        "on_time": 9,
        "late": 1,
        "lost": 0,
        "duplicates": 0,
        "delivery_rate": 90.0,
    }
    assert fake.args[:2] == ["probe", "run"]


def test_error_line_without_an_error_prefix_is_the_last_line() -> None:
    assert _cli.error_line("Traceback ...\nKeyError: 'x'\n") == "KeyError: 'x'"
    assert _cli.error_line("") == "no message on stderr"


def test_a_command_past_its_timeout_is_stopped_with_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM first: the CLI rolls back on it, as on Ctrl-C."""
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(130)); time.sleep(30)"
    started = time.monotonic()

    with pytest.raises(ActivityFailed, match=r"did not finish within 0.5s \(stopped\)"):
        _cli._run([sys.executable, "-c", code], 0.5)

    assert time.monotonic() - started < 10


def test_discover_lists_every_activity_with_its_doc_and_argument_types() -> None:
    found = discover(discover_system=False)

    by_name = {a["name"]: a for a in found["activities"]}
    assert set(by_name) == set(actions.__all__) | set(probes.__all__)
    assert {a["type"] for a in found["activities"]} == {"action", "probe"}
    drain = by_name["drain"]
    assert drain["mod"] == "pushctl.chaostoolkit.actions"
    assert drain["doc"].startswith("Drain a region")
    assert {"name": "region", "type": "string"} in drain["arguments"]
    assert {"name": "hold", "type": "boolean", "default": True} in drain["arguments"]
    assert by_name["slo_check"]["type"] == "probe"
    assert by_name["applied_changes"]["return_type"] == "integer"


def _journal(status: str, met: bool | None) -> dict[str, Any]:
    probe = {"activity": {"name": "delivery-rate-within-slo"}, "status": "succeeded", "tolerance_met": bool(met)}
    before = None if met is None else {"steady_state_met": met, "probes": [probe]}
    return {"status": status, "deviated": False, "steady_states": {"before": before, "after": None}}


def test_the_control_fails_a_run_whose_steady_state_missed_before_the_method() -> None:
    """MissedBeforeMethod: CTK calls it completed (exit 0); the control makes it failed (exit 1)."""
    journal = _journal("completed", met=False)

    control.after_experiment_control(context={}, state=journal)

    assert journal["status"] == "failed"


@pytest.mark.parametrize(
    ("status", "met"),
    [("completed", True), ("completed", None), ("failed", False), ("interrupted", True)],
    ids=["SteadyStateHeld", "NoHypothesis", "AlreadyFailed", "Interrupted"],
)
def test_the_control_leaves_every_other_run_as_ctk_ended_it(status: str, met: bool | None) -> None:
    journal = _journal(status, met)

    control.after_experiment_control(context={}, state=journal)

    assert journal["status"] == status
