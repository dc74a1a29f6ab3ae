"""Load experiment files: YAML -> `Experiment`, every error with its file, line and field path.

    experiment = load_experiment(Path("experiments/redis-outage.yaml"))
    found = find_experiments(Path("experiments"))      # every *.yaml / *.yml, sorted

The YAML is composed into a node tree (which knows each value's line) beside the plain data that
pydantic validates; a pydantic error location is then walked down the node tree to its line. Union
tags in a location (the check and step kinds) are not YAML keys and are skipped on the way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pushctl.errors import UsageError
from pushctl.experiments.model import Experiment

SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an experiment file."""

    file: str
    line: int | None
    path: str  # field path, e.g. method[2].duration ('' for the whole file)
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "path": self.path, "message": self.message}


class ExperimentInvalid(UsageError):
    """One or more experiment files are invalid (exit 2); `problems` lists every error."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in experiment files:\n{first}",
            hint="`pushctl experiment validate FILE` checks a file; experiments/schema.json is its JSON Schema",
        )


@dataclass(frozen=True)
class Loaded:
    """A valid experiment and where it came from (the node tree maps later errors to lines)."""

    path: Path
    experiment: Experiment
    node: yaml.Node

    def problem(self, loc: Sequence[str | int], message: str) -> Problem:
        """A problem at a field of this file (used by resolution against the inventory)."""
        line, path = locate(self.node, loc, missing=False)
        return Problem(str(self.path), line, path, message)


def find_experiments(target: Path) -> list[Path]:
    """`target` itself when it is a file, else every YAML file in the directory, sorted by name."""
    if target.is_dir():
        files = sorted(p for p in target.iterdir() if p.suffix in SUFFIXES and p.is_file())
        if not files:
            raise UsageError(f"{target}: no experiment files (*.yaml) in this directory")
        return files
    if not target.exists():
        raise UsageError(f"{target}: no such file or directory")
    return [target]


def load_experiment(path: Path) -> Loaded:
    """Parse and validate one file; raises ExperimentInvalid listing every problem."""
    problems, loaded = check_file(path)
    if loaded is None:
        raise ExperimentInvalid(problems)
    return loaded


def check_file(path: Path) -> tuple[list[Problem], Loaded | None]:
    """(problems, the experiment when there were none)."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [Problem(name, None, "", f"cannot read: {exc}")], None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        detail = " ".join(str(x) for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x)
        return [Problem(name, line, "", f"invalid YAML: {detail or exc}")], None
    if node is None or not isinstance(data, dict):
        line = node.start_mark.line + 1 if node is not None else None
        return [Problem(name, line, "", "an experiment is a YAML mapping (title, steady_state, method, ...)")], None
    problems = _duplicate_keys(name, node)
    try:
        experiment = Experiment.model_validate(data)
    except ValidationError as exc:
        merged: dict[tuple[int | None, str], list[str]] = {}
        for err in exc.errors(include_url=False):
            line, field = locate(node, err["loc"], missing=err["type"] == "missing")
            merged.setdefault((line, field), []).append(_message(err))
        # a value that fits no member of a union fails once per member: say it once
        problems += [
            Problem(name, line, field, " or ".join(dict.fromkeys(msgs))) for (line, field), msgs in merged.items()
        ]
        return problems, None
    if problems:
        return problems, None
    return [], Loaded(path, experiment, node)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "missing":
        return "required field missing"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx") or {}
        return f"unknown {ctx.get('discriminator', 'kind').strip(chr(39))} {ctx.get('tag')!r}; valid: " + str(
            ctx.get("expected_tags", "")
        ).replace("'", "")
    return msg.removeprefix("Value error, ")


def locate(node: yaml.Node, loc: Sequence[str | int], *, missing: bool) -> tuple[int | None, str]:
    """The line of `loc` in the node tree and its human field path (`method[2].duration`)."""
    current = node
    parts: list[str | int] = []
    items = list(loc)
    for i, elem in enumerate(items):
        child = _child(current, elem)
        last = i == len(items) - 1
        if child is None:
            if last and missing:
                parts.append(elem)  # the missing field's name
            continue  # a union tag: not in the YAML
        if not last and isinstance(child, yaml.ScalarNode):
            # `action: drain` followed by more location: `action` was the union's tag, unless the
            # rest are pydantic's own type tags (`equals.str`), which lead nowhere in the YAML
            if missing or any(_child(current, later) is not None for later in items[i + 1 :]):
                continue
        current = child
        parts.append(elem)
    return current.start_mark.line + 1, _path(parts)


def _child(node: yaml.Node, elem: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(elem):
                return value  # type: ignore[no-any-return]
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(elem, int) and 0 <= elem < len(node.value):
        return node.value[elem]  # type: ignore[no-any-return]
    return None


def _path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _duplicate_keys(name: str, node: yaml.Node, path: str = "") -> list[Problem]:
    """YAML keeps the last of two equal keys silently; an experiment file must not."""
    out: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = str(key.value)
            sub = f"{path}.{k}" if path else k
            if k in seen:
                out.append(Problem(name, key.start_mark.line + 1, sub, "duplicate key"))
            seen.add(k)
            out += _duplicate_keys(name, value, sub)
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            out += _duplicate_keys(name, value, f"{path}[{i}]")
    return out
