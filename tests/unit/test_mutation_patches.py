"""Every planted defect (mutations/, and the soak's leaks in bench/leaks/) still applies to the stack as it is now.

The mutation matrix (an integration test, minutes into CI) would find a stale patch only when it
reaches it; a refactoring of stack/ that moves a patch's context should fail here, in seconds.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PATCHES = sorted((REPO / "mutations").glob("*.patch")) + sorted((REPO / "bench" / "leaks").glob("*.patch"))


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize("patch", PATCHES, ids=[p.stem.split("-")[0] for p in PATCHES])
def test_the_planted_defect_applies_to_the_current_stack(patch: Path) -> None:
    proc = subprocess.run(
        ["git", "apply", "--check", "--whitespace=nowarn", str(patch)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"{patch.name} no longer applies: {proc.stderr.strip()}"


def test_there_are_planted_defects() -> None:
    assert len(PATCHES) >= 19
