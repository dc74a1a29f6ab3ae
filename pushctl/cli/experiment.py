"""`pushctl experiment validate|plan|run|list|report|schema`: game-day experiments and CI gates.

pushctl experiment validate experiments/
pushctl experiment plan experiments/redis-outage.yaml
pushctl experiment run experiments/ --junit out/experiments.xml --html out/experiments.html

Exit codes of `run`: 0 every experiment passed; 1 a check failed (something lost, duplicated or
broken, or timing missed on a rig that kept up), a stop condition fired or a step failed; 2 invalid
input (every problem is listed with file, line and field path; nothing ran); 4 the target is
unreachable or unhealthy; 6 another action or experiment holds the target; 7 a rollback failed
(run `pushctl recover` once the cause is fixed); 8 inconclusive (only timing checks failed while
the test rig could not keep up; never when anything was lost); 130 interrupted (after the
rollbacks ran). Several experiments: the most severe code (1 before 8 before 0).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from pushctl import render
from pushctl.cli.options import ConfirmOpt, JsonOpt, PrometheusOpt, RuntimeOpt, require_confirmed
from pushctl.cli.state import state
from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError, error_for_exit
from pushctl.experiments import (
    ExperimentInvalid,
    Problem,
    Resolved,
    RunSettings,
    check_file,
    find_experiments,
    read_journal,
    resolve,
    run_experiment,
    schema_text,
    worst_exit,
    write_html,
    write_junit,
)
from pushctl.experiments.run import EXIT_INTERRUPTED, EXIT_LOCKED, EXIT_ROLLBACK
from pushctl.experiments.score import exit_code_of, score_of
from pushctl.experiments.trend import load_journals, trend
from pushctl.experiments.trend_html import write_trend_html
from pushctl.promql import prometheus_url

app = typer.Typer(
    help="Game-day experiments: steady state, method, stop conditions, rollbacks; JUnit and HTML reports.",
    no_args_is_help=True,
)

PathArg = Annotated[Path, typer.Argument(metavar="FILE|DIR", help="An experiment file or a directory of them.")]
STOP_AFTER = (EXIT_ROLLBACK, EXIT_INTERRUPTED, EXIT_LOCKED)  # the target is not ours, or not at its baseline


def _load_all(inv: Inventory, target: Path) -> tuple[list[Resolved], list[Problem], list[Path]]:
    """Every file under `target`, validated and resolved against `inv`; all problems collected."""
    files = find_experiments(target)
    resolved: list[Resolved] = []
    problems: list[Problem] = []
    for path in files:
        found, loaded = check_file(path)
        problems += found
        if loaded is None:
            continue
        try:
            resolved.append(resolve(inv, loaded))
        except ExperimentInvalid as exc:
            problems += exc.problems
    return resolved, problems, files


@app.command("validate")
def validate(ctx: typer.Context, target: PathArg, json_out: JsonOpt = False) -> None:
    """Check experiment files (schema, names in the inventory, blast radius); exit 2 listing every problem."""
    resolved, problems, files = _load_all(state(ctx).inventory, target)
    if json_out:
        render.print_json(
            {
                "files": [str(f) for f in files],
                "valid": [str(r.loaded.path) for r in resolved],
                "problems": [p.to_json() for p in problems],
            }
        )
        if problems:
            raise UsageError(f"{len(problems)} problem(s) in the experiment files", hint="listed in the JSON above")
        return
    if problems:
        raise ExperimentInvalid(problems)
    render.experiment_valid([(str(r.loaded.path), r.experiment.title) for r in resolved])


@app.command("plan")
def plan(ctx: typer.Context, target: PathArg, json_out: JsonOpt = False) -> None:
    """The resolved plan: every change on every component, in order, with how it is undone."""
    resolved, problems, _ = _load_all(state(ctx).inventory, target)
    if problems:
        raise ExperimentInvalid(problems)
    if json_out:
        render.print_json([_plan_json(r) for r in resolved])
        return
    for r in resolved:
        render.experiment_plan(r)


def _plan_json(r: Resolved) -> dict[str, Any]:
    exp = r.experiment
    return {
        "file": str(r.loaded.path),
        "title": exp.title,
        "probe": exp.probe.model_dump(mode="json"),
        "steady_state": [c.title() for c in exp.steady_state.probes],
        "during": [c.title() for c in exp.steady_state.during],
        "method": [s.to_json() for s in r.steps],
        "stop_conditions": [c.title() for c in exp.stop_conditions],
        "rollbacks": {
            "automatic": "every applied action still in effect is undone from its journal, newest first",
            "listed": [s.to_json() for s in r.rollbacks],
        },
    }


@app.command("list")
def list_experiments(
    ctx: typer.Context,
    target: Annotated[Path, typer.Argument(metavar="DIR", help="Directory of experiments.")] = Path("experiments"),
    json_out: JsonOpt = False,
) -> None:
    """The experiments of a directory: title, tags, steps, and whether each file is valid."""
    rows = []
    for path in find_experiments(target):
        problems, loaded = check_file(path)
        exp = loaded.experiment if loaded else None
        rows.append(
            {
                "file": str(path),
                "valid": not problems,
                "title": exp.title if exp else None,
                "tags": exp.tags if exp else [],
                "steps": len(exp.method) if exp else None,
                "problems": [str(p) for p in problems],
            }
        )
    if json_out:
        render.print_json(rows)
    else:
        render.experiment_list(rows)


@app.command("run")
def run(
    ctx: typer.Context,
    target: PathArg,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")] = None,
    confirm_target: ConfirmOpt = None,
    runtime: RuntimeOpt = "process",
    no_live: Annotated[bool, typer.Option("--no-live", help="No live view (the default when not a terminal).")] = False,
    prometheus: PrometheusOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run experiments: steady state -> method (SLO watch, stop conditions) -> steady state -> rollbacks."""
    inv = state(ctx).inventory
    resolved, problems, _ = _load_all(inv, target)
    if problems:
        raise ExperimentInvalid(problems)
    if any(r.experiment.uses_promql for r in resolved):
        prometheus_url(inv, prometheus)  # no Prometheus to ask: say so before anything is applied
    require_confirmed(inv, confirm_target, "experiments change it for real")
    results: list[dict[str, Any]] = []
    codes: list[int] = []
    batch = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"  # this run's journals: one trend point
    try:
        for r in resolved:
            with render.ExperimentLive(enabled=not (no_live or json_out)) as show:
                settings = RunSettings(
                    log=render.info, runtime=runtime, on_update=show, batch=batch, prometheus=prometheus
                )
                result = asyncio.run(run_experiment(inv, r, settings))
            results.append(result.journal)
            codes.append(result.exit_code)
            if not json_out:
                render.experiment_result(result.journal)
            if result.exit_code in STOP_AFTER:
                skipped = len(resolved) - len(results)
                if skipped:
                    render.info(f"stopping: {skipped} experiment(s) not run (exit {result.exit_code})")
                break
    finally:
        if junit is not None:
            write_junit(results, junit)
        if html is not None:
            write_html(results, html)
    score = score_of(results)
    if json_out:  # a list, as before; each run also carries the library's score and its own part in it
        render.print_json(
            [{**{k: v for k, v in j.items() if k != "timeline"}, "resilience": score.to_json()} for j in results]
        )
    else:
        render.experiment_totals(results, junit=junit, html=html)
        render.experiment_score(score)
    code = worst_exit(codes)
    if code:
        raise error_for_exit(code, f"{sum(c != 0 for c in codes)} of {len(codes)} experiment runs did not pass")


@app.command("report")
def report(
    journals: Annotated[
        list[Path] | None, typer.Argument(metavar="JOURNAL...", help="Run journals (JSON).", show_default=False)
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report here.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")] = None,
    trend_dir: Annotated[
        Path | None,
        typer.Option(
            "--trend",
            metavar="DIR",
            help="The score and every check's margin across the run journals under DIR; eroding margins flagged.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Rebuild the JUnit and HTML reports from run journals (interrupted runs included), or draw the trend."""
    if trend_dir is not None:
        _trend_report(trend_dir, journals or [], junit=junit, html=html, json_out=json_out)
        return
    journals = journals or []
    if not journals:
        raise UsageError("give run journals (JOURNAL...) or --trend DIR")
    if junit is None and html is None:
        raise UsageError("give --junit FILE and/or --html FILE")
    runs = []
    for path in journals:
        try:
            runs.append(read_journal(path))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a run journal: {exc}") from exc
    if junit is not None:
        write_junit(runs, junit)
    if html is not None:
        write_html(runs, html)
    codes = [exit_code_of(r) for r in runs]
    code = worst_exit(codes)
    if code:
        raise error_for_exit(code, f"{sum(c != 0 for c in codes)} of {len(codes)} runs in these journals did not pass")


def _trend_report(
    directory: Path, journals: list[Path], *, junit: Path | None, html: Path | None, json_out: bool
) -> None:
    """`report --trend DIR`: a table (or JSON) of the score and the eroding margins; --html draws them all."""
    if journals or junit is not None:
        raise UsageError("--trend DIR reads the journals itself: give only --html FILE and/or --json with it")
    found = trend(load_journals(directory))
    if html is not None:
        write_trend_html(found, html)
    if json_out:
        render.print_json(found.to_json())
        return
    render.experiment_trend(found)
    if html is not None:
        render.info(f"HTML {html}")


@app.command("schema")
def schema(
    write: Annotated[Path | None, typer.Option("--write", help="Write the schema to this file.")] = None,
) -> None:
    """Print (or write) the JSON Schema of experiment files (experiments/schema.json)."""
    text = schema_text()
    if write is None:
        render.raw(text)
    else:
        write.write_text(text, encoding="utf-8")
