"""What several test modules need: the reference topology on free ports, and `pushctl` run through main().

Unit and integration tests import it the same way (the repository root is on sys.path):

    from tests.helpers import free_inventory, run_main
"""

from __future__ import annotations

import random
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pushctl.cli.main import main
from pushctl.contract.topology import Inventory, load_inventory

REFERENCE = Path(__file__).resolve().parents[1] / "stack" / "topology.toml"
_PORT = re.compile(r"\b1[78]\d{3}\b")  # the reference topology's ports: 17xxx and 18xxx


def free_topology(directory: Path, *, name: str, reference: bool = True, offsets: range) -> Path:
    """The reference topology renamed `name`, moved by one of `offsets` to a block of ports that are all
    free (the offsets keep it below the ephemeral range), written to `directory`/topology.toml."""
    text = REFERENCE.read_text().replace('name = "reference"', f'name = "{name}"')
    if not reference:
        text = text.replace("reference = true", "reference = false")
    for _ in range(50):
        offset = random.choice(offsets)
        ports = {int(p) + offset for p in _PORT.findall(text)}
        if all(_free(p) for p in ports):
            path = directory / "topology.toml"
            path.write_text(_PORT.sub(_shift(offset), text))
            return path
    raise RuntimeError("no free block of ports")


def free_inventory(tmp_path: Path) -> Inventory:
    """The reference topology moved to a free block of ports (outside the ephemeral range), named `unit`."""
    return load_inventory(free_topology(tmp_path, name="unit", offsets=range(4000, 13000, 10)))


def _shift(offset: int) -> Callable[[re.Match[str]], str]:
    return lambda m: str(int(m.group()) + offset)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    """`pushctl ARGS` through main(), the one error boundary users meet: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["pushctl", *args])
    with CliRunner().isolation() as (out, err, _):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            code = 0
        return code, out.getvalue().decode(), err.getvalue().decode()
