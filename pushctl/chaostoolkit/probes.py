"""Chaos Toolkit probes: pushctl's read-only checks, each a real CLI run, returning JSON a tolerance can test.

    {"type": "probe", "name": "delivery-slo", "tolerance": {"type": "range", "range": [99.9, 100.0],
     "target": "delivery_rate"},
     "provider": {"type": "python", "module": "pushctl.chaostoolkit.probes", "func": "slo_check",
                  "arguments": {"duration": "5s"}}}

CTK's `range` and `regex` tolerances read a top-level key (`target`), so the probes lift the figures
a hypothesis tests (delivery_rate, sent, on_time, late, lost, duplicates) to the top of what they
return, beside pushctl's own JSON.

This module does not use `from __future__ import annotations`: `chaos discover` reads the argument
types from the live annotations.
"""

from typing import Any

from pushctl.chaostoolkit._cli import Target, run_pushctl

__all__ = ["applied_changes", "ledger", "slo_check", "status"]

LEDGER_FIGURES = ("sent", "on_time", "late", "lost", "duplicates", "delivery_rate")

# A probe's traffic: long enough to mean something, short enough for a steady-state hypothesis
_TIMEOUT_S = 300.0


def _traffic_flags(devices: int, rate: float, duration: str, deadline: str, grace: str) -> list[str]:
    return [
        "--devices",
        str(devices),
        "--rate",
        str(rate),
        "--duration",
        duration,
        "--deadline",
        deadline,
        "--grace",
        grace,
    ]


def slo_check(
    target: float = 99.9,
    devices: int = 100,
    rate: float = 100.0,
    duration: str = "5s",
    deadline: str = "1s",
    grace: str = "3s",
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure delivery with synthetic devices (`pushctl slo check --json`); a breach is a result, not an error.

    Returns pushctl's JSON (`target`, `passed`, `summary`) with the summary's figures also at the top
    level, e.g. a tolerance `{"type": "range", "range": [99.9, 100], "target": "delivery_rate"}`, or
    `{"type": "range", "range": [0, 0], "target": "lost"}`. Exit 1 (SLO breached) is returned for the
    tolerance to judge; any other failure (unreachable, bad input) raises ActivityFailed.
    """
    verb = ["slo", "check", "--target", str(target), *_traffic_flags(devices, rate, duration, deadline, grace)]
    result = run_pushctl(
        Target.resolve(inventory, None, configuration),
        verb,
        confirm=False,
        timeout=timeout,
        accept=frozenset({0, 1}),
    )
    summary = result.get("summary") or {}
    return {**{k: summary.get(k) for k in LEDGER_FIGURES}, **result}


def status(
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The platform's live state (`pushctl status --json`): policies, faults, routing, throttle, storage, actions."""
    return run_pushctl(Target.resolve(inventory, None, configuration), ["status"], confirm=False, timeout=timeout)


def applied_changes(
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> int:
    """How many changes pushctl sees in place (policies + link faults + held actions); 0 is the baseline.

    A steady-state hypothesis "nothing is drained, faulted or held" is this probe with tolerance 0.
    """
    state = status(inventory, timeout, configuration)
    return sum(len(state.get(key) or []) for key in ("policies", "faults", "actions"))


def ledger(
    devices: int = 100,
    rate: float = 100.0,
    duration: str = "5s",
    deadline: str = "1s",
    grace: str = "3s",
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The ledger of a short synthetic-device run (`pushctl probe run --json`): every message accounted for.

    Returns `sent`, `on_time`, `late`, `lost`, `duplicates` and `delivery_rate`, e.g. for a tolerance
    `{"type": "range", "range": [0, 0], "target": "lost"}`.
    """
    verb = ["probe", "run", *_traffic_flags(devices, rate, duration, deadline, grace)]
    result = run_pushctl(Target.resolve(inventory, None, configuration), verb, confirm=False, timeout=timeout)
    return {k: result.get(k) for k in LEDGER_FIGURES}
