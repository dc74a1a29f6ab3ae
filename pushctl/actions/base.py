"""The contract every failover action follows: plan (pure) -> apply (journaled) -> effect -> undo.

    class Drain(Action):
        def plan(self) -> list[PlanStep]: ...            # what changes where, how verified and undone
        async def apply(self, ctx: ActionContext) -> None: # ctx.journal.will_undo(step) before each change
        async def await_effect(self, ctx) -> dict[str, Any]: # wait for and measure the effect

Rollback is not a method: it is the journal's undo steps, run by `pushctl.actions.undo`, so a
rollback after `kill -9` (`pushctl recover`) does exactly what an in-process rollback does.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pushctl.actions.journal import Journal
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import Driver, Verb, driver_for
from pushctl.probe.probe import Probe


@dataclass(frozen=True)
class PlanStep:
    component: str
    change: str
    verify: str
    undo: str

    def describe(self) -> str:
        return f"{self.component}: {self.change} (verify: {self.verify}; undo: {self.undo})"


@dataclass(frozen=True)
class Outcome:
    """One verified claim of an action's plan: held or not, in words that name the symptom.

    `timing` marks a claim a slow test rig (not the platform) could make fail: how fast, how
    evenly, how much on time. Such a failure while the rig could not keep up is inconclusive;
    any other failure is a failure whatever the rig did.
    """

    ok: bool
    text: str
    timing: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "check": self.text, "timing": self.timing}


@dataclass
class ActionContext:
    inv: Inventory
    api: PlatformClient
    journal: Journal
    runtime: str
    log: Callable[[str], None]
    probe: Probe | None = None
    applied_at: float = 0.0
    notes: list[str] = field(default_factory=list)
    driver: Driver = field(default=None)  # type: ignore[assignment]  # None: the inventory's [driver]

    def __post_init__(self) -> None:
        if self.driver is None:
            self.driver = driver_for(self.inv)


class Action(abc.ABC):
    """A failover action. `drill` actions are rolled back at the end unless the operator holds them."""

    name: str = "action"
    drill: bool = True
    requires_healthy: bool = True  # heal actions run precisely when something is down
    timeout_s: float = 60.0
    # what the action asks of the target driver (`pushctl.drivers`): a verb, or "reference" for the
    # reference stack's own mechanics (links, processes), which only the reference driver offers
    verb: Verb = "reference"

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """What the journal records about this run (JSON-safe)."""

    @abc.abstractmethod
    def plan(self) -> list[PlanStep]:
        """Pure: the changes, in order, with how each is verified and undone."""

    async def preflight(self, ctx: ActionContext) -> None:  # noqa: B027 - optional hook
        """Action-specific checks before anything changes; raise UsageError to refuse."""

    @abc.abstractmethod
    async def apply(self, ctx: ActionContext) -> None:
        """Make the change; journal each undo step *before* the change it reverses."""

    async def await_effect(self, ctx: ActionContext) -> dict[str, Any]:
        """Wait until the change has had its effect; return measurements for the report."""
        return {}

    async def after_rollback(self, ctx: ActionContext) -> dict[str, Any]:
        """Wait for the platform to settle back (e.g. the scheduler withdraws its auto policy)."""
        return {}

    def probe_hints(self) -> dict[str, Any]:
        """Probe options this action needs to be observable (ProbeOptions fields), e.g. a keepalive short
        enough for devices to notice a silent connection while it lasts."""
        return {}

    def checks(self, measurements: dict[str, Any]) -> list[Outcome]:
        """The plan's "verify" column, checked against `measurements` (beyond the delivery SLO)."""
        return []

    def title(self) -> str:
        args = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in self.params().items() if v not in (None, False))
        return f"{self.name} {args}".strip()
