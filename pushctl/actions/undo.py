"""Undo steps: typed, declared beside the action that records them, run by rollback and `recover` alike.

An action journals one step before each change it makes (`ctx.journal.will_undo(step)`); rolling
back, in process or after `kill -9` (`pushctl recover`), loads the steps from the journal and runs
them with `run_undo`. Each step class names a stable `op`, the key the journal's JSON keeps:

    {"op": "remove_policy", "args": {"region": "south", "kind": "drain"}, "describe": "withdraw ..."}

    class WithdrawDrainPolicy(UndoStep):          # in pushctl/actions/drain.py
        op: ClassVar[str] = "remove_policy"
        region: str
        async def run(self, inv, api, log) -> str: ...

Every step is idempotent (running it twice, or after the change never happened, is harmless), so
recovery can replay a journal whatever point the interrupted run had reached. `registry()` lists
every step a journal may name; a journal naming another op (or args that do not parse) loads as an
`UnreadableUndo`, whose run fails with a message saying so, so `status` still reads that journal.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.errors import PushctlError

Log = Callable[[str], None]


class UndoStep(BaseModel):
    """Reverses one mutation; the fields are the journal's `args`, `describe` what reports show."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    op: ClassVar[str]
    describe: str = Field(default="", exclude=True)

    def model_post_init(self, context: Any, /) -> None:
        if not self.describe:
            object.__setattr__(self, "describe", self.summary())  # frozen: set once, while building

    def summary(self) -> str:
        """What `describe` says when the action gives no text of its own."""
        return self.op

    def args(self) -> dict[str, Any]:
        """The journal's `args` (JSON-safe)."""
        return self.model_dump(mode="json")

    def to_json(self) -> dict[str, Any]:
        """The journal's record of this step (the format every pushctl version reads)."""
        return {"op": self.op, "args": self.args(), "describe": self.describe}

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        """Undo the change; return what was done (shown in reports). Raise PushctlError on failure."""
        raise NotImplementedError


class UnreadableUndo(UndoStep):
    """A journal's step this pushctl cannot run (an unknown op, or args that do not parse).

    Kept as written, so rewriting the journal loses nothing; running it fails with `problem`.
    """

    op: ClassVar[str] = "?"
    name: str
    raw_args: dict[str, Any]
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"op": self.name, "args": self.raw_args, "describe": self.describe}

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        raise PushctlError(self.problem)


@functools.cache
def registry() -> dict[str, type[UndoStep]]:
    """Every undo step a journal may name, by its `op`."""
    # imported here, at first use: the modules declaring the steps import the journal, which imports this
    from pushctl.actions.capacity import RestoreConnectionLimit
    from pushctl.actions.common import RestartComponent, ResumeComponent, RevertFault
    from pushctl.actions.drain import SetAutoPolicies, WithdrawDrainPolicy
    from pushctl.actions.idc import RestoreRoutingWeights
    from pushctl.actions.throttle import RestoreThrottle
    from pushctl.drivers.command import RunCommand

    steps: tuple[type[UndoStep], ...] = (
        WithdrawDrainPolicy,
        SetAutoPolicies,
        RestoreRoutingWeights,
        RestoreThrottle,
        RestoreConnectionLimit,
        RevertFault,
        RestartComponent,
        ResumeComponent,
        RunCommand,
    )
    return {step.op: step for step in steps}


def undo_from_json(record: dict[str, Any]) -> UndoStep:
    """The typed step of one journal record; an `UnreadableUndo` when it names no known step."""
    op, args, describe = str(record.get("op")), record.get("args") or {}, str(record.get("describe") or "")
    step = registry().get(op)
    if step is None:
        problem = f"unknown undo step {op!r} in the journal (known: {', '.join(sorted(registry()))})"
    else:
        try:
            return step.model_validate({**args, "describe": describe})
        except ValidationError as exc:
            where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            problem = f"undo step {op!r} in the journal has invalid args: {where}"
    return UnreadableUndo(name=op, raw_args=dict(args), problem=problem, describe=describe or op)


@dataclass
class UndoOutcome:
    step: UndoStep
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step.describe, "ok": self.ok, "detail": self.detail}


def failures(outcomes: Sequence[UndoOutcome]) -> list[str]:
    """`describe: detail` of every step that failed."""
    return [f"{o.step.describe}: {o.detail}" for o in outcomes if not o.ok]


async def run_undo(
    inv: Inventory, steps: Sequence[UndoStep], *, log: Log, transport: httpx.AsyncBaseTransport | None = None
) -> list[UndoOutcome]:
    """Run `steps` in reverse order; every step is tried even when an earlier one fails."""
    outcomes = []
    async with PlatformClient(inv, timeout=5.0, transport=transport) as api:
        for step in reversed(steps):
            try:
                detail = await step.run(inv, api, log)
                outcomes.append(UndoOutcome(step, True, detail))
            except PushctlError as exc:
                outcomes.append(UndoOutcome(step, False, exc.message))
    return outcomes
