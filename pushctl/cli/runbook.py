"""`pushctl runbook list | show | lint | verify`: on-call runbooks that are executed, not just read.

    pushctl runbook list
    pushctl runbook show redis-outage
    pushctl runbook verify                       # every runbook against the reference stack
    pushctl runbook verify redis-outage --junit reports/runbooks.xml

verify exits 0 when every runbook passed, 1 when one failed (lint error, failed step or
expectation), 2 on bad input, 7 when the stack could not be put back at its baseline, 130 when
interrupted (after putting it back).
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from pushctl import render
from pushctl.actions.abort import Session
from pushctl.cli.options import CONFIRM_ENV, ConfirmOpt, require_confirmed
from pushctl.cli.state import state
from pushctl.errors import Interrupted, PushctlError, RollbackFailed
from pushctl.probe.duration import parse_duration
from pushctl.runbooks import (
    EXPERIMENTS_DIR,
    CommandRunner,
    MetricNames,
    Runbook,
    Verifier,
    alerts,
    documented_metric_names,
    errors,
    lint,
    load_runbook,
    runbook_dir,
    scrape_metric_names,
    select,
)

app = typer.Typer(help="On-call runbooks: list, show, lint, and verify them against a stack.", no_args_is_help=True)

DirOpt = Annotated[
    Path | None, typer.Option("--dir", help="Runbook directory (default: $PUSHCTL_RUNBOOKS or runbooks/).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
NamesArg = Annotated[list[str] | None, typer.Argument(metavar="NAME", help="Runbook ids or .md files (default: all).")]


class RunbookFailed(PushctlError):
    """At least one runbook failed its lint or one of its steps (exit 1, like a failed hypothesis)."""

    exit_code = 1


def _root_command() -> Any:
    from pushctl.cli.main import app as root_app  # the root app composes this module: import late

    return typer.main.get_command(root_app)


def _load(directory: Path | None, names: list[str] | None) -> list[Runbook]:
    return [load_runbook(p) for p in select(runbook_dir(directory), names or [])]


@app.command("list")
def list_runbooks(dir_: DirOpt = None, json_out: JsonOpt = False) -> None:
    """Every runbook: id, severity, the experiment that reproduces it, owner."""
    rows = [
        {
            "id": rb.id,
            "title": rb.title,
            "severity": rb.meta.get("severity"),
            "experiment": rb.meta.get("experiment"),
            "owner": rb.meta.get("owner"),
            "commands": len(rb.failure) + len(rb.commands),
            "path": str(rb.path),
        }
        for rb in _load(dir_, None)
    ]
    if json_out:
        render.print_json({"runbooks": rows})
    else:
        render.runbook_list(rows)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Runbook id or .md file.")],
    dir_: DirOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Render a runbook in the terminal, its commands highlighted."""
    rb = _load(dir_, [name])[0]
    if json_out:
        render.print_json(
            {
                **rb.meta,
                "path": str(rb.path),
                "commands": [
                    {"section": c.section, "line": c.line, "command": c.text, "expects": [e.text for e in c.expects]}
                    for c in [*rb.failure, *rb.commands]
                ],
            }
        )
    else:
        render.runbook_show(rb.meta, rb.body)


def _lint_all(runbooks: list[Runbook], metrics: MetricNames | None) -> list[tuple[Runbook, list[Any]]]:
    """Each runbook's problems, its Symptoms alert rows (and their agreement across runbooks) included."""
    root = _root_command()
    _, alert_problems = alerts.collect(runbooks)
    return [
        (
            rb,
            sorted(
                [*lint(rb, cli=root, metrics=metrics, experiments_dir=EXPERIMENTS_DIR), *alert_problems[rb.path]],
                key=lambda p: p.line,
            ),
        )
        for rb in runbooks
    ]


@app.command("lint")
def lint_runbooks(
    ctx: typer.Context,
    names: NamesArg = None,
    dir_: DirOpt = None,
    live: Annotated[
        bool, typer.Option("--live", help="Check metric names against the running stack's /metrics, not the docs.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check runbooks without running them: sections, commands parse with today's CLI, metrics exist,
    and the shipped alert rules (stack/prometheus/alerts.yml) are exactly the Symptoms tables."""
    metrics = asyncio.run(scrape_metric_names(state(ctx).inventory)) if live else documented_metric_names()
    runbooks = _load(dir_, names)
    linted = _lint_all(runbooks, metrics)
    by_name, _ = alerts.collect(runbooks)
    # the rule file holds every runbook's alerts: compared only when every runbook of the directory is linted
    rules = alerts.check_rules_file(by_name) if not names and dir_ is None else []
    if json_out:
        render.print_json(
            {
                "metrics": metrics.source,
                "runbooks": [
                    {"id": rb.id, "path": str(rb.path), "passed": not errors(p), "problems": [x.to_json() for x in p]}
                    for rb, p in linted
                ],
                "alert_rules": {"path": str(alerts.ALERTS_FILE), "problems": [x.to_json() for x in rules]},
            }
        )
    else:
        for rb, problems in linted:
            render.runbook_problems(str(rb.path), problems)
        if not names and dir_ is None:
            render.runbook_problems(str(alerts.ALERTS_FILE), rules)
    bad = [rb.id for rb, p in linted if errors(p)] + ([alerts.ALERTS_FILE.name] if rules else [])
    if bad:
        raise RunbookFailed(f"lint failed: {', '.join(bad)}")


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command("verify")
def verify(
    ctx: typer.Context,
    names: NamesArg = None,
    dir_: DirOpt = None,
    confirm_target: ConfirmOpt = None,
    step_timeout: Annotated[str, typer.Option("--step-timeout", help="Longest a single command may run.")] = "5m",
    junit: Annotated[
        Path | None, typer.Option("--junit", metavar="FILE", help="Also write a JUnit XML report.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Bring the stack to each runbook's failure, run its commands, check each expectation; restore."""
    inv = state(ctx).inventory
    require_confirmed(inv, confirm_target, "runbook verify injects failures into it")
    timeout = parse_duration(step_timeout, what="--step-timeout")
    runbooks = _load(dir_, names)
    metrics = asyncio.run(scrape_metric_names(inv))
    linted = _lint_all(runbooks, metrics)
    # the runbooks' own commands act on the target the operator just confirmed
    runner = CommandRunner(inv.source, timeout=timeout, env={**os.environ, CONFIRM_ENV: inv.name})
    verifier = Verifier(inv, runner, on_step=lambda rb, step: render.runbook_step(rb.id, step))
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        with Session(inv, f"runbook verify {' '.join(names or []) or '(all)'}"):  # `pushctl abort` finds it
            for rb, problems in linted:
                render.runbook_problems(str(rb.path), problems, quiet_when_clean=True)
            report = verifier.verify_all(linted)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if junit is not None:
        from pushctl.runbooks.junit import write_junit

        write_junit(report, junit)
    if json_out:
        render.print_json(report.to_json())
    else:
        render.runbook_report(report)
    if report.interrupted:
        where = "back at its baseline"
        if report.baseline_lost:
            where = "NOT back at its baseline: run `pushctl recover --all`"
        raise Interrupted(f"runbook verify interrupted; the stack is {where}")
    if report.baseline_lost:
        failed = [r.id for r in report.results if r.baseline_restored is False]
        raise RollbackFailed(
            f"the stack is not at its baseline after runbook {failed[0]}",
            hint="see the failed restore step; `pushctl status` shows what is left",
        )
    if not report.passed:
        raise RunbookFailed(
            f"{sum(not r.passed for r in report.results)} of {len(report.results)} runbooks failed: "
            + ", ".join(r.id for r in report.results if not r.passed)
        )
