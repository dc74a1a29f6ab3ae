"""Where runbooks live and how a name on the command line finds one.

runbook_dir(None)                      # $PUSHCTL_RUNBOOKS, else the library's runbooks/ (checkout or wheel)
select(directory, ["redis-outage"])    # [Path('.../runbooks/redis-outage.md')]
select(directory, ["./my-runbook.md"]) # a file anywhere
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from pathlib import Path

from pushctl.contract.resources import resource
from pushctl.errors import UsageError
from pushctl.runbooks.model import find_runbooks

RUNBOOKS_ENV = "PUSHCTL_RUNBOOKS"
DEFAULT_DIR = resource("runbooks")
EXPERIMENTS_DIR = resource("experiments")


def runbook_dir(override: Path | None = None) -> Path:
    directory = override or Path(os.environ.get(RUNBOOKS_ENV) or DEFAULT_DIR)
    if not directory.is_dir():
        raise UsageError(f"no runbook directory at {directory}", hint=f"pass --dir or set ${RUNBOOKS_ENV}")
    return directory


def select(directory: Path, names: Sequence[str]) -> list[Path]:
    """The runbooks `names` stand for (every runbook of `directory` when empty), in the order given."""
    available = find_runbooks(directory)
    if not names:
        if not available:
            raise UsageError(f"no runbooks (*.md) in {directory}")
        return available
    by_id = {p.stem: p for p in available}
    out: list[Path] = []
    for name in names:
        if name.endswith(".md") or os.sep in name:
            path = Path(name)
            if not path.is_file():
                raise UsageError(f"no runbook file {name}")
            out.append(path)
        elif name in by_id:
            out.append(by_id[name])
        else:
            close = difflib.get_close_matches(name, list(by_id), n=1)
            hint = f"did you mean {close[0]}?" if close else f"see `pushctl runbook list` ({directory})"
            raise UsageError(f"no runbook {name!r}", hint=hint)
    return out
