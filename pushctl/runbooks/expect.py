"""The `# expect:` grammar of runbook commands: what a machine checks in a command's result.

    # expect: exit 1                               the command's exit status (default: exit 0)
    # expect: during.lost == 0                     PATH OP VALUE on the command's --json output
    # expect: storage.mode == "fallback"
    # expect: policies.*.region contains "south"
    # expect: components[name=logic-idc1].healthy == false
    # expect: policies == [] within 20s           re-run the (read-only) command until it holds

PATH is dot-separated: a key, a list index (`0`, `-1`), `*` (every element / value, as a list) or
`[key=value]` (the first element whose `key` is `value`). OP is one of `==  !=  >=  <=  >  <`,
`contains` (a list holds VALUE, or a string contains it), `in` (the value is one of a list), and
`not contains`, `not in`.
VALUE is a JSON literal: `0`, `99.9`, `"fallback"`, `true`, `null`, `[]`, `["north", "east"]`.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pushctl.errors import UsageError
from pushctl.probe.duration import parse_duration

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "contains": lambda actual, value: value in actual,
    "in": lambda actual, value: actual in value,
    "not contains": lambda actual, value: value not in actual,
    "not in": lambda actual, value: actual not in value,
}
_ORDERING = (">=", "<=", ">", "<")
_EXIT = re.compile(r"^exit\s+(\d{1,3})$")
_WITHIN = re.compile(r"\s+within\s+(\S+)$")
_COMPARE = re.compile(r"^(\S+)\s+(==|!=|>=|<=|>|<|not contains|contains|not in|in)\s+(.+)$")
_FILTER = re.compile(r"^\[([\w-]+)=([^\]]*)\]$")
_MISSING = object()


class ExpectSyntaxError(ValueError):
    """An `# expect:` line that does not follow the grammar."""


@dataclass(frozen=True)
class Expect:
    line: int
    text: str
    exit_code: int | None = None
    path: str | None = None
    op: str | None = None
    value: Any = None
    within: float | None = None

    def check(self, exit_code: int, data: Any) -> tuple[bool, str]:
        """(held, what was found); `data` is the parsed --json output (None when there was none)."""
        if self.exit_code is not None:
            return exit_code == self.exit_code, f"exit {exit_code}"
        assert self.path is not None and self.op is not None  # noqa: S101 - parse_expect guarantees it
        if data is None:
            return False, "the command printed no JSON"
        try:
            actual = resolve(data, self.path)
        except LookupError as exc:
            return False, str(exc)
        try:
            held = bool(OPS[self.op](actual, self.value))
        except TypeError:
            held = False
        if self.op in _ORDERING and not (_is_number(actual) and _is_number(self.value)):
            held = False
        return held, f"{self.path} = {_show(actual)}"


def parse_expect(text: str, *, line: int = 0) -> Expect:
    """One expectation (the text after `# expect:`); ExpectSyntaxError when it does not parse."""
    body = text.strip()
    within: float | None = None
    found = _WITHIN.search(body)
    if found:
        try:
            within = parse_duration(found.group(1), what="within")
        except UsageError as exc:
            raise ExpectSyntaxError(f"expect: {exc.message}") from None
        body = body[: found.start()].strip()
    exit_match = _EXIT.match(body)
    if exit_match:
        if within is not None:
            raise ExpectSyntaxError("expect: `within` applies to a JSON path, not to `exit`")
        return Expect(line, text.strip(), exit_code=int(exit_match.group(1)))
    match = _COMPARE.match(body)
    if not match:
        raise ExpectSyntaxError(f"expect: cannot read {body!r}: use `exit N` or `PATH OP VALUE` (OP: {' '.join(OPS)})")
    path, op, raw = match.groups()
    _check_path(path)
    try:
        value = json.loads(raw)
    except ValueError:
        raise ExpectSyntaxError(
            f'expect: {raw!r} is not a JSON value (strings need double quotes: "fallback")'
        ) from None
    if op in _ORDERING and not _is_number(value):
        raise ExpectSyntaxError(f"expect: {op} needs a number, not {raw}")
    if op in ("in", "not in") and not isinstance(value, list):
        raise ExpectSyntaxError('expect: `in` needs a list, e.g. ["north", "east"]')
    return Expect(line, text.strip(), path=path, op=op, value=value, within=within)


def _check_path(path: str) -> None:
    for segment in split_path(path):
        if not (segment == "*" or _FILTER.match(segment) or re.fullmatch(r"-?\d+|[\w-]+", segment)):
            raise ExpectSyntaxError(f"expect: bad path segment {segment!r} in {path!r}")


def split_path(path: str) -> list[str]:
    """`a.b[name=x].c` -> ['a', 'b', '[name=x]', 'c']"""
    out: list[str] = []
    for part in path.split("."):
        while "[" in part and not part.startswith("["):
            head, _, rest = part.partition("[")
            out.append(head)
            part = "[" + rest
        if part.startswith("[") and "][" in part:
            first, _, rest = part.partition("][")
            out.append(first + "]")
            part = "[" + rest
        if part == "":
            raise ExpectSyntaxError(f"expect: empty segment in path {path!r}")
        out.append(part)
    return out


def resolve(data: Any, path: str) -> Any:
    """The value at `path` in `data`; LookupError naming the segment that is missing."""
    current: list[Any] = [data]
    many = False
    walked: list[str] = []
    for segment in split_path(path):
        nxt: list[Any] = []
        for item in current:
            nxt.extend(_step(item, segment, ".".join(walked) or "(top)", spread=many))
        if segment == "*":
            many = True
        walked.append(segment)
        current = nxt
    if many:
        return current
    return current[0]


def _step(item: Any, segment: str, where: str, *, spread: bool) -> list[Any]:
    if segment == "*":
        if isinstance(item, dict):
            return list(item.values())
        if isinstance(item, list):
            return list(item)
        raise LookupError(f"`*` after {where}: {_show(item)} is not a list or object")
    found = _FILTER.match(segment)
    if found:
        key, want = found.groups()
        if isinstance(item, list):
            for element in item:
                if isinstance(element, dict) and _matches(element.get(key, _MISSING), want):
                    return [element]
        if spread:
            return []
        raise LookupError(f"no element of {where} has {key} = {want}")
    if isinstance(item, dict) and segment in item:
        return [item[segment]]
    if isinstance(item, list) and re.fullmatch(r"-?\d+", segment):
        index = int(segment)
        if -len(item) <= index < len(item):
            return [item[index]]
    if spread:
        return []
    keys = ", ".join(map(str, item.keys())) if isinstance(item, dict) else type(item).__name__
    raise LookupError(f"{where} has no {segment!r} (it has: {keys})")


def _matches(value: Any, want: str) -> bool:
    if value is _MISSING:
        return False
    if isinstance(value, bool):
        return want == ("true" if value else "false")
    return str(value) == want


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."
