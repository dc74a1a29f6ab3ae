"""Target drivers: what makes a change on the target, and undoes it, behind the actions.

An action decides what to change and verifies the effect; its driver makes the change. Each verb
journals the undo of its change (`ctx.journal.will_undo`) *before* making it, so a rollback, `pushctl
recover` after `kill -9` and `pushctl abort` replay it whichever driver made it.

    [driver]
    kind = "command"      # the inventory picks one; "reference" (pushctl's control API) by default

Drivers are found through the `pushctl.drivers` entry-point group (a name -> a callable taking the
`Inventory` and returning a `Driver`); pushctl ships `reference` and `command`. docs/drivers.md
describes the interface and the guarantees.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pushctl.contract.topology import Inventory
from pushctl.errors import InventoryError

if TYPE_CHECKING:
    from pushctl.actions.base import ActionContext

__all__ = ["ENTRY_POINT_GROUP", "Driver", "StorageFault", "ThrottleRequest", "Verb", "driver_for", "known_kinds"]

ENTRY_POINT_GROUP = "pushctl.drivers"
BUILTIN = {"reference": "pushctl.drivers.reference:ReferenceDriver", "command": "pushctl.drivers.command:CommandDriver"}

# What an action asks of its driver: one of the verbs, or
#   "reference": the reference stack's own mechanics (Toxiproxy links, the runtime's processes, broker limits)
#   "journal":   nothing new: it only replays journaled undo steps (heal)
Verb = Literal["drain", "restore", "switch", "throttle", "storage_fault", "reference", "journal"]


@dataclass(frozen=True)
class ThrottleRequest:
    """`pushctl throttle`: a fixed limit on the direct path, or auto past `threshold` x the safe load."""

    limit: float | None
    auto: bool
    safe_load: float | None
    threshold: float

    @property
    def mode(self) -> str:
        return "auto" if self.auto else "fixed"


@dataclass(frozen=True)
class StorageFault:
    """`pushctl fail redis`: the payload cache `service` down, slow, crashed or frozen."""

    mode: str  # down | latency | crash | pause
    service: str
    latency_ms: int
    links: tuple[str, ...]  # the reference stack's paths to the cache


@runtime_checkable
class Driver(Protocol):
    """Makes the changes an action asks for on one target; every verb journals its undo before its change."""

    kind: str

    def require(self, verb: Verb, what: str) -> None:
        """Refuse (UsageError, exit 2) before anything changes when this driver cannot do `verb` for `what`."""

    async def drain(self, ctx: ActionContext, region: str, spread_s: float) -> str:
        """Move the devices off `region` over `spread_s` seconds. Returns a note for the report."""

    async def restore(self, ctx: ActionContext, region: str) -> str:
        """Withdraw the drain of `region` (the undo of a drain: journals nothing)."""

    async def switch(self, ctx: ActionContext, weights: dict[str, float]) -> str:
        """Route traffic between the IDCs by `weights`."""

    async def throttle(self, ctx: ActionContext, want: ThrottleRequest) -> str:
        """Throttle the access tier's direct path (the excess goes to the buffer)."""

    async def storage_fault(self, ctx: ActionContext, fault: StorageFault) -> str:
        """Fail the payload cache as `fault` says."""

    async def snapshot(self) -> str | None:
        """The target's state, compared after the rollback (None: this driver has no baseline check)."""

    async def wait_baseline(self, before: str) -> tuple[float | None, str]:
        """Seconds until `snapshot()` is `before` again (None: not in time), and the last state read."""


DriverFactory = Callable[[Inventory], Driver]


@functools.cache
def _factories() -> dict[str, str]:
    """Driver kind -> "module:attr": the built-ins, then the entry points (a plug-in may add kinds)."""
    found = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def _load(spec: str) -> DriverFactory:
    from importlib import import_module

    module, _, attr = spec.partition(":")
    factory: DriverFactory = getattr(import_module(module), attr)
    return factory


def known_kinds() -> list[str]:
    return sorted(_factories())


def driver_for(inv: Inventory) -> Driver:
    """The driver the inventory's `[driver] kind` names; an unknown kind is an InventoryError (exit 2)."""
    kind = inv.driver.kind
    spec = _factories().get(kind)
    if spec is None:
        raise InventoryError(
            f"{inv.source or inv.name}: driver.kind: unknown driver {kind!r}; installed: {', '.join(known_kinds())}"
        )
    return _load(spec)(inv)
