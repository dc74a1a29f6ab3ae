"""The runbook linter: every section, every command parses with today's CLI, every metric exists.

    problems = lint(runbook, cli=typer.main.get_command(app), metrics=documented_metric_names())
    errors = [p for p in problems if p.severity == "error"]

Runs first inside `pushctl runbook verify` (a runbook with errors never touches the stack) and on
its own as `pushctl runbook lint`. Warnings are reported and never fail.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from pushctl.runbooks.metrics import MetricNames, names_in
from pushctl.runbooks.model import FRONT_MATTER_KEYS, SECTIONS, Command, Problem, Runbook, section_key
from pushctl.runbooks.parsecheck import check_argv, check_inline

SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
# Sections that must hold at least one fenced command (Symptoms, Impact and Escalate are prose).
NEEDS_COMMANDS = ("Diagnose", "Mitigate", "Verify", "Roll back")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def lint(
    runbook: Runbook,
    *,
    cli: Any,
    metrics: MetricNames | None,
    experiments_dir: Path | None = None,
) -> list[Problem]:
    """Every problem of `runbook`, in line order (parse problems included)."""
    problems = list(runbook.problems)
    problems += _front_matter(runbook, experiments_dir)
    problems += _sections(runbook)
    for command in [*runbook.failure, *runbook.commands]:
        problems += _command(command, cli)
    for inline in runbook.inline:
        message = check_inline(cli, inline.argv)
        if message:
            problems.append(Problem(inline.line, message))
    if metrics is not None:
        problems += _metrics(runbook, metrics)
    return sorted(problems, key=lambda p: (p.line, p.severity, p.message))


def _front_matter(runbook: Runbook, experiments_dir: Path | None) -> list[Problem]:
    meta = runbook.meta
    if not meta:
        return []  # already reported by the parser
    out = [Problem(1, f"front matter: missing `{key}:`") for key in FRONT_MATTER_KEYS if key not in meta]
    ident = meta.get("id")
    if ident is not None and (not isinstance(ident, str) or not _ID.match(ident)):
        out.append(Problem(1, f"front matter: id {ident!r} must be lower-case words joined by '-'"))
    elif ident is not None and ident != runbook.path.stem:
        out.append(Problem(1, f"front matter: id {ident!r} differs from the file name {runbook.path.name!r}"))
    severity = meta.get("severity")
    if severity is not None and severity not in SEVERITIES:
        out.append(Problem(1, f"front matter: severity {severity!r} is not one of {', '.join(SEVERITIES)}"))
    for key in ("owner", "title", "experiment"):
        if key in meta and (not isinstance(meta[key], str) or not meta[key].strip()):
            out.append(Problem(1, f"front matter: `{key}:` must be a non-empty string"))
    experiment = meta.get("experiment")
    if isinstance(experiment, str) and experiments_dir is not None:
        if not any((experiments_dir / f"{experiment}{ext}").exists() for ext in (".yaml", ".yml")):
            out.append(
                Problem(1, f"experiment {experiment!r}: no {experiments_dir.name}/{experiment}.yaml yet", "warning")
            )
    return out


def _sections(runbook: Runbook) -> list[Problem]:
    out: list[Problem] = []
    seen = [(section_key(title), line, title) for title, line in runbook.sections]
    keys = [k for k, _, _ in seen if k is not None]

    def heading(name: str) -> tuple[int, str]:
        return next((line, title) for k, line, title in seen if k == name)

    for name in SECTIONS:
        if name not in keys:
            out.append(Problem(0, f"missing section `## {name}`"))
    ordered = [k for k in keys if k in SECTIONS]
    if ordered != sorted(ordered, key=SECTIONS.index):
        out.append(Problem(0, f"sections out of order: expected {' → '.join(SECTIONS)}"))
    for name in NEEDS_COMMANDS:
        if name in keys and not any(c.section == name for c in runbook.commands):
            line, title = heading(name)
            out.append(Problem(line, f"`## {title}` has no ```pushctl command"))
    if "Verify" in keys and not any(c.section == "Verify" and c.wants_json for c in runbook.commands):
        line, title = heading("Verify")
        out.append(Problem(line, f"`## {title}` has no `# expect: PATH OP VALUE` a machine can check"))
    if "Symptoms" in keys and not list(names_in(runbook.section_text("Symptoms"))):
        line, title = heading("Symptoms")
        out.append(Problem(line, f"`## {title}` names no metric (pushstack_...) to alert on"))
    stray = [c for c in runbook.commands if c.section == ""]
    out += [Problem(c.line, "command before the first `##` section") for c in stray]
    return out


def _command(command: Command, cli: Any) -> list[Problem]:
    parsed = check_argv(cli, command.argv)
    if parsed.error is not None:
        return [Problem(command.line, f"`{command.text}`: {parsed.error}")]
    out: list[Problem] = []
    if command.wants_json and not parsed.has_json:
        out.append(Problem(command.line, f"`pushctl {' '.join(parsed.path)}` has no --json for its expectations"))
    for expect in command.expects:
        if expect.within and not parsed.read_only:
            out.append(
                Problem(
                    expect.line,
                    f"`within` re-runs the command: only for read-only ones, not `pushctl {' '.join(parsed.path)}`",
                )
            )
    if len([e for e in command.expects if e.exit_code is not None]) > 1:
        out.append(Problem(command.line, "more than one `# expect: exit N` for one command"))
    return out


def _metrics(runbook: Runbook, metrics: MetricNames) -> list[Problem]:
    out: list[Problem] = []
    for offset, name in names_in(runbook.body):
        if name in metrics:
            continue
        close = difflib.get_close_matches(name, metrics.names, n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(
            Problem(
                runbook.body_line + offset,
                f"metric {name} is not exported by our services{hint}; checked against {metrics.source}",
            )
        )
    return out


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
