"""A Chaos Toolkit control that makes a missed steady state before the method a failed run.

Chaos Toolkit (chaoslib 1.44) skips the method when the steady-state hypothesis does not hold before
it, but ends the run `completed`, not deviated, and `chaos run` exits 0: in a CI gate that reads as
a pass for a platform that was already broken. Declared in an experiment, this control marks such a
run `failed` (exit 1); the rollbacks have run by then and are unaffected::

    "controls": [{"name": "pushctl-strict", "provider": {"type": "python",
                  "module": "pushctl.chaostoolkit.control"}}]
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["after_experiment_control"]

logger = logging.getLogger("chaostoolkit")


def after_experiment_control(context: dict[str, Any], state: dict[str, Any], **kwargs: Any) -> None:
    """Called by CTK with the finished journal (`state`); fails it when the steady state missed before the method."""
    before = (state.get("steady_states") or {}).get("before")
    if before is None or before.get("steady_state_met", True) or state.get("status") != "completed":
        return
    missed = [p["activity"]["name"] for p in before.get("probes", []) if not p.get("tolerance_met", True)]
    state["status"] = "failed"
    logger.error(
        "pushctl: the steady state did not hold before the method (%s): the run is failed, not completed",
        ", ".join(missed) or "hypothesis",
    )
