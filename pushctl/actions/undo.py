"""Execute journaled undo steps: the one place rollback and `pushctl recover` share.

Each step is idempotent (running it twice, or after the change never happened, is harmless), so
recovery can replay a journal whatever point the interrupted run had reached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pushctl.actions.journal import UndoStep
from pushctl.contract.api import Throttle
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.errors import PushctlError
from pushctl.faults.links import FaultSpec, revert_fault
from pushctl.runtime import get_runtime


@dataclass
class UndoOutcome:
    step: UndoStep
    ok: bool
    detail: str


async def run_undo(inv: Inventory, steps: Sequence[UndoStep], *, log: Callable[[str], None]) -> list[UndoOutcome]:
    """Run `steps` in reverse order; every step is tried even when an earlier one fails."""
    outcomes = []
    async with PlatformClient(inv, timeout=5.0) as api:
        for step in reversed(steps):
            try:
                detail = await _run_one(inv, api, step, log)
                outcomes.append(UndoOutcome(step, True, detail))
            except PushctlError as exc:
                outcomes.append(UndoOutcome(step, False, exc.message))
    return outcomes


async def _run_one(inv: Inventory, api: PlatformClient, step: UndoStep, log: Callable[[str], None]) -> str:
    args = step.args
    if step.op == "remove_policy":
        policies = await api.policies()
        removed = 0
        for policy in policies.policies:
            if (
                policy.region == args["region"]
                and policy.origin == "operator"
                and policy.kind == args.get("kind", "drain")
            ):
                await api.remove_policy(policy.id)
                removed += 1
        return f"removed {removed} {args.get('kind', 'drain')} policy for {args['region']}"
    if step.op == "set_routing":
        await api.set_routing({k: float(v) for k, v in args["weights"].items()})
        return f"routing weights back to {args['weights']}"
    if step.op == "set_throttle":
        await api.set_throttle(Throttle.model_validate(args["throttle"]))
        return f"throttle back to {args['throttle'].get('mode')}"
    if step.op == "set_limit":
        await api.set_limit(str(args["region"]), int(args["limit"]))
        return f"{args['region']} connection limit back to {args['limit']}"
    if step.op == "set_auto":
        await api.set_auto(bool(args["enabled"]))
        return f"scheduler auto policies {'on' if args['enabled'] else 'off'}"
    if step.op == "revert_fault":
        result = await revert_fault(FaultSpec.model_validate(args["spec"]))
        return "; ".join(result.summaries) or f"reverted fault on {args['spec'].get('link')}"
    if step.op in ("restart_component", "resume_component"):
        runtime = get_runtime(args.get("runtime", "process"), inv, log=log)
        action = "ensure-running" if step.op == "restart_component" else "resume"
        return await runtime.signal(args["component"], action)
    raise PushctlError(f"unknown undo step {step.op!r} in the journal")
