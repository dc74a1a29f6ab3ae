"""`pushctl recover`: replay the undo steps of every action a dead pushctl left applied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pushctl.actions.journal import Journal, load_entries
from pushctl.actions.lock import TargetLock
from pushctl.actions.undo import run_undo
from pushctl.contract.topology import Inventory


async def recover(
    inv: Inventory, *, log: Callable[[str], None], include_held: bool = False, action: str | None = None
) -> list[dict[str, Any]]:
    """Undo open journal entries (and held ones when asked); returns one result per entry."""
    results: list[dict[str, Any]] = []
    with TargetLock(inv, "recover"):  # refuses while a live action runs: it rolls back on its own
        for entry in reversed(load_entries(inv)):  # newest first: undo in the reverse order of doing
            wanted = entry.open or (include_held and entry.status == "held")
            if not wanted or (action is not None and entry.action != action):
                continue
            log(f"recovering {entry.id} ({entry.action} {entry.params}, status {entry.status}) ...")
            outcomes = await run_undo(inv, entry.undo, log=log)
            ok = all(o.ok for o in outcomes)
            Journal(entry).set_status("recovered" if ok else "rollback-failed")
            results.append(
                {
                    "journal": entry.id,
                    "action": entry.action,
                    "params": entry.params,
                    "ok": ok,
                    "steps": [{"step": o.step.describe, "ok": o.ok, "detail": o.detail} for o in outcomes],
                }
            )
    return results


async def undo_held(inv: Inventory, action: str, match: dict[str, str], *, log: Callable[[str], None]) -> list[str]:
    """Undo held entries of `action` whose params contain `match` (the caller holds the lock)."""
    done: list[str] = []
    for entry in reversed(load_entries(inv)):
        if entry.action != action or entry.status != "held":
            continue
        if any(str(entry.params.get(k)) != v for k, v in match.items()):
            continue
        outcomes = await run_undo(inv, entry.undo, log=log)
        ok = all(o.ok for o in outcomes)
        Journal(entry).set_status("recovered" if ok else "rollback-failed")
        done += [f"{entry.id}: {o.step.describe}: {o.detail}" for o in outcomes]
    return done
