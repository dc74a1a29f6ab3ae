"""`pushctl init DIR`: scaffold a project for one's own platform.

    pushctl init myplatform            # topology.toml, experiments/, runbooks/, gate.sh
    pushctl init myplatform --force    # into a directory that already holds files (overwrites ours)

Refuses a non-empty directory without --force: one line, exit 2, nothing written.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from pushctl import render
from pushctl.scaffold import scaffold


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        directory: Annotated[Path, typer.Argument(metavar="DIR", help="Project directory (created if missing).")],
        force: Annotated[
            bool, typer.Option("--force", help="Write into a non-empty directory, overwriting these files.")
        ] = False,
    ) -> None:
        """Scaffold a project for your own platform: inventory, starter experiment, runbook, CI gate."""
        written = scaffold(directory, force=force)
        for path in written:
            render.raw(f"wrote {path}\n")
        inv = shlex.quote(str(directory / "topology.toml"))
        here = shlex.quote(str(directory))
        render.raw(
            "next:\n"
            f"  pushctl -i {inv} experiment validate {shlex.quote(str(directory / 'experiments'))}"
            "    # after every edit\n"
            f"  pushctl -i {inv} stack up    # try it on this machine first (once: pushctl stack install)\n"
            f"  {here}/gate.sh    # the CI gate: every experiment, reports in {here}/reports\n"
        )
