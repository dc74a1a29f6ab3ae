"""The gate is shown to catch what it must: every planted defect of `mutations/` is caught.

`mutations/run.py` copies stack/, plants each defect in the copy (a patch, not a runtime switch),
restarts the derived stack's push services on that code and runs the experiments meant to catch
it. Each must fail on a check that names the symptom, is not a timing check (a busy machine must
not be what catches it), and leaves the derived stack at its baseline after its rollbacks.
Reports: reports/mutations.json and reports/mutations.xml.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import REPO, Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]


def test_every_planted_defect_is_caught_by_the_check_that_names_it(stack: Stack) -> None:
    reports = REPO / "reports"
    reports.mkdir(exist_ok=True)
    env = {k: v for k, v in stack.env.items() if not k.startswith("PUSHCTL_")}
    (reports / "mutations.json").unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "mutations/run.py", "--json", str(reports / "mutations.json"),
         "--junit", str(reports / "mutations.xml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env,
    )  # fmt: skip
    try:
        _, err = proc.communicate(timeout=2000)
    finally:
        if proc.poll() is None:  # a timeout, or this test interrupted: the runner stops its stack on SIGTERM
            proc.terminate()
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
    assert (reports / "mutations.json").exists(), err[-4000:]
    report = json.loads((reports / "mutations.json").read_text())
    missed = [(r["id"], r["error"], r["runs"]) for r in report["results"] if not r["caught"]]
    assert not missed, (missed, err[-4000:])
    assert proc.returncode == 0, err[-4000:]
    assert report["mutants"] >= 15
    for result in report["results"]:
        assert result["by"], result
        assert all(run["rollbacks_ok"] for run in result["runs"]), result  # a failing run still cleans up
