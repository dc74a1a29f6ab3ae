"""The change life cycle, through `execute` (what `pushctl drain` and friends run): the undo step is
on disk before the change, one run per target, Ctrl-C in any phase ends rolled back with exit 130,
a failed undo step does not stop the others, and a killed run is undone by `recover`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from pushctl.actions.base import Action, ActionContext, PlanStep
from pushctl.actions.drain import WithdrawDrainPolicy
from pushctl.actions.journal import load_entries
from pushctl.actions.lifecycle import ChangeLifecycle
from pushctl.actions.recover import recover
from pushctl.actions.runner import RunOptions, execute
from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.control import PlatformClient
from pushctl.errors import Interrupted, LockHeld, PushctlError, RollbackFailed

pytestmark = pytest.mark.timeout(30)

NO_PROBE = RunOptions(probe=None, warmup_s=0.0)


class Undone(UndoStep):
    """An undo step that records that it ran (and fails when told to)."""

    op: ClassVar[str] = "test_undone"
    name: str
    fail: bool = False
    ran: ClassVar[list[str]] = []

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        Undone.ran.append(self.name)
        if self.fail:
            raise PushctlError(f"{self.name} would not go back")
        return f"undid {self.name}"


class InterruptingUndo(Undone):
    """Ctrl-C arrives while this step runs; the step (and every one after it) must still complete."""

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.05)  # the signal is handled here
        os.kill(os.getpid(), signal.SIGINT)  # a second one only says the rollback is in progress
        await asyncio.sleep(0.05)
        return await super().run(inv, api, log)


def on_disk(path: str) -> dict[str, Any]:
    """The journal as a `pushctl recover` after `kill -9` would read it."""
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def ctrl_c() -> None:
    os.kill(os.getpid(), signal.SIGINT)


class FakeAction(Action):
    """Journals `steps` and makes one change per step; `interrupt_in` names the phase Ctrl-C hits."""

    name = "fake"
    requires_healthy = False
    timeout_s = 5.0

    def __init__(self, steps: list[UndoStep], *, interrupt_in: str | None = None) -> None:
        self.steps = steps
        self.interrupt_in = interrupt_in
        self.seen_on_disk: list[dict[str, Any]] = []  # the journal file as each change saw it
        self.changed: list[str] = []

    def params(self) -> dict[str, Any]:
        return {"steps": len(self.steps)}

    def plan(self) -> list[PlanStep]:
        return [PlanStep("test", "change", "nothing", "undo")]

    async def _phase(self, phase: str) -> None:
        if self.interrupt_in == phase:
            ctrl_c()
            await asyncio.sleep(5)  # cancelled by the signal long before this ends
            raise AssertionError(f"the signal did not cancel {phase}")

    async def preflight(self, ctx: ActionContext) -> None:
        await self._phase("preflight")

    async def apply(self, ctx: ActionContext) -> None:
        for step in self.steps:
            ctx.journal.will_undo(step)
            self.seen_on_disk.append(on_disk(ctx.journal.entry.path))
            self.changed.append(step.describe)
            await self._phase("apply")

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        await self._phase("effect")
        return {}


@pytest.fixture
def inv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Inventory:
    monkeypatch.setenv("PUSHCTL_RUN_DIR", str(tmp_path))
    Undone.ran.clear()
    return load_inventory()


def only_status(inv: Inventory) -> str:
    (entry,) = load_entries(inv)
    return entry.status


async def test_each_undo_step_is_on_disk_before_its_change_is_made(inv: Inventory) -> None:
    action = FakeAction([Undone(name="a"), Undone(name="b")])
    report = await execute(inv, action, NO_PROBE, log=lambda _: None)
    first, second = action.seen_on_disk
    assert [u["describe"] for u in first["undo"]] == ["test_undone"]
    assert [u["args"]["name"] for u in second["undo"]] == ["a", "b"]
    assert first["status"] == "applying"
    assert Undone.ran == ["b", "a"]  # newest first
    assert [r["ok"] for r in report.rollback] == [True, True]
    assert only_status(inv) == "rolled-back"


async def test_a_second_run_on_the_same_target_is_refused_while_the_first_holds_it(inv: Inventory) -> None:
    async with ChangeLifecycle(inv, "drain --region south", log=lambda _: None):
        with pytest.raises(LockHeld) as refused:
            async with ChangeLifecycle(inv, "throttle access", log=lambda _: None):
                pass
    assert refused.value.exit_code == 6
    assert "drain --region south" in refused.value.message
    async with ChangeLifecycle(inv, "throttle access", log=lambda _: None):  # free again once released
        pass


async def test_a_run_is_refused_while_an_earlier_one_left_changes_behind(inv: Inventory) -> None:
    async with ChangeLifecycle(inv, "fake", log=lambda _: None) as life:
        life.begin(FakeAction([])).will_undo(Undone(name="a"))  # then killed: never rolled back
    with pytest.raises(LockHeld) as refused:
        await execute(inv, FakeAction([]), NO_PROBE, log=lambda _: None)
    assert refused.value.exit_code == 6 and refused.value.hint == "run `pushctl recover` first"


@pytest.mark.parametrize("phase", ["preflight", "apply", "effect"])
async def test_ctrl_c_in_any_phase_rolls_back_what_was_applied_and_exits_130(inv: Inventory, phase: str) -> None:
    said: list[str] = []
    action = FakeAction([Undone(name="a")], interrupt_in=phase)
    with pytest.raises(Interrupted) as stopped:
        await execute(inv, action, NO_PROBE, log=said.append)
    assert stopped.value.exit_code == 130
    assert said[0] == "SIGINT: rolling back before exit ..."
    if phase == "preflight":  # nothing journaled, nothing changed
        assert (action.changed, Undone.ran, load_entries(inv)) == ([], [], [])
    else:
        assert Undone.ran == ["a"]
        assert only_status(inv) == "rolled-back"
    assert "rolled back" in stopped.value.message


async def test_ctrl_c_during_the_rollback_lets_it_finish_then_exits_130(inv: Inventory) -> None:
    said: list[str] = []
    action = FakeAction([Undone(name="a"), InterruptingUndo(name="b"), Undone(name="c")])
    with pytest.raises(Interrupted):
        await execute(inv, action, NO_PROBE, log=said.append)
    assert Undone.ran == ["c", "b", "a"]
    assert only_status(inv) == "rolled-back"
    assert said == ["SIGINT: rolling back before exit ...", "SIGINT: rollback in progress, please wait"]


async def test_a_failed_undo_step_does_not_stop_the_others_and_fails_the_rollback(inv: Inventory) -> None:
    action = FakeAction([Undone(name="a"), Undone(name="b", fail=True), Undone(name="c")])
    with pytest.raises(RollbackFailed) as failed:
        await execute(inv, action, NO_PROBE, log=lambda _: None)
    assert Undone.ran == ["c", "b", "a"]
    assert failed.value.exit_code == 7
    assert failed.value.message == "rollback failed: test_undone: b would not go back"
    assert failed.value.hint is not None and "pushctl recover" in failed.value.hint
    assert only_status(inv) == "rollback-failed"


async def test_a_held_drill_stays_applied_and_is_marked_held(inv: Inventory) -> None:
    report = await execute(inv, FakeAction([Undone(name="a")]), RunOptions(probe=None, hold=True), log=lambda _: None)
    assert report.held and Undone.ran == [] and only_status(inv) == "held"


async def test_a_killed_runs_journal_is_undone_by_recover_with_the_same_typed_steps(inv: Inventory) -> None:
    async with ChangeLifecycle(inv, "drain --region south", log=lambda _: None) as life:
        journal = life.begin(FakeAction([]))
        journal.will_undo(WithdrawDrainPolicy(region="south"))
        journal.set_status("applied")
        # kill -9 here: no rollback ran, the journal stays open

    deleted: list[str] = []

    def scheduler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            deleted.append(request.url.path)
            return httpx.Response(204)
        policy = {"kind": "drain", "region": "south", "spread_s": 5.0, "origin": "operator", "id": "p1",
                  "created_at": 1.0}  # fmt: skip
        return httpx.Response(200, json={"version": 1, "policies": [policy], "regions": {}})

    results, _ = await recover(inv, log=lambda _: None, transport=httpx.MockTransport(scheduler))
    assert deleted == ["/v1/policies/p1"]
    assert results[0]["steps"] == [
        {"step": "withdraw the drain policy for south", "ok": True, "detail": "removed 1 drain policy for south"}
    ]
    assert only_status(inv) == "recovered"
