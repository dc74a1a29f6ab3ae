"""The real `chaos run` (chaostoolkit, pinned in the test extras) drives pushctl.chaostoolkit against a real stack.

The example experiment must complete with its rollbacks played and leave nothing applied; the
checker is shown to fail too: a hypothesis that cannot hold after the method makes CTK report
`deviated`, a broken inventory makes it report `failed` with pushctl's error, and in both the
rollbacks still run (`--rollback-strategy always`, as the example's README says to run it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REPO, Stack

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "chaostoolkit" / "drain-south.json"
ROLLBACKS = ["clear-cache-fault", "restore-south", "clear-south-device-network"]


def _chaos_run(experiment: Path, tmp: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Any]:
    """`chaos run` as a user runs it, with its settings, log and journal kept in `tmp`."""
    journal = tmp / "journal.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "chaostoolkit",
            "--no-version-check",
            "--settings",
            str(tmp / "settings.yaml"),
            "--log-file",
            str(tmp / "chaostoolkit.log"),
            "run",
            "--journal-path",
            str(journal),
            "--rollback-strategy",
            "always",
            str(experiment),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp,
        timeout=600,
        check=False,
    )
    assert journal.exists(), f"chaos run wrote no journal ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc, json.loads(journal.read_text())


def _stack_env(stack: Stack) -> dict[str, str]:
    env = {**stack.env, "PUSHCTL_INVENTORY": stack.inventory.source}
    if not stack.inventory.reference:
        env["PUSHCTL_CONFIRM_TARGET"] = stack.inventory.name
    return env


def _rollbacks(journal: Any) -> dict[str, Any]:
    return {r["activity"]["name"]: r for r in journal["rollbacks"]}


def _assert_nothing_left(stack: Stack) -> None:
    proc = stack.pushctl("status", "--json")
    assert proc.returncode == 0, proc.stderr
    state = json.loads(proc.stdout)
    assert (state["policies"], state["faults"], state["actions"]) == ([], [], [])


def test_the_example_completes_reaches_both_toxiproxy_servers_and_rolls_back(stack: Stack, tmp_path: Path) -> None:
    proc, journal = _chaos_run(EXAMPLE, tmp_path, _stack_env(stack))

    assert proc.returncode == 0, (tmp_path / "chaostoolkit.log").read_text()[-4000:]
    assert journal["status"] == "completed"
    assert journal["deviated"] is False
    assert journal["steady_states"]["after"]["steady_state_met"] is True
    runs = {r["activity"]["name"]: r for r in journal["run"]}
    assert all(r["status"] == "succeeded" for r in runs.values()), runs
    servers = {
        name: runs[name]["output"]["plan"]["toxiproxy"]
        for name in ("south-device-network-degrades", "payload-cache-slows-down")
    }
    regional = {region.toxiproxy for region in stack.inventory.regions.values()}
    assert servers["south-device-network-degrades"] == stack.inventory.regions["south"].toxiproxy
    assert servers["payload-cache-slows-down"] in set(stack.inventory.toxiproxy) - regional
    assert runs["drain-south"]["output"]["held"] is True
    assert runs["ledger-while-drained-and-cache-slow"]["output"]["lost"] == 0
    rollbacks = _rollbacks(journal)
    assert list(rollbacks) == ROLLBACKS
    assert all(r["status"] == "succeeded" for r in rollbacks.values()), rollbacks
    _assert_nothing_left(stack)


def test_a_hypothesis_that_cannot_hold_after_the_method_deviates_and_still_rolls_back(
    stack: Stack, tmp_path: Path
) -> None:
    """NothingApplied: the steady state says nothing is drained or faulted; the held drain breaks it."""
    experiment = json.loads(EXAMPLE.read_text())
    experiment["steady-state-hypothesis"]["probes"] = [
        {
            "type": "probe",
            "name": "nothing-applied",
            "tolerance": 0,
            "provider": {"type": "python", "module": "pushctl.chaostoolkit.probes", "func": "applied_changes"},
        }
    ]
    experiment["method"] = [a for a in experiment["method"] if a["type"] == "action"]
    path = tmp_path / "nothing-applied.json"
    path.write_text(json.dumps(experiment))

    proc, journal = _chaos_run(path, tmp_path, _stack_env(stack))

    assert proc.returncode == 1
    assert journal["deviated"] is True
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    after = journal["steady_states"]["after"]
    assert after["steady_state_met"] is False
    assert after["probes"][0]["output"] >= 3  # the drain policy and the two faults, at least
    rollbacks = _rollbacks(journal)
    assert list(rollbacks) == ROLLBACKS
    assert all(r["status"] == "succeeded" for r in rollbacks.values()), rollbacks
    _assert_nothing_left(stack)


def test_a_steady_state_that_misses_before_the_method_fails_the_run_and_rollbacks_still_run(
    stack: Stack, tmp_path: Path
) -> None:
    """ImpossibleTolerance: CTK skips the method and alone would call the run completed (exit 0); the
    example's pushctl-strict control makes it failed (exit 1)."""
    experiment = json.loads(EXAMPLE.read_text())
    probe = experiment["steady-state-hypothesis"]["probes"][0]
    probe["tolerance"]["range"] = [100.5, 101.0]
    path = tmp_path / "impossible-tolerance.json"
    path.write_text(json.dumps(experiment))

    proc, journal = _chaos_run(path, tmp_path, _stack_env(stack))

    assert proc.returncode == 1
    assert journal["status"] == "failed"
    assert journal["deviated"] is False
    before = journal["steady_states"]["before"]
    assert before["steady_state_met"] is False
    assert before["probes"][0]["status"] == "succeeded"
    assert journal["run"] == []
    rollbacks = _rollbacks(journal)
    assert list(rollbacks) == ROLLBACKS
    assert all(r["status"] == "succeeded" for r in rollbacks.values()), rollbacks
    _assert_nothing_left(stack)


def test_a_broken_inventory_fails_the_run_with_pushctls_error_and_rollbacks_are_still_tried(tmp_path: Path) -> None:
    """BrokenInventory: no stack is touched; every activity reports pushctl's one line and exit 2."""
    env = {**_isolated_env(tmp_path), "PUSHCTL_INVENTORY": str(tmp_path / "missing.toml")}

    proc, journal = _chaos_run(EXAMPLE, tmp_path, env)

    assert proc.returncode == 1
    assert journal["status"] == "failed"
    probe = journal["steady_states"]["before"]["probes"][0]
    assert probe["status"] == "failed"
    assert "exited 2 (bad input)" in probe["exception"][-1]
    assert "no such inventory file" in probe["exception"][-1]
    assert journal["run"] == []
    rollbacks = _rollbacks(journal)
    assert list(rollbacks) == ROLLBACKS
    assert all(r["status"] == "failed" for r in rollbacks.values())


def _isolated_env(tmp: Path) -> dict[str, str]:
    """This process's environment with pushctl's run directory in `tmp` (nothing of a real stack)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHCTL_")}
    return {**env, "PUSHCTL_RUN_DIR": str(tmp / "run")}
