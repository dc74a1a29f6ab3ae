"""A copy of an inventory for a second stack beside the first: renamed, not the reference, ports moved.

Tests, benchmarks and gate loops run their own stacks next to the reference one; the copy keeps
the source's comments and layout, so a reader can diff it against the original.

    text = derived_inventory(Path("stack/topology.toml").read_text(), name="bench", shift=14000)
"""

from __future__ import annotations

import re

_NAME = re.compile(r'^name\s*=\s*"[^"]*"', re.MULTILINE)
_REFERENCE = re.compile(r"^reference\s*=\s*true", re.MULTILINE)
_PORT = re.compile(r"^(\s*(?:port|internal_port|controller_port|listen)\s*=\s*)(\d+)", re.MULTILINE)


def derived_inventory(text: str, *, name: str, shift: int) -> str:
    """`text` (an inventory's TOML) named `name`, marked not the reference, every port + `shift`."""
    text = _NAME.sub(f'name = "{name}"', text, count=1)
    text = _REFERENCE.sub("reference = false", text, count=1)
    return _PORT.sub(lambda m: f"{m[1]}{int(m[2]) + shift}", text)
