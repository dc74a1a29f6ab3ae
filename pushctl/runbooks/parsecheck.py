"""Parse a runbook's command with today's CLI, without running it.

The root command is passed in (the CLI layer builds it with `typer.main.get_command(app)`), so this
package does not import the CLI. Each level is parsed with `make_context` (resilient parsing off):
a misspelt flag, a removed command or an invalid value fails exactly as the user would see it.

    check_argv(root, ("fail", "redis", "--mdoe", "down"))
    # Parsed(path=('fail', 'redis'), error='No such option: --mdoe Did you mean --mode?', ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer

# Options a runbook must not carry: verify passes --inventory itself; the others print and exit.
FORBIDDEN = {
    "--inventory": "runbooks are inventory-free: verify passes --inventory itself",
    "-i": "runbooks are inventory-free: verify passes --inventory itself",
    "--help": "--help prints and exits: not a runbook step",
    "-h": "--help prints and exits: not a runbook step",
    "--install-completion": "not a runbook step",
    "--show-completion": "not a runbook step",
}
# Commands that change nothing: verify may re-run them until a `within` expectation holds.
READ_ONLY = {
    ("status",),
    ("fault", "list"),
    ("stack", "status"),
    ("runbook", "list"),
    ("runbook", "show"),
    ("slo", "query"),
}


@dataclass(frozen=True)
class Parsed:
    path: tuple[str, ...]  # the command names, e.g. ('fail', 'redis')
    error: str | None
    has_json: bool = False
    options: frozenset[str] = frozenset()

    @property
    def read_only(self) -> bool:
        return self.path in READ_ONLY


def _option_names(command: Any) -> frozenset[str]:
    names: set[str] = set()
    for param in getattr(command, "params", []):
        names.update(getattr(param, "opts", []))
        names.update(getattr(param, "secondary_opts", []))
    return frozenset(n for n in names if n.startswith("-"))


def _rest(ctx: Any) -> list[str]:
    # click keeps the not-yet-parsed subcommand words apart from the remaining args
    protected = getattr(ctx, "_protected_args", None)
    if protected is None:
        protected = getattr(ctx, "protected_args", [])
    return [*protected, *ctx.args]


def check_argv(root: Any, argv: Sequence[str]) -> Parsed:
    """Resolve and parse `pushctl ARGV` level by level; `error` is the CLI's own message, or None."""
    for token in argv:
        name = token.split("=", 1)[0]
        if name in FORBIDDEN:
            return Parsed((), f"{name}: {FORBIDDEN[name]}")
    command, name, args, parent = root, "pushctl", list(argv), None
    path: list[str] = []
    try:
        while True:
            ctx = command.make_context(name, args, parent=parent, resilient_parsing=False)
            if not hasattr(command, "resolve_command"):
                return Parsed(tuple(path), None, "--json" in _option_names(command), _option_names(command))
            rest = _rest(ctx)
            if not rest:
                return Parsed(tuple(path), f"`pushctl {' '.join(path)}` needs a command")
            name, sub, args = command.resolve_command(ctx, rest)
            if sub is None or name is None:
                return Parsed(tuple(path), f"no such command {rest[0]!r}")
            path.append(name)
            command, parent = sub, ctx
    except typer.Exit:
        return Parsed(tuple(path), "the command exits while parsing (an eager option such as --help)")
    except typer.TyperException as exc:  # click's UsageError / BadParameter, vendored by typer
        if type(exc).__name__ == "NoArgsIsHelpError":  # its message is the whole help page
            return Parsed(tuple(path), f"`pushctl {' '.join(path)}` needs a command")
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        return Parsed(tuple(path), " ".join(message.split()))


def check_inline(root: Any, argv: Sequence[str]) -> str | None:
    """A command quoted in prose may omit values: only its command words and flag names must exist."""
    command: Any = root
    words = list(argv)
    path: list[str] = []
    while words and hasattr(command, "commands") and not words[0].startswith("-"):
        sub = command.commands.get(words[0])
        if sub is None:
            return f"no such command `pushctl {' '.join([*path, words[0]])}`"
        path.append(words.pop(0))
        command = sub
    known = _option_names(command)
    for word in words:
        flag = word.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            return f"`pushctl {' '.join(path)}` has no option {flag}"
    return None
