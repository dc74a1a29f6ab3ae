"""`pushctl status`: the platform's live state, read from its control API and Toxiproxy."""

from __future__ import annotations

import asyncio
from typing import Any

from pushctl.actions.journal import load_entries
from pushctl.contract.api import TOPIC_DEADLETTER
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.errors import PushctlError
from pushctl.faults.links import list_faults
from pushctl.probe.deadletters import DeadLetterScan, scan_dead_letters


async def _safe(coro: Any) -> Any:
    try:
        return await coro
    except PushctlError as exc:
        return {"error": exc.message}


def _dump(value: Any) -> Any:
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return value


async def live_status(inv: Inventory) -> dict[str, Any]:
    async with PlatformClient(inv, timeout=2.0) as api:
        policies, connections, routing, throttle, storage, faults, lag, dead, counted = await asyncio.gather(
            _safe(api.policies()),
            api.all_connections(),
            _safe(api.routing()),
            _safe(api.throttle()),
            _safe(api.storage()),
            _safe(list_faults(inv)),
            _safe(api.buffer_lag()),
            _safe(scan_dead_letters(inv, read=False, timeout=3.0)),
            _safe(api.dead_letters()),
        )
    held = [
        {"journal": e.id, "action": e.action, "params": e.params, "status": e.status}
        for e in load_entries(inv)
        if e.status in ("held", "intent", "applying", "applied", "rollback-failed")
    ]
    return {
        "stack": inv.name,
        "policies": [p.model_dump() for p in policies.policies] if not isinstance(policies, dict) else policies,
        "regions": {k: v.model_dump() for k, v in policies.regions.items()} if not isinstance(policies, dict) else {},
        "connections": {r: (c.model_dump() if c else None) for r, c in connections.items()},
        "routing": _dump(routing),
        "throttle": _dump(throttle),
        "storage": _dump(storage),
        "faults": [f.to_json() for f in faults if f.toxics or not f.enabled] if isinstance(faults, list) else faults,
        "buffer_lag": lag,
        "dead_letters": _dead_letters(dead, counted),
        "actions": held,
    }


def _dead_letters(scan: DeadLetterScan | dict[str, str] | None, counted: Any) -> dict[str, Any]:
    """The dead-letter topic's record count (all time) beside the bypass's counters (since it started)."""
    out: dict[str, Any] = {"topic": TOPIC_DEADLETTER, "records": None, "bypass": counted}
    if isinstance(scan, DeadLetterScan):
        out["records"] = scan.records
    elif isinstance(scan, dict):
        out["error"] = scan["error"]
    return out
