"""One reference stack per test session, started through the CLI a user runs, always torn down.

The stack uses the reference topology (or $PUSHCTL_TEST_INVENTORY, e.g. a copy on other ports) with
its own run directory, so a developer's own stack files are never touched. Teardown checks that no
process of ours is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pushctl.contract.derive import derived_inventory
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.runtime.pids import pid_alive

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Stack:
    inventory: Inventory
    run_dir: Path
    env: dict[str, str]
    status: dict[str, object]

    @property
    def confirm(self) -> list[str]:
        """`--confirm-target NAME` when this stack is not the reference one (every change needs it)."""
        return [] if self.inventory.reference else ["--confirm-target", self.inventory.name]

    def pushctl(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against this stack."""
        inv_args = ["--inventory", self.inventory.source]
        proc = subprocess.run(
            [sys.executable, "-m", "pushctl.cli.main", *inv_args, *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=REPO,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"pushctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


def _pids(run_dir: Path) -> list[int]:
    out = []
    for pidfile in (run_dir / "pids").glob("*.json"):
        out.append(int(json.loads(pidfile.read_text())["pid"]))
    return out


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_base = tmp_path_factory.mktemp("run")
    env = {**os.environ, "PUSHCTL_RUN_DIR": str(run_base), "PYTHONUNBUFFERED": "1"}
    inv = load_inventory(os.environ.get("PUSHCTL_TEST_INVENTORY") or None)
    st = Stack(inv, run_base / inv.name, env, {})
    pids: list[int] = []
    try:
        up = st.pushctl("stack", "up", "--json", timeout=900)
        pids = _pids(st.run_dir)
        if up.returncode != 0:
            pytest.fail(f"stack up failed ({up.returncode}):\n{up.stderr[-4000:]}", pytrace=False)
        yield Stack(inv, st.run_dir, env, json.loads(up.stdout))
    finally:
        pids = pids or _pids(st.run_dir)
        st.pushctl("stack", "down", timeout=60)
        leftovers = [p for p in pids if pid_alive(p)]
        for pid in leftovers:
            os.kill(pid, 9)
        assert not leftovers, f"stack down left processes running: {leftovers}"


@contextlib.contextmanager
def derived_stack(source: Path, name: str, *, shift: int, env: dict[str, str], tmp: Path) -> Iterator[Stack]:
    """A second stack from a copy of `source`: renamed, not the reference, every port shifted, run with
    `env` (e.g. a failover path switched off); started through the CLI and always torn down."""
    inv_path = tmp / "topology.toml"
    inv_path.write_text(derived_inventory(source.read_text(), name=name, shift=shift))
    inv = load_inventory(inv_path)
    st = Stack(inv, tmp / "run" / inv.name, {**env, "PUSHCTL_RUN_DIR": str(tmp / "run")}, {})
    try:
        up = st.pushctl("stack", "up", timeout=600)
        assert up.returncode == 0, up.stderr[-3000:]
        yield st
    finally:
        pids = _pids(st.run_dir)
        st.pushctl("stack", "down", timeout=60)
        assert not [p for p in pids if pid_alive(p)]
