"""Building blocks actions share: journaled faults and component signals, holding, timing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from pushctl.actions.base import ActionContext
from pushctl.faults.links import FaultSpec, apply_fault
from pushctl.runtime import get_runtime


async def journaled_fault(ctx: ActionContext, spec: FaultSpec) -> str:
    """Journal the undo of `spec`, then apply it."""
    ctx.journal.will_undo("revert_fault", f"revert {spec.describe()}", spec=spec.model_dump(mode="json"))
    result = await apply_fault(spec)
    return result.connections


async def journaled_crash(ctx: ActionContext, component: str, mode: str = "crash") -> str:
    """Kill (or pause) a component; its undo restarts (or resumes) it."""
    undo = "resume_component" if mode == "pause" else "restart_component"
    verb = "resume" if mode == "pause" else "restart"
    ctx.journal.will_undo(undo, f"{verb} {component}", component=component, runtime=ctx.runtime)
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
