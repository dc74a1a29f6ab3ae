"""Options several command groups share, and the one rule for acting on a target that is not ours.

The reference stack is ours to break. Any other inventory may be something that matters, so every
command that changes it needs `--confirm-target NAME` (or $PUSHCTL_CONFIRM_TARGET, which `runbook
verify` sets for the commands it runs once the operator has confirmed). Read-only commands, plans
(`--dry-run`) and commands that only undo what pushctl did (`recover`, `heal`, `fault clear`) do not.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Annotated, Any

import typer

from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError

CONFIRM_ENV = "PUSHCTL_CONFIRM_TARGET"

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
RuntimeOpt = Annotated[str, typer.Option("--runtime", envvar="PUSHCTL_RUNTIME", help="process or docker.")]
PrometheusOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus",
        metavar="URL",
        envvar="PUSHCTL_PROMETHEUS_URL",
        help="Prometheus to ask PromQL questions (default: the inventory's own, started by `stack up`).",
    ),
]
ConfirmOpt = Annotated[
    str | None,
    typer.Option(
        "--confirm-target",
        metavar="NAME",
        envvar=CONFIRM_ENV,
        show_envvar=False,
        help="Required unless the inventory is the reference stack: its name, to confirm you mean to change it.",
    ),
]


def require_confirmed(inv: Inventory, confirm_target: str | None, what: str) -> None:
    """Refuse to change a non-reference inventory unless the operator named it; `what` says what would change."""
    if inv.reference or confirm_target == inv.name:
        return
    if confirm_target is None:
        problem = f"inventory {inv.name!r} is not the reference stack: {what}"
    else:
        problem = f"--confirm-target {confirm_target!r} does not match the inventory's name {inv.name!r}"
    raise UsageError(problem, hint=f"pass --confirm-target {inv.name} if that is what you want")


def with_parameters(command: Callable[..., Any], params: Sequence[inspect.Parameter]) -> Callable[..., Any]:
    """Make typer see `params` (evaluated annotations) as `command`'s parameters.

    Typer reads a command's options from its signature and type hints; a decorator that adds shared
    options to many commands sets both here.
    """
    command.__signature__ = inspect.Signature(list(params), return_annotation=None)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command
