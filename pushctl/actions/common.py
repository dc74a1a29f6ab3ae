"""Building blocks actions share: journaled faults and component signals (with their undo steps), timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from pushctl.actions.base import ActionContext
from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.api import Policy
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.faults.links import FaultSpec, apply_fault, revert_fault
from pushctl.runtime import get_runtime


class RevertFault(UndoStep):
    """Undo of a fault on a link: bring it up, or remove the toxics the fault added."""

    op: ClassVar[str] = "revert_fault"
    spec: FaultSpec

    def summary(self) -> str:
        return f"revert {self.spec.describe()}"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        result = await revert_fault(self.spec)
        return "; ".join(result.summaries) or f"reverted fault on {self.spec.link}"


class RestartComponent(UndoStep):
    """Undo of a crash: start the component again unless it already runs."""

    op: ClassVar[str] = "restart_component"
    runtime_signal: ClassVar[str] = "ensure-running"
    component: str
    runtime: str = "process"

    def summary(self) -> str:
        return f"restart {self.component}"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        return await get_runtime(self.runtime, inv, log=log).signal(self.component, self.runtime_signal)


class ResumeComponent(RestartComponent):
    """Undo of a pause: let the frozen component run again."""

    op: ClassVar[str] = "resume_component"
    runtime_signal: ClassVar[str] = "resume"

    def summary(self) -> str:
        return f"resume {self.component}"


async def journaled_fault(ctx: ActionContext, spec: FaultSpec) -> str:
    """Journal the undo of `spec`, then apply it."""
    ctx.journal.will_undo(RevertFault(spec=spec))
    result = await apply_fault(spec)
    return result.connections


async def journaled_crash(ctx: ActionContext, component: str, mode: str = "crash") -> str:
    """Kill (or pause) a component; its undo restarts (or resumes) it."""
    undo = ResumeComponent if mode == "pause" else RestartComponent
    ctx.journal.will_undo(undo(component=component, runtime=ctx.runtime))
    runtime = get_runtime(ctx.runtime, ctx.inv, log=ctx.log)
    return await runtime.signal(component, "pause" if mode == "pause" else "crash")


async def wait_until(check: Callable[[], Awaitable[bool]], *, timeout: float, poll: float = 0.1) -> float | None:
    """Seconds until `check()` is true, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if await check():
                return time.monotonic() - started
        except Exception:  # noqa: BLE001, S110 - a failing read during a fault means "not yet"
            pass
        await asyncio.sleep(poll)
    return None


async def wait_platform_back(
    api: PlatformClient,
    *,
    stray: Callable[[Policy], bool] | None = None,
    storage: str | None = None,
    timeout: float,
    poll: float,
) -> tuple[float | None, list[str]]:
    """Wait for what the platform undoes by itself after a rollback: no policy `stray` picks left in
    force (the scheduler withdraws its auto drain of a region that healed) and the access tier storing
    on `storage` again (it leaves its fallback once Redis is back). None skips that read.

    Returns the seconds it took (None: not within `timeout`) and what was still left at the last read.
    """
    left: list[str] = []

    async def back() -> bool:
        left.clear()  # a read that fails leaves what it could not read out (empty: nothing could be read)
        if stray is not None:
            found = {(p.origin, p.region) for p in (await api.policies()).policies if stray(p)}
            left.extend(
                f"{'auto drain' if origin == 'auto' else 'drain'} of {region} never withdrawn"
                for origin, region in sorted(found)
            )
        if storage is not None:
            mode = (await api.storage()).mode
            if mode != storage:
                left.append(f"storage still on {mode} (was {storage})")
        return not left

    return await wait_until(back, timeout=timeout, poll=poll), left
