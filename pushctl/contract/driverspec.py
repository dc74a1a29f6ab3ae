"""The inventory's `[driver]` table: which target driver makes the changes, and the `command` driver's templates.

    [driver]
    kind = "command"                 # "reference" (default: pushctl's control API) or an entry point's name
    timeout_s = 30                   # every command's time limit unless its own says otherwise

    [driver.commands.drain]          # one table per verb the platform supports
    apply = "drain-region --region {region} --spread {spread_s}"
    undo = "undrain-region --region {region}"

Templates name placeholders in braces; each verb has its own (`VERB_PLACEHOLDERS`), `{env:NAME}`
reads a secret from the environment at run time (never written to the journal), and `{{` / `}}`
are literal braces. Validated here, when the inventory loads: an unknown verb or placeholder, a
verb without its undo, is an `InventoryError` naming the key.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The verbs a driver implements, and what a command template of each may name. Undo templates get the
# same as their apply template, except drain's: `pushctl restore` runs it, knowing only the region.
VERB_PLACEHOLDERS: dict[str, frozenset[str]] = {
    "drain": frozenset({"region", "spread_s", "body"}),
    "switch": frozenset({"weights", "to", "body"}),
    "throttle": frozenset({"mode", "limit", "safe_load", "threshold", "body"}),
    "storage_fault": frozenset({"mode", "latency_ms", "service", "body"}),
}
UNDO_PLACEHOLDERS: dict[str, frozenset[str]] = {**VERB_PLACEHOLDERS, "drain": frozenset({"region"})}
COMMON_PLACEHOLDERS = frozenset({"verb", "target"})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

Seconds = Annotated[float, Field(gt=0, le=3600)]


class TemplateError(ValueError):
    """A command template that cannot be rendered (an unknown placeholder, a stray brace)."""


def placeholders(template: str) -> tuple[set[str], set[str]]:
    """(placeholders, env var names) a template names; raises TemplateError on a stray brace."""
    names: set[str] = set()
    env: set[str] = set()
    for match in _FIELD.finditer(template):
        token = match.group(0)
        if token in ("{{", "}}"):
            continue
        if match.group(1) is None:
            raise TemplateError(f"a lone {token!r} (write {token * 2} for a literal brace)")
        name = match.group(1)
        if name.startswith("env:"):
            var = name.removeprefix("env:")
            if not ENV_NAME.match(var):
                raise TemplateError(f"{{{name}}}: {var!r} is not an environment variable name")
            env.add(var)
        else:
            names.add(name)
    return names, env


def render(template: str, values: Mapping[str, Any]) -> str:
    """The shell command: each placeholder's value shell-quoted; `{env:NAME}` becomes `"${NAME}"`, so the
    shell reads the secret from the environment and the rendered command (journaled) never holds it."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name is None:
            raise TemplateError(f"a lone {token!r}")
        if name.startswith("env:"):
            return '"${' + name.removeprefix("env:") + '}"'
        if name not in values:
            raise TemplateError(f"unknown placeholder {{{name}}}")
        return shlex.quote(_text(values[name]))

    return _FIELD.sub(one, template)


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return ""
    return str(value)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class VerbCommands(_Model):
    """How the platform makes one change, and how it undoes it."""

    apply: str = Field(min_length=1)
    undo: str = Field(min_length=1)
    timeout_s: Seconds | None = None


class BaselineCommand(_Model):
    """A command printing the target's state: run before a change and after its rollback (or `recover`),
    whose output must come back to what it was within `settle_s`."""

    command: str = Field(min_length=1)
    settle_s: Seconds = 15.0
    timeout_s: Seconds | None = None


class DriverSpec(_Model):
    kind: str = Field(default="reference", pattern=r"^[a-z][a-z0-9_-]*$", max_length=48)
    timeout_s: Seconds = 30.0
    commands: dict[str, VerbCommands] = Field(default_factory=dict)
    baseline: BaselineCommand | None = None

    @model_validator(mode="after")
    def _check_templates(self) -> DriverSpec:
        if self.kind == "reference" and (self.commands or self.baseline):
            raise ValueError('commands and baseline are for kind = "command"; the reference driver takes none')
        for verb, cmds in self.commands.items():
            if verb not in VERB_PLACEHOLDERS:
                valid = ", ".join(sorted(VERB_PLACEHOLDERS))
                raise ValueError(f"commands.{verb}: unknown verb {verb!r}; valid: {valid} (restore runs drain's undo)")
            for which, allowed in (("apply", VERB_PLACEHOLDERS[verb]), ("undo", UNDO_PLACEHOLDERS[verb])):
                _check_template(f"commands.{verb}.{which}", getattr(cmds, which), allowed | COMMON_PLACEHOLDERS)
        if self.baseline is not None:
            _check_template("baseline.command", self.baseline.command, COMMON_PLACEHOLDERS)
        return self


def _check_template(where: str, template: str, allowed: frozenset[str]) -> None:
    try:
        names, _ = placeholders(template)
    except TemplateError as exc:
        raise ValueError(f"{where}: {exc}") from None
    unknown = sorted(names - allowed)
    if unknown:
        raise ValueError(
            f"{where}: unknown placeholder {{{unknown[0]}}}; valid here: "
            + ", ".join(f"{{{n}}}" for n in sorted(allowed))
            + ", {env:NAME}"
        )
