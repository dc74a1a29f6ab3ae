"""Typed undo steps: journals written before they existed still load and replay; an unknown op is a
clear failure that does not stop the other steps; `recover` runs the same steps as a rollback."""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import httpx
import pytest

import pushctl.actions
import pushctl.drivers
from pushctl.actions.capacity import RestoreConnectionLimit
from pushctl.actions.common import RestartComponent, ResumeComponent, RevertFault
from pushctl.actions.drain import SetAutoPolicies, WithdrawDrainPolicy
from pushctl.actions.idc import RestoreRoutingWeights
from pushctl.actions.journal import Journal, journal_dir, load_entries
from pushctl.actions.recover import recover
from pushctl.actions.throttle import RestoreThrottle
from pushctl.actions.undo import UndoStep, UnreadableUndo, registry, run_undo
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.drivers.command import RunCommand

pytestmark = pytest.mark.timeout(30)

DEAD_PID = 2**22 + 1  # above pid_max on Linux: no process has it

# A journal's undo list exactly as pushctl wrote it before the steps were typed (one of each op).
LEGACY_UNDO: list[dict[str, Any]] = [
    {"op": "remove_policy", "args": {"region": "south"}, "describe": "withdraw the drain policy for south"},
    {"op": "set_auto", "args": {"enabled": True}, "describe": "scheduler auto policies on"},
    {
        "op": "set_routing",
        "args": {"weights": {"idc1": 50.0, "idc2": 50.0}},
        "describe": "routing weights back to {'idc1': 50.0, 'idc2': 50.0}",
    },
    {
        "op": "set_throttle",
        "args": {"throttle": {"mode": "off", "limit_per_s": None, "safe_load_per_s": 20000.0, "threshold": 0.8}},
        "describe": "throttle back to off",
    },
    {"op": "set_limit", "args": {"region": "north", "limit": 10000}, "describe": "broker-north connection limit back"},
    {
        "op": "revert_fault",
        "args": {
            "spec": {
                "action": "down",
                "link": "device-south",
                "toxiproxy": "toxiproxy-south",
                "url": "http://127.0.0.1:8474",
                "toxics": [],
                "reset_connections": False,
            }
        },
        "describe": "revert take link device-south down",
    },
    {
        "op": "restart_component",
        "args": {"component": "broker-south", "runtime": "process"},
        "describe": "restart broker-south",
    },
    {
        "op": "resume_component",
        "args": {"component": "logic-idc1", "runtime": "docker"},
        "describe": "resume logic-idc1",
    },
]


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path))
    return load_inventory()


def write_journal(inv: Inventory, name: str, *, action: str, status: str, undo: list[dict[str, Any]]) -> Path:
    """A journal file as a pushctl killed mid-action leaves it."""
    directory = journal_dir(inv)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    entry = {
        "id": name,
        "action": action,
        "params": {},
        "inventory": inv.source,
        "pid": DEAD_PID,
        "created_at": 1.0,
        "status": status,
        "plan": [],
        "undo": undo,
        "events": [],
        "path": str(path),
    }
    path.write_text(json.dumps(entry, indent=2))
    return path


def test_a_journal_written_before_typed_steps_loads_with_every_step_typed(inv: Inventory) -> None:
    write_journal(inv, "20260101T000000-drain-aaaaaa", action="drain", status="applying", undo=LEGACY_UNDO)
    (entry,) = load_entries(inv)
    assert [type(s) for s in entry.undo] == [
        WithdrawDrainPolicy,
        SetAutoPolicies,
        RestoreRoutingWeights,
        RestoreThrottle,
        RestoreConnectionLimit,
        RevertFault,
        RestartComponent,
        ResumeComponent,
    ]
    assert [s.describe for s in entry.undo] == [u["describe"] for u in LEGACY_UNDO]
    drain = entry.undo[0]
    assert isinstance(drain, WithdrawDrainPolicy) and (drain.region, drain.kind) == ("south", "drain")


def test_steps_write_the_records_older_pushctl_reads(inv: Inventory) -> None:
    path = write_journal(inv, "20260101T000000-drain-bbbbbb", action="drain", status="applying", undo=LEGACY_UNDO)

    (entry,) = load_entries(inv)
    Journal(entry).set_status("rolled-back")  # a rewrite, as every status change does
    written = json.loads(path.read_text())["undo"]
    for old, new in zip(LEGACY_UNDO, written, strict=True):
        assert (new["op"], new["describe"]) == (old["op"], old["describe"])
        assert new["args"].items() >= old["args"].items()  # same args; a default may be spelled out
    assert list(written[0]) == ["op", "args", "describe"]


def test_a_new_step_describes_itself_like_the_old_journal_text() -> None:
    assert WithdrawDrainPolicy(region="south").describe == "withdraw the drain policy for south"
    assert RestartComponent(component="broker-south").to_json() == {
        "op": "restart_component",
        "args": {"component": "broker-south", "runtime": "process"},
        "describe": "restart broker-south",
    }


def test_the_registry_knows_every_step_the_actions_declare_under_its_journal_name() -> None:
    for package in (pushctl.actions, pushctl.drivers):  # drivers declare the undo of their own verbs
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")

    def subclasses(cls: type[UndoStep]) -> set[type[UndoStep]]:
        return {c for s in cls.__subclasses__() for c in {s, *subclasses(s)}}

    declared = {c for c in subclasses(UndoStep) if c is not UnreadableUndo and c.__module__.startswith("pushctl.")}
    assert set(registry().values()) == declared
    assert sorted(registry()) == sorted([*(u["op"] for u in LEGACY_UNDO), RunCommand.op])  # RunCommand: newer


def test_an_unknown_op_loads_and_fails_with_a_clear_message_not_a_traceback(inv: Inventory) -> None:
    undo = [*LEGACY_UNDO[:1], {"op": "frobnicate", "args": {"x": 1}, "describe": "unfrobnicate"}]
    write_journal(inv, "20260101T000000-drain-cccccc", action="drain", status="applying", undo=undo)
    (entry,) = load_entries(inv)
    step = entry.undo[1]
    assert isinstance(step, UnreadableUndo) and step.to_json() == undo[1]
    assert "unknown undo step 'frobnicate' in the journal" in step.problem


def test_known_op_with_bad_args_names_the_arg(inv: Inventory) -> None:
    bad = {"op": "set_limit", "args": {"region": "north", "limit": "lots"}, "describe": "limit back"}
    write_journal(inv, "20260101T000000-limit-dddddd", action="limit", status="applying", undo=[bad])
    (entry,) = load_entries(inv)
    step = entry.undo[0]
    assert isinstance(step, UnreadableUndo)
    assert "'set_limit'" in step.problem and "limit:" in step.problem


class Platform:
    """A scheduler and logic gateways answering over httpx.MockTransport; records each change."""

    def __init__(self, *, policies: list[dict[str, Any]]) -> None:
        self.policies = policies
        self.calls: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path == "/v1/policies":
            return httpx.Response(200, json={"version": 1, "policies": self.policies, "regions": {}})
        self.calls.append(f"{request.method} {path}")
        if request.method == "DELETE" and path.startswith("/v1/policies/"):
            return httpx.Response(204)
        if request.method == "PUT" and path == "/v1/routing":
            return httpx.Response(200, content=request.content)
        return httpx.Response(404, json={"error": "not here"})


def drain_policy(region: str, origin: str) -> dict[str, Any]:
    return {"kind": "drain", "region": region, "spread_s": 5.0, "origin": origin, "id": f"drain-{region}-{origin}",
            "created_at": 1.0}  # fmt: skip


async def test_recover_replays_a_killed_runs_journal_newest_step_first(inv: Inventory) -> None:
    undo = [LEGACY_UNDO[0], LEGACY_UNDO[2]]  # the run drained south, then switched routing
    path = write_journal(inv, "20260101T000000-drain-eeeeee", action="drain", status="applying", undo=undo)
    platform = Platform(policies=[drain_policy("south", "operator"), drain_policy("south", "auto")])
    results, settled = await recover(inv, log=lambda _: None, transport=httpx.MockTransport(platform.handle))
    assert platform.calls == ["PUT /v1/routing", "DELETE /v1/policies/drain-south-operator"]
    assert [s["ok"] for s in results[0]["steps"]] == [True, True]
    assert results[0]["steps"][1]["detail"] == "removed 1 drain policy for south"
    assert json.loads(path.read_text())["status"] == "recovered"
    assert settled == {}


async def test_an_unknown_step_fails_while_the_others_still_run(inv: Inventory) -> None:
    undo = [LEGACY_UNDO[0], {"op": "frobnicate", "args": {}, "describe": "unfrobnicate"}, LEGACY_UNDO[2]]
    path = write_journal(inv, "20260101T000000-drain-ffffff", action="drain", status="applying", undo=undo)
    platform = Platform(policies=[drain_policy("south", "operator")])
    results, _ = await recover(inv, log=lambda _: None, transport=httpx.MockTransport(platform.handle))
    assert platform.calls == ["PUT /v1/routing", "DELETE /v1/policies/drain-south-operator"]
    steps = results[0]["steps"]
    assert [s["ok"] for s in steps] == [True, False, True]
    assert steps[1]["detail"].startswith("unknown undo step 'frobnicate' in the journal")
    assert results[0]["ok"] is False
    assert json.loads(path.read_text())["status"] == "rollback-failed"


async def test_rollback_and_recover_run_the_same_step_code(inv: Inventory) -> None:
    platform = Platform(policies=[drain_policy("north", "operator")])
    outcomes = await run_undo(
        inv, [WithdrawDrainPolicy(region="north")], log=lambda _: None, transport=httpx.MockTransport(platform.handle)
    )
    assert [(o.ok, o.detail) for o in outcomes] == [(True, "removed 1 drain policy for north")]
    assert platform.calls == ["DELETE /v1/policies/drain-north-operator"]
