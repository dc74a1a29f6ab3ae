"""Chaos Toolkit actions: pushctl's failover verbs and link faults, each a real CLI run.

Reference them from an experiment as Python providers::

    {"type": "action", "name": "drain-south",
     "provider": {"type": "python", "module": "pushctl.chaostoolkit.actions", "func": "drain",
                  "arguments": {"region": "south"}}}

Each action is journaled, locked and verified like the CLI command it runs. Chaos Toolkit owns the
rollback phase, so the verbs that would roll back by themselves are held by default (`hold=True`):
put their undo (`restore`, `heal_redis`, `clear_faults`, or `recover` with `include_held`) in the experiment's
rollbacks, and run it with `chaos run --rollback-strategy always` so a failed run is undone too.
`hold=False` makes an action a self-contained drill that rolls back before it returns.

Every action takes `inventory` and `confirm_target` (see `pushctl.chaostoolkit`), `timeout` (seconds
before the CLI is stopped and rolls back) and returns the command's JSON. A non-zero exit raises
`ActivityFailed` with pushctl's one-line error and exit code.

This module does not use `from __future__ import annotations`: `chaos discover` reads the argument
types from the live annotations.
"""

from typing import Any

from pushctl.chaostoolkit._cli import Target, run_pushctl

__all__ = [
    "abort",
    "add_fault",
    "clear_faults",
    "drain",
    "fail_redis",
    "heal_redis",
    "recover",
    "restore",
    "switch_idc",
    "take_link_down",
    "throttle_access",
]

_TIMEOUT_S = 600.0


def _probe_flags(probe: bool, devices: int | None, rate: float | None, slo: float | None) -> list[str]:
    """The synthetic-device probe every failover verb runs while acting (`--no-probe` to skip it)."""
    if not probe:
        return ["--no-probe"]
    flags: list[str] = []
    if devices is not None:
        flags += ["--devices", str(devices)]
    if rate is not None:
        flags += ["--rate", str(rate)]
    if slo is not None:
        flags += ["--slo", str(slo)]
    return flags


def _hold_or_duration(hold: bool, duration: str | None) -> list[str]:
    if hold:
        return ["--hold"]
    return ["--duration", duration] if duration else []


def _act(
    verb: list[str],
    inventory: str | None,
    confirm_target: str | None,
    configuration: dict[str, Any] | None,
    timeout: float,
    *,
    confirm: bool = True,
) -> dict[str, Any]:
    target = Target.resolve(inventory, confirm_target, configuration)
    return run_pushctl(target, verb, confirm=confirm, timeout=timeout)


def drain(
    region: str,
    spread: str = "5s",
    hold: bool = True,
    probe: bool = True,
    devices: int | None = None,
    rate: float | None = None,
    slo: float | None = None,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Drain a region (`pushctl drain`): its devices reconnect elsewhere, spread over `spread`.

    Held by default; undo it with `restore` in the rollbacks.
    """
    verb = ["drain", "--region", region, "--spread", spread, *_probe_flags(probe, devices, rate, slo)]
    return _act([*verb, *(["--hold"] if hold else [])], inventory, confirm_target, configuration, timeout)


def restore(
    region: str,
    probe: bool = True,
    devices: int | None = None,
    rate: float | None = None,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Withdraw a region's drain policy (`pushctl restore`): the rollback of `drain`; a no-op when not drained."""
    verb = ["restore", "--region", region, *_probe_flags(probe, devices, rate, None)]
    return _act(verb, inventory, confirm_target, configuration, timeout)


def switch_idc(
    to: str | None = None,
    weights: str | None = None,
    hold: bool = True,
    duration: str | None = None,
    probe: bool = True,
    devices: int | None = None,
    rate: float | None = None,
    slo: float | None = None,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Move logic traffic between IDCs (`pushctl switch-idc --to IDC` or `--weights idc1=30,idc2=70`).

    Held by default; undo it with `recover(include_held=True)` (or a switch back) in the rollbacks.
    """
    verb = ["switch-idc"]
    verb += ["--to", to] if to else []
    verb += ["--weights", weights] if weights else []
    verb += [*_hold_or_duration(hold, duration), *_probe_flags(probe, devices, rate, slo)]
    return _act(verb, inventory, confirm_target, configuration, timeout)


def throttle_access(
    limit: str | None = None,
    auto: bool = False,
    safe_load: float | None = None,
    threshold: float | None = None,
    hold: bool = True,
    duration: str | None = None,
    probe: bool = True,
    devices: int | None = None,
    rate: float | None = None,
    slo: float | None = None,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Rate-limit the access tier's direct path (`pushctl throttle access --limit 500/s` or `--auto`).

    Held by default; undo it with `recover(include_held=True)` in the rollbacks.
    """
    verb = ["throttle", "access"]
    verb += ["--limit", limit] if limit else []
    verb += ["--auto"] if auto else []
    verb += ["--safe-load", str(safe_load)] if safe_load is not None else []
    verb += ["--threshold", str(threshold)] if threshold is not None else []
    verb += [*_hold_or_duration(hold, duration), *_probe_flags(probe, devices, rate, slo)]
    return _act(verb, inventory, confirm_target, configuration, timeout)


def fail_redis(
    mode: str = "down",
    latency: int | None = None,
    hold: bool = True,
    duration: str | None = None,
    probe: bool = True,
    devices: int | None = None,
    rate: float | None = None,
    slo: float | None = None,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fail the payload cache (`pushctl fail redis --mode down|latency|crash|pause`).

    Held by default; undo it with `heal_redis` in the rollbacks.
    """
    verb = ["fail", "redis", "--mode", mode]
    verb += ["--latency", str(latency)] if latency is not None else []
    verb += [*_hold_or_duration(hold, duration), *_probe_flags(probe, devices, rate, slo)]
    return _act(verb, inventory, confirm_target, configuration, timeout)


def heal_redis(
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Undo a held Redis failure (`pushctl heal redis`): the rollback of `fail_redis`."""
    return _act(["heal", "redis"], inventory, None, configuration, timeout, confirm=False)


def add_fault(
    link: str,
    kind: str,
    attributes: dict[str, int] | None = None,
    stream: str = "down",
    toxicity: float | None = None,
    name: str | None = None,
    reset_connections: bool = False,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add a Toxiproxy toxic to any link of the inventory (`pushctl fault add LINK KIND`).

    The link is found by name whichever Toxiproxy server serves it (per-region or internal), so one
    experiment can fault `device-south` and `cache`. `attributes` are the toxic's whole-number
    attributes, e.g. `{"latency": 200, "jitter": 20}`; `stream` is up, down or both. Stays until
    `clear_faults` (put it in the rollbacks).
    """
    verb = ["fault", "add", link, kind, "--stream", stream]
    for key, value in (attributes or {}).items():
        verb += ["--attr", f"{key}={value}"]
    verb += ["--toxicity", str(toxicity)] if toxicity is not None else []
    verb += ["--name", name] if name else []
    verb += ["--reset-connections"] if reset_connections else []
    return _act(verb, inventory, confirm_target, configuration, timeout)


def take_link_down(
    link: str,
    inventory: str | None = None,
    confirm_target: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Take a link down (`pushctl fault down LINK`): its proxy stops listening. Undo with `clear_faults`."""
    return _act(["fault", "down", link], inventory, confirm_target, configuration, timeout)


def clear_faults(
    link: str | None = None,
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Remove every toxic and bring links back up (`pushctl fault clear [LINK]`): one link, or all."""
    verb = ["fault", "clear", *([link] if link else [])]
    return _act(verb, inventory, None, configuration, timeout, confirm=False)


def recover(
    include_held: bool = False,
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Undo what an interrupted pushctl left (`pushctl recover`); `include_held=True` (`--all`) also
    undoes actions held on purpose: back to the baseline, whatever the method applied."""
    verb = ["recover", *(["--all"] if include_held else [])]
    return _act(verb, inventory, None, configuration, timeout, confirm=False)


def abort(
    within: str = "120s",
    inventory: str | None = None,
    timeout: float = _TIMEOUT_S,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Emergency stop (`pushctl abort`): whatever holds the target rolls back; returns at baseline.

    `within` is how long a run gets to roll back on its own before it is killed and its journal replayed.
    """
    return _act(["abort", "--timeout", within], inventory, None, configuration, timeout, confirm=False)
