"""Run one `pushctl` command of a runbook as the on-call engineer would: a fresh process of the CLI.

    runner = CommandRunner("/path/to/topology.toml", timeout=300)
    done = runner.run(["status", "--json"])     # Finished(exit_code=0, stdout='{...}', ...)

The child is this interpreter running `pushctl.cli.main` with `--inventory` in front of the
runbook's own words. Ctrl-C or SIGTERM while a child runs is passed on as SIGINT, so an action in
flight rolls back as it would for a user; the child gets `ROLLBACK_GRACE_S` before it is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ROLLBACK_GRACE_S = 90.0


@dataclass(frozen=True)
class Finished:
    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False


class CommandRunner:
    def __init__(self, inventory: str, *, timeout: float = 300.0, env: dict[str, str] | None = None) -> None:
        self.inventory = inventory
        self.timeout = timeout
        self.env = {**(env if env is not None else os.environ), "PYTHONUNBUFFERED": "1"}

    def argv(self, words: Sequence[str]) -> list[str]:
        return [sys.executable, "-m", "pushctl.cli.main", "--inventory", self.inventory, *words]

    def run(self, words: Sequence[str]) -> Finished:
        proc = subprocess.Popen(
            self.argv(words),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            start_new_session=True,  # our own signals reach it only as we decide (below)
        )
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            out, err = _stop(proc)
            return Finished(proc.returncode, out, err, timed_out=True)
        except BaseException:
            _stop(proc)
            raise
        return Finished(proc.returncode, out, err)


def _stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGINT (the child rolls back what it applied), then SIGKILL if it does not finish in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=ROLLBACK_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def parse_json(text: str) -> Any:
    """The JSON document a `--json` command printed (None when there is none)."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start : end + 1])
    except ValueError:
        return None
