"""A Chaos Toolkit extension: pushctl's actions and probes as Python providers for `chaos run`.

    pip install 'pushctl[chaostoolkit]'
    PUSHCTL_INVENTORY=/etc/pushctl/prod.toml PUSHCTL_CONFIRM_TARGET=prod \\
        chaos run --rollback-strategy always examples/chaostoolkit/drain-south.json

Experiments reference `pushctl.chaostoolkit.actions` (drain, restore, switch_idc, throttle_access,
fail_redis, heal_redis, add_fault, take_link_down, clear_faults, recover, abort) and
`pushctl.chaostoolkit.probes` (slo_check, status, applied_changes, ledger). Each runs the real CLI
as a subprocess, so it is journaled, locked, verified and rolled back exactly like the command a
person would type, and `pushctl abort` / `recover` see it.

The target: an activity's `inventory` / `confirm_target` arguments, else the experiment's
configuration keys `pushctl_inventory` / `pushctl_confirm_target`, else $PUSHCTL_INVENTORY /
$PUSHCTL_CONFIRM_TARGET, else the reference stack.

The control `pushctl.chaostoolkit.control` fails a run whose steady state missed before the method
(CTK itself calls that run completed and exits 0). `discover()` follows CTK's extension convention
(what `chaos discover` reports).
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

__all__ = ["discover"]


def discover(discover_system: bool = True) -> dict[str, Any]:
    """The extension's activities (names, arguments, types, docs) in CTK's discovery format.

    The system itself is not discovered: `pushctl status --json` (the `status` probe) describes it.
    """
    from chaoslib.discovery import discover_actions, discover_probes, initialize_discovery_result

    discovery: dict[str, Any] = initialize_discovery_result("pushctl", version("pushctl"), "pushctl")
    discovery["activities"].extend(discover_actions("pushctl.chaostoolkit.actions"))
    discovery["activities"].extend(discover_probes("pushctl.chaostoolkit.probes"))
    return discovery
