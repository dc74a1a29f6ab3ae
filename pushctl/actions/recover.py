"""`pushctl recover`: replay the undo steps of every action a dead pushctl left applied.

It ends where an in-process rollback ends: after the undo steps, it waits (at most
`SETTLE_TIMEOUT_S`) for what the platform does by itself, the scheduler withdrawing the auto drain
of a region that failed, the access tier storing payloads in Redis again, and reports how long that
took (None: it did not happen in time; the CLI then exits 7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx

from pushctl.actions.common import wait_platform_back
from pushctl.actions.journal import Journal, JournalEntry, load_entries
from pushctl.actions.lock import TargetLock
from pushctl.actions.undo import run_undo
from pushctl.contract.api import Policy
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import driver_for
from pushctl.errors import PushctlError

SETTLE_TIMEOUT_S = 30.0
SETTLE_POLL_S = 0.2


# what each measure of `settle` waits for, in the words `recover` reports it with
SETTLE_WHAT = {
    "back_at_baseline_s": "the driver's baseline command printing what it printed before",
    "auto_drain_withdrawn_s": "the scheduler's automatic drains withdrawn",
    "storage_on_redis_s": "storage back on Redis",
}


def settle_bound_s(inv: Inventory, key: str) -> float:
    """How long `settle` waits for `key`: the driver's own `settle_s` for its baseline, else 30 s."""
    if key == "back_at_baseline_s" and inv.driver.baseline is not None:
        return inv.driver.baseline.settle_s
    return SETTLE_TIMEOUT_S


def describe_settled(inv: Inventory, settled: dict[str, Any]) -> list[str]:
    """One phrase per measure: how long it took, or that it did not happen within its bound."""
    out = []
    for key, seconds in settled.items():
        what = SETTLE_WHAT.get(key, key)
        if seconds is None:
            out.append(f"{what}: NOT within {settle_bound_s(inv, key):g} s")
        else:
            out.append(f"{what} after {seconds} s")
    return out


async def settle(
    inv: Inventory,
    entries: Sequence[JournalEntry],
    *,
    timeout: float = SETTLE_TIMEOUT_S,
    transport: httpx.AsyncBaseTransport | None = None,
) -> dict[str, Any]:
    """Wait until the platform is back where the undone actions' own rollbacks would have left it."""
    out: dict[str, Any] = {}
    regions = sorted({str(e.params["region"]) for e in entries if e.action == "fail-region" and "region" in e.params})
    redis = any(e.action == "fail-redis" for e in entries)
    baselines = [str(ev.get("state")) for e in entries for ev in e.events if ev.get("what") == "baseline"]
    if baselines:  # a driver's baseline command: its output before the oldest change undone must come back
        try:
            seconds, _ = await driver_for(inv).wait_baseline(baselines[-1])
        except PushctlError:
            seconds = None
        out["back_at_baseline_s"] = None if seconds is None else round(seconds, 1)
    if not regions and not redis:
        return out
    async with PlatformClient(inv, transport=transport) as api:
        if regions:

            def auto_drain(policy: Policy) -> bool:
                return policy.origin == "auto" and policy.region in regions

            seconds, _ = await wait_platform_back(api, stray=auto_drain, timeout=timeout, poll=SETTLE_POLL_S)
            out["auto_drain_withdrawn_s"] = None if seconds is None else round(seconds, 1)
        if redis:
            seconds, _ = await wait_platform_back(api, storage="redis", timeout=timeout, poll=SETTLE_POLL_S)
            out["storage_on_redis_s"] = None if seconds is None else round(seconds, 1)
    return out


async def recover(
    inv: Inventory,
    *,
    log: Callable[[str], None],
    include_held: bool = False,
    action: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Undo open journal entries (and held ones when asked), then wait for the platform to settle.

    Returns one result per entry, and what settling measured (see the module docstring).
    `transport` replaces the network under the platform client (tests).
    """
    results: list[dict[str, Any]] = []
    undone: list[JournalEntry] = []
    with TargetLock(inv, "recover"):  # refuses while a live action runs: it rolls back on its own
        for entry in reversed(load_entries(inv)):  # newest first: undo in the reverse order of doing
            wanted = entry.open or (include_held and entry.status == "held")
            if not wanted or (action is not None and entry.action != action):
                continue
            log(f"recovering {entry.id} ({entry.action} {entry.params}, status {entry.status}) ...")
            outcomes = await run_undo(inv, entry.undo, log=log, transport=transport)
            ok = all(o.ok for o in outcomes)
            Journal(entry).set_status("recovered" if ok else "rollback-failed")
            if ok:
                undone.append(entry)
            results.append(
                {
                    "journal": entry.id,
                    "action": entry.action,
                    "params": entry.params,
                    "ok": ok,
                    "steps": [o.to_json() for o in outcomes],
                }
            )
    settled = await settle(inv, undone, transport=transport)
    if "back_at_baseline_s" in settled and settled["back_at_baseline_s"] is None:
        for entry in undone:  # the undo ran, the target is not back: keep them open for the next recover
            Journal(entry).set_status("rollback-failed")
    if settled:
        log(f"the platform settled: {'; '.join(describe_settled(inv, settled))}")
    return results, settled


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
