"""The scheduler's state without I/O: the versioned policy set, region health and the auto rule.

Every rule lives here so it is tested with a fake clock:

    book = PolicyBook(["north", "east", "south"], now=0.0)
    book.add(PolicyIn(region="south"), now=1.0)        # -> Policy, or PolicyConflict (409)
    book.observe("north", None, now=3.5)               # no answer: unhealthy after 2 s
    book.auto_step(now=3.5)                            # -> ["drain north (unreachable ...)"]

Versions only grow and are at least the wall clock in milliseconds, so a scheduler that lost its
persisted state still publishes versions its followers accept.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from pushctl.contract.api import Connections, Policy, PolicyIn, PolicySet, RegionState

NEAR_LIMIT = 0.95  # a region at 95 % of its connection limit is full: the dispatcher offers it last
UNREACHABLE_AFTER_S = 2.0  # a broker silent this long is unhealthy
RECOVER_AFTER_S = 3.0  # an auto drain is withdrawn after the region is healthy this long
AUTO_SPREAD_S = 1.0  # a failed region is evacuated fast; operator drains choose their own spread


class PolicyError(Exception):
    """A request the book refuses; `status` is the HTTP status to answer with."""

    status = 400


class UnknownRegion(PolicyError):
    status = 400


class UnknownPolicy(PolicyError):
    status = 404


class PolicyConflict(PolicyError):
    status = 409


@dataclass
class RegionHealth:
    """What the scheduler knows about one region's broker."""

    last_ok: float
    healthy_since: float | None
    connections: int = 0
    limit: int = 0
    draining: bool = False
    healthy: bool = True
    reason: str = ""
    reachable: bool = True  # False: broker or public network silent (what an auto drain is for)


class PolicyBook:
    """Policies by id plus per-region health; every mutation bumps `version`."""

    def __init__(
        self,
        regions: Sequence[str],
        *,
        now: float,
        near_limit: float = NEAR_LIMIT,
        unreachable_after: float = UNREACHABLE_AFTER_S,
        recover_after: float = RECOVER_AFTER_S,
        auto_spread_s: float = AUTO_SPREAD_S,
    ) -> None:
        self.version = 0
        self.policies: dict[str, Policy] = {}
        self.regions = {r: RegionHealth(last_ok=now, healthy_since=now) for r in regions}
        self._near_limit = near_limit
        self._unreachable_after = unreachable_after
        self._recover_after = recover_after
        self._auto_spread_s = auto_spread_s

    # ---- reading ---------------------------------------------------------------------------
    def snapshot(self) -> PolicySet:
        drained = self.drained()
        return PolicySet(
            version=self.version,
            policies=list(self.policies.values()),
            regions={
                name: RegionState(
                    healthy=h.healthy,
                    connections=h.connections,
                    limit=h.limit,
                    drained=name in drained or h.draining,
                )
                for name, h in self.regions.items()
            },
        )

    def drained(self) -> set[str]:
        return {p.region for p in self.policies.values() if p.kind == "drain"}

    def drain_of(self, region: str) -> Policy | None:
        for policy in self.policies.values():
            if policy.kind == "drain" and policy.region == region:
                return policy
        return None

    # ---- operator changes ------------------------------------------------------------------
    def load(self, persisted: PolicySet) -> None:
        """Adopt a persisted set (regions are rebuilt from fresh observations)."""
        self.policies = {p.id: p for p in persisted.policies if p.region in self.regions}
        self.version = max(self.version, persisted.version)

    def add(self, wanted: PolicyIn, *, now: float) -> Policy:
        """Add a drain; one per region, never the last healthy undrained region."""
        if wanted.region not in self.regions:
            raise UnknownRegion(f"unknown region {wanted.region!r}; valid regions: {', '.join(self.regions)}")
        existing = self.drain_of(wanted.region)
        if existing is not None and not (existing.origin == "auto" and wanted.origin == "operator"):
            raise PolicyConflict(
                f"region {wanted.region!r} is already drained by policy {existing.id} ({existing.origin})"
            )
        if existing is None:
            self._check_not_last(wanted.region)
        else:
            # an operator drain takes over from an auto drain: the region stays drained throughout
            del self.policies[existing.id]
        policy = Policy(**wanted.model_dump(), id=f"drain-{wanted.region}-{uuid.uuid4().hex[:8]}", created_at=now)
        self.policies[policy.id] = policy
        self._bump(now)
        return policy

    def remove(self, policy_id: str, *, now: float) -> Policy:
        if policy_id not in self.policies:
            raise UnknownPolicy(f"no policy {policy_id!r}; held: {', '.join(self.policies) or 'none'}")
        policy = self.policies.pop(policy_id)
        self._bump(now)
        return policy

    def clear(self, *, now: float, origin: str | None = None) -> int:
        """Withdraw every policy (or every one of `origin`); returns how many."""
        gone = [pid for pid, p in self.policies.items() if origin is None or p.origin == origin]
        for pid in gone:
            del self.policies[pid]
        if gone or origin is None:
            self._bump(now)
        return len(gone)

    # ---- health ----------------------------------------------------------------------------
    def observe(self, region: str, seen: Connections | None, *, now: float) -> bool:
        """Record one poll of the region's broker (`None`: no answer); True if health flipped."""
        h = self.regions[region]
        if seen is not None:
            h.last_ok = now
            h.connections, h.limit, h.draining = seen.count, seen.limit, seen.draining
        reason = ""
        silent = now - h.last_ok
        h.reachable = silent <= self._unreachable_after
        if not h.reachable:
            reason = f"broker unreachable for {silent:.1f}s"
        elif h.limit > 0 and h.connections >= self._near_limit * h.limit:
            reason = f"{h.connections}/{h.limit} connections (>= {self._near_limit:.0%} of the limit)"
        healthy = not reason
        flipped = healthy != h.healthy
        if flipped:
            h.healthy_since = now if healthy else None
        h.healthy, h.reason = healthy, reason
        return flipped

    def auto_step(self, *, now: float) -> list[str]:
        """Drain unreachable regions, withdraw auto drains of recovered ones; what was done.

        A full region (at 95 % of its limit) is not drained: its broker refuses what it cannot
        take and the dispatcher offers it last. Evacuating it would send every one of its devices
        elsewhere at once, then bring them back to fill it again: a reconnect storm on a loop.
        """
        done: list[str] = []
        for name, h in self.regions.items():
            policy = self.drain_of(name)
            if not h.reachable and policy is None:
                try:
                    self._check_not_last(name)
                except PolicyConflict:
                    continue
                self.add(PolicyIn(region=name, spread_s=self._auto_spread_s, origin="auto"), now=now)
                done.append(f"drain {name} ({h.reason})")
            elif (
                h.healthy
                and policy is not None
                and policy.origin == "auto"
                and h.healthy_since is not None
                and now - h.healthy_since >= self._recover_after
            ):
                self.remove(policy.id, now=now)
                done.append(f"withdraw drain of {name} (healthy for {now - h.healthy_since:.1f}s)")
        return done

    # ---- internals -------------------------------------------------------------------------
    def _check_not_last(self, region: str) -> None:
        drained = self.drained()
        left = [r for r, h in self.regions.items() if r != region and h.healthy and r not in drained]
        if not left:
            states = ", ".join(
                f"{r}: {'drained' if r in drained else 'healthy' if h.healthy else 'unhealthy'}"
                for r, h in self.regions.items()
                if r != region
            )
            raise PolicyConflict(f"refusing to drain {region!r}: it is the last healthy region not drained ({states})")

    def _bump(self, now: float) -> None:
        self.version = max(self.version + 1, int(now * 1000))
