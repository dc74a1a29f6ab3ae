"""A runbook file parsed into what verify executes: front matter, sections, commands and expectations.

    ---
    id: redis-outage
    failure:
      - pushctl fail redis --mode down --hold --no-probe --duration 1s
    ...
    ---
    ## Diagnose
    ```pushctl
    pushctl status
    # expect: storage.mode == "fallback"
    ```

Every line keeps its number in the file, so every problem is reported as `file:line: message`.
Parsing never raises on content: what is wrong is collected in `Runbook.problems` for the linter.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pushctl.runbooks.expect import Expect, ExpectSyntaxError, parse_expect

SECTIONS: tuple[str, ...] = ("Symptoms", "Impact", "Diagnose", "Mitigate", "Verify", "Roll back", "Escalate")
FRONT_MATTER_KEYS: tuple[str, ...] = ("id", "title", "severity", "experiment", "owner", "failure")
COMMAND_FENCE = "pushctl"

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")
_EXPECT = re.compile(r"^#\s*expect\b\s*:?(.*)$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a runbook, at a line of its file (0: the file as a whole)."""

    line: int
    message: str
    severity: str = "error"  # or "warning": reported, never fails verification

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message, "severity": self.severity}


@dataclass(frozen=True)
class Command:
    """One `pushctl ...` command of a fenced block (or of `failure:`), with its expectations."""

    line: int
    text: str
    argv: tuple[str, ...]  # without the leading `pushctl`
    section: str
    expects: tuple[Expect, ...] = ()

    @property
    def within(self) -> float:
        """Longest `within` of its expectations: how long verify re-runs a read-only command."""
        return max((e.within or 0.0 for e in self.expects), default=0.0)

    @property
    def wants_json(self) -> bool:
        return any(e.path is not None for e in self.expects)

    @property
    def exit_expected(self) -> int:
        codes = [e.exit_code for e in self.expects if e.exit_code is not None]
        return codes[-1] if codes else 0


@dataclass(frozen=True)
class InlineCommand:
    """A `pushctl ...` span in prose: not executed, but its command and flags must exist."""

    line: int
    argv: tuple[str, ...]


@dataclass
class Runbook:
    path: Path
    meta: dict[str, Any]
    sections: list[tuple[str, int]]  # (heading, line), `##` headings in file order
    commands: list[Command]  # fenced commands, in file order
    failure: list[Command]  # from the front matter, run before the fenced ones
    inline: list[InlineCommand]
    body: str  # the Markdown after the front matter
    body_line: int  # line number of the body's first line
    problems: list[Problem] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.meta.get("id") or self.path.stem)

    @property
    def title(self) -> str:
        return str(self.meta.get("title") or self.id)

    def section_text(self, name: str) -> str:
        """The Markdown under `## name` (up to the next `##`), or ''."""
        lines = self.body.splitlines()
        out: list[str] = []
        inside = False
        for line in lines:
            match = _HEADING.match(line)
            if match and len(match.group(1)) == 2:
                inside = section_key(match.group(2)) == name
                continue
            if inside:
                out.append(line)
        return "\n".join(out)


def section_key(heading: str) -> str | None:
    """The canonical section a `##` heading stands for (`Roll back / recover` -> `Roll back`)."""
    text = heading.strip().lower().replace("-", " ")
    for name in SECTIONS:
        key = name.lower()
        if text == key or text.startswith(key + " ") or text.startswith(key + "/"):
            return name
    if text.startswith("rollback"):
        return "Roll back"
    return None


def split_command(text: str) -> tuple[str, ...]:
    """`pushctl drain --region south  # why` -> ('drain', '--region', 'south'); ValueError if not pushctl."""
    words = shlex.split(text, comments=True)
    if not words or words[0] != "pushctl":
        raise ValueError("a command must start with `pushctl`")
    return tuple(words[1:])


def load_runbook(path: str | Path) -> Runbook:
    """Parse one runbook file; what is wrong with it is in `.problems`, never raised."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    problems: list[Problem] = []
    meta, fm_lines, body_start = _front_matter(lines, problems)
    body_lines = lines[body_start:]
    failure = _failure_commands(meta, fm_lines, problems)
    sections, commands, inline = _body(body_lines, body_start, problems)
    return Runbook(
        path=path,
        meta=meta,
        sections=sections,
        commands=commands,
        failure=failure,
        inline=inline,
        body="\n".join(body_lines),
        body_line=body_start + 1,
        problems=problems,
    )


def _front_matter(lines: list[str], problems: list[Problem]) -> tuple[dict[str, Any], list[str], int]:
    if not lines or lines[0].strip() != "---":
        problems.append(Problem(1, "no front matter: the file must start with a `---` block"))
        return {}, [], 0
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "---")
    except StopIteration:
        problems.append(Problem(1, "front matter is not closed with `---`"))
        return {}, [], 0
    fm_lines = lines[: end + 1]
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(2 + (mark.line if mark else 0), f"front matter is not valid YAML: {exc}"))
        return {}, fm_lines, end + 1
    if not isinstance(meta, dict):
        problems.append(Problem(2, "front matter must be a mapping of keys"))
        return {}, fm_lines, end + 1
    return meta, fm_lines, end + 1


def _line_of(fm_lines: list[str], needle: str, default: int) -> int:
    for number, line in enumerate(fm_lines, start=1):
        if needle in line:
            return number
    return default


def _failure_commands(meta: dict[str, Any], fm_lines: list[str], problems: list[Problem]) -> list[Command]:
    raw = meta.get("failure")
    key_line = _line_of(fm_lines, "failure:", 1)
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        problems.append(Problem(key_line, "`failure:` must be a list of `pushctl ...` commands"))
        return []
    out = []
    for item in items:
        line = _line_of(fm_lines, item.strip(), key_line)
        try:
            out.append(Command(line, item.strip(), split_command(item), "failure"))
        except ValueError as exc:
            problems.append(Problem(line, f"failure: {exc}: {item!r}"))
    return out


def _body(
    lines: list[str], offset: int, problems: list[Problem]
) -> tuple[list[tuple[str, int]], list[Command], list[InlineCommand]]:
    sections: list[tuple[str, int]] = []
    commands: list[Command] = []
    inline: list[InlineCommand] = []
    current = ""
    fence: tuple[str, str, int] | None = None  # (marker, info, line)
    block: list[tuple[int, str]] = []
    for index, line in enumerate(lines):
        number = offset + index + 1
        if fence is not None:
            if line.strip().startswith(fence[0]) and line.strip().strip(fence[0][0]) == "":
                if fence[1] == COMMAND_FENCE:
                    commands += _block_commands(block, current, fence[2], problems)
                elif any(ln.lstrip().startswith("pushctl ") for _, ln in block):
                    problems.append(
                        Problem(
                            fence[2],
                            f"pushctl commands in a ```{fence[1] or ''} block are never verified:"
                            " fence them as ```pushctl",
                        )
                    )
                fence, block = None, []
            else:
                block.append((number, line))
            continue
        opened = _FENCE.match(line.strip())
        if opened:
            fence = (opened.group(1), opened.group(2), number)
            continue
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) == 2:
            current = section_key(heading.group(2)) or heading.group(2).strip()
            sections.append((heading.group(2).strip(), number))
            continue
        for span in re.findall(r"`(pushctl [^`]+)`", line):
            if "..." in span or "<" in span:
                continue  # a pattern (`pushctl fail ... --hold`), not a command
            try:
                inline.append(InlineCommand(number, split_command(span)))
            except ValueError as exc:
                problems.append(Problem(number, f"{exc}: `{span}`"))
    if fence is not None:
        problems.append(Problem(fence[2], "code block is never closed"))
    return sections, commands, inline


def _block_commands(
    block: list[tuple[int, str]], section: str, fence_line: int, problems: list[Problem]
) -> list[Command]:
    out: list[Command] = []
    pending: tuple[int, str] | None = None  # a command continued with a trailing backslash
    expects: list[Expect] = []

    def flush() -> None:
        nonlocal pending, expects
        if pending is None:
            return
        line, text = pending
        try:
            out.append(Command(line, text, split_command(text), section, tuple(expects)))
        except ValueError as exc:
            problems.append(Problem(line, f"{exc}: {text!r}"))
        pending, expects = None, []

    continuing = False
    for number, raw in block:
        line = raw.strip()
        if continuing and pending is not None:
            pending = (pending[0], pending[1] + " " + line.rstrip("\\").strip())
            continuing = line.endswith("\\")
            continue
        if not line:
            continue
        expect = _EXPECT.match(line)
        if expect:
            if pending is None:
                problems.append(Problem(number, "`# expect:` before any command in this block"))
                continue
            try:
                expects.append(parse_expect(expect.group(1), line=number))
            except ExpectSyntaxError as exc:
                problems.append(Problem(number, str(exc)))
            continue
        if line.startswith("#"):
            continue  # a comment for the reader
        flush()
        if not line.startswith("pushctl"):
            problems.append(Problem(number, f"not a pushctl command: {line!r} (only pushctl runs here)"))
            continue
        pending = (number, line.rstrip("\\").strip())
        continuing = line.endswith("\\")
    flush()
    if not out and not any(p.line >= fence_line for p in problems):
        problems.append(Problem(fence_line, "empty ```pushctl block"))
    return out


def find_runbooks(directory: Path) -> list[Path]:
    """Every runbook in `directory` (the index, README.md, is not one)."""
    return sorted(p for p in directory.glob("*.md") if p.name.lower() != "readme.md")
