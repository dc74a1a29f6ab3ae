"""The `pushctl` entry point and its single error boundary.

\b
Exit codes (every command):
  0  success / the SLO held
  1  SLO breached or hypothesis deviated (numbers are printed)
  2  bad input (flags, files, names) or a missing toolchain
  3  internal error: a bug in pushctl (one line; the traceback is written to a file it names)
  4  target unreachable (a component or API did not answer)
  5  a component failed to start or stay healthy
  6  another action holds the target's lock
  7  rollback failed: the platform is not back at its baseline
  8  inconclusive: only timing missed while this machine could not keep up (never when lost),
     or Prometheus had no data to judge the SLO by (slo check --prometheus)
  130 interrupted (after rollback)
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Annotated

import typer

from pushctl import render
from pushctl.cli import actions, experiment, failover, fault, init, probe, runbook, slo, stack
from pushctl.cli.state import state
from pushctl.errors import InternalError, PushctlError
from pushctl.runtime.paths import state_dir

app = typer.Typer(
    name="pushctl",
    help="Chaos testing and SRE control for push-notification platforms.\n\n" + (__doc__ or "").split("\n", 2)[2],
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(stack.app, name="stack")
app.add_typer(fault.app, name="fault")
app.add_typer(probe.app, name="probe")
app.add_typer(slo.app, name="slo")
app.add_typer(experiment.app, name="experiment")
app.add_typer(runbook.app, name="runbook")
actions.register(app)
failover.register(app)
init.register(app)


def version() -> str:
    """The installed distribution's version (a wheel's, or the checkout's editable install)."""
    return importlib.metadata.version("pushctl")


def _print_version(wanted: bool) -> None:
    if wanted:
        render.raw(f"pushctl {version()}\n")
        raise typer.Exit


@app.callback()
def _root(
    ctx: typer.Context,
    inventory: Annotated[
        Path | None,
        typer.Option("--inventory", "-i", help="Inventory TOML (default: $PUSHCTL_INVENTORY or the reference stack)."),
    ] = None,
    _version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    state(ctx).inventory_path = inventory


def main() -> None:
    """Run the CLI; every PushctlError becomes a one-line message and its exit code.

    Usage errors (unknown flag, bad value) are typer's own and exit 2. Anything else is a bug in
    pushctl, never a verdict on the platform: one line, the traceback in a file, exit 3 (a crash
    must not read as "SLO breached" in CI).
    """
    try:
        app()
    except PushctlError as exc:
        render.error(exc.message, hint=exc.hint)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        render.error("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the one error boundary: every bug ends here, as exit 3
        where = write_crash_report(exc)
        render.error(f"internal error in pushctl: {type(exc).__name__}: {exc}", hint=f"traceback in {where}")
        sys.exit(InternalError.exit_code)


def write_crash_report(exc: BaseException) -> Path | str:
    """The traceback of a crash, in the state directory (or, when that fails, on stderr)."""
    text = "".join(traceback.format_exception(exc))
    try:
        path = state_dir() / "crashes" / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"pushctl {' '.join(sys.argv[1:])}\n{text}")
    except OSError:
        sys.stderr.write(text)
        return "stderr (above)"
    return path


if __name__ == "__main__":
    main()
