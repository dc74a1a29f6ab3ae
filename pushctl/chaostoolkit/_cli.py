"""Run the real `pushctl` CLI for a Chaos Toolkit activity and turn its result into CTK's terms.

Every activity is one `python -m pushctl.cli.main --inventory FILE <verb> ... --json` subprocess, so
it takes the target's lock, writes its journal, verifies and rolls back exactly as the CLI does (and
`pushctl abort` / `recover` see it). A non-zero exit becomes `chaoslib.exceptions.ActivityFailed`
carrying pushctl's one-line error and its exit code; stdout is parsed as the activity's JSON result.

Which target: an activity's `inventory` argument, else the experiment's `pushctl_inventory`
configuration key, else whatever the CLI picks itself ($PUSHCTL_INVENTORY, then the reference
stack). `confirm_target` (or the `pushctl_confirm_target` key, or $PUSHCTL_CONFIRM_TARGET read by
the CLI) names a non-reference stack the commands that change it must confirm.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chaoslib.exceptions import ActivityFailed

__all__ = ["EXIT_MEANINGS", "Target", "build_command", "error_line", "run_pushctl"]

# What each exit code of the CLI means (README "Exit codes"); named in every ActivityFailed message
EXIT_MEANINGS: dict[int, str] = {
    1: "SLO breached or a verified claim failed",
    2: "bad input",
    3: "internal error in pushctl",
    4: "target unreachable",
    5: "platform unhealthy",
    6: "another action holds the lock, or recover is needed first",
    7: "rollback failed",
    8: "inconclusive",
    130: "interrupted",
}

# How long a stopped-on-timeout or interrupted CLI gets to roll back after SIGTERM before it is killed
_ROLLBACK_GRACE_S = 60.0


@dataclass(frozen=True)
class Completed:
    """What a finished CLI run left: its exit code and both streams."""

    returncode: int
    stdout: str
    stderr: str


# Runs argv under a timeout: the one seam unit tests replace (a fake for the subprocess only)
Runner = Callable[[Sequence[str], float], Completed]


@dataclass(frozen=True)
class Target:
    """The stack an activity acts on, resolved once from its arguments and the experiment's configuration."""

    inventory: str | None = None
    confirm_target: str | None = None

    @classmethod
    def resolve(
        cls,
        inventory: str | None,
        confirm_target: str | None,
        configuration: Mapping[str, Any] | None,
    ) -> Target:
        """Arguments win over the experiment's configuration; what neither gives, the CLI decides (env, reference)."""
        config = configuration or {}
        inv = inventory or config.get("pushctl_inventory") or None
        confirm = confirm_target or config.get("pushctl_confirm_target") or None
        return cls(str(inv) if inv else None, str(confirm) if confirm else None)


def build_command(target: Target, verb: Sequence[str], *, confirm: bool) -> list[str]:
    """The argv of one CLI call; `confirm` is for the verbs that change a target (and accept the flag).

    >>> build_command(Target("/etc/inv.toml", "prod"), ["drain", "--region", "south"], confirm=True)[3:]
    ['--inventory', '/etc/inv.toml', 'drain', '--region', 'south', '--confirm-target', 'prod', '--json']
    """
    argv = [sys.executable, "-m", "pushctl.cli.main"]
    if target.inventory:
        argv += ["--inventory", target.inventory]
    argv += list(verb)
    if confirm and target.confirm_target:
        argv += ["--confirm-target", target.confirm_target]
    return [*argv, "--json"]


def error_line(stderr: str) -> str:
    """pushctl's one-line error (`error: ...`) from its stderr, or its last line when there is none."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1] if lines else "no message on stderr"


def run_pushctl(
    target: Target,
    verb: Sequence[str],
    *,
    confirm: bool,
    timeout: float,
    accept: frozenset[int] = frozenset({0}),
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Run one CLI call and return its JSON; an exit code outside `accept` raises ActivityFailed.

    `accept` lets a probe return a verdict instead of failing: `slo check` exits 1 with its JSON when
    the SLO is breached, and a CTK tolerance is what should judge that.
    """
    argv = build_command(target, verb, confirm=confirm)
    what = "pushctl " + " ".join(verb)
    done = (runner or _run)(argv, timeout)
    if done.returncode not in accept:
        meaning = EXIT_MEANINGS.get(done.returncode, "unexpected exit code")
        raise ActivityFailed(f"{what} exited {done.returncode} ({meaning}): {error_line(done.stderr)}")
    try:
        result = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise ActivityFailed(f"{what} printed no JSON ({exc}): {done.stdout[:200]!r}") from exc
    if not isinstance(result, dict):
        raise ActivityFailed(f"{what} printed JSON that is not an object: {done.stdout[:200]!r}")
    return result


def _run(argv: Sequence[str], timeout: float) -> Completed:
    """Run the CLI; on timeout or Ctrl-C it gets SIGTERM (it rolls back, as on Ctrl-C) before any kill."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        _stop(proc)
        raise ActivityFailed(f"pushctl {' '.join(argv[3:])} did not finish within {timeout:g}s (stopped)") from exc
    except BaseException:
        _stop(proc)
        raise
    return Completed(proc.returncode, out, err)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, so the CLI rolls back what it applied; killed only if it has not exited within the grace."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=_ROLLBACK_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
