"""Habits CI enforces beyond the linters: every suppression says why."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("pushctl", "stack", "tests", "bench", "mutations")
NOQA = re.compile(r"#\s*noqa\b(?::\s*[A-Z0-9, ]+)?(?P<reason>\s+-\s+\S.*)?$")


def test_every_noqa_gives_its_reason() -> None:
    bare = []
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                match = NOQA.search(line)
                if match and not match.group("reason"):
                    bare.append(f"{path.relative_to(REPO)}:{number}")
    assert bare == [], "a noqa without ' - <reason>': " + ", ".join(bare)
