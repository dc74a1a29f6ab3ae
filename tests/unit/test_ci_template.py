"""The CI template (examples/github-actions/) runs commands pushctl has, and always stops the stack.

actionlint (run by `./dev lint`) checks it is a valid workflow; this checks what it asks of pushctl.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import run_main

TEMPLATES = sorted((Path(__file__).resolve().parents[2] / "examples" / "github-actions").glob("*.yml"))


def _steps(path: Path) -> list[dict[str, Any]]:
    workflow = yaml.safe_load(path.read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def _pushctl_lines(step: dict[str, Any]) -> list[list[str]]:
    return [line.split() for line in str(step.get("run", "")).splitlines() if line.strip().startswith("pushctl ")]


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_every_pushctl_command_and_option_exists(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for step in _steps(path):
        for words in _pushctl_lines(step):
            command = [w for w in words[1:] if re.fullmatch(r"[a-z][a-z-]*", w)][:2]
            code, out, err = run_main(monkeypatch, *command, "--help")
            assert code == 0, f"{' '.join(words)}: {err}"
            for option in (w for w in words if w.startswith("--")):
                assert option in out, f"{' '.join(words)}: no {option} in `pushctl {' '.join(command)} --help`"


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.name for p in TEMPLATES])
def test_the_stack_is_always_stopped_and_the_reports_always_kept(path: Path) -> None:
    steps = _steps(path)
    stop = [s for s in steps if any(w[:3] == ["pushctl", "stack", "down"] for w in _pushctl_lines(s))]
    assert stop and all(s.get("if") == "always()" for s in stop)
    assert any(s.get("if") == "always()" and "upload-artifact" in str(s.get("uses")) for s in steps)
    assert any("--junit" in w for s in steps for words in _pushctl_lines(s) for w in words)
