"""Where pushctl keeps installed components (cache) and a running stack's files (run dir)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Pinned component installs, shared by every stack on the machine (outside the repo)."""
    explicit = os.environ.get("PUSHCTL_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pushctl"


def state_dir() -> Path:
    """Where every stack's run directory lives ($PUSHCTL_RUN_DIR, else the XDG state directory)."""
    explicit = os.environ.get("PUSHCTL_RUN_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "pushctl"


def run_dir(stack_name: str) -> Path:
    """One directory per stack: pid files, logs, data. `stack down --purge` removes it."""
    return state_dir() / stack_name
