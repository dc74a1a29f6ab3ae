"""Game-day experiments: typed YAML files, a guaranteed-rollback runner, journals and reports.

from pushctl.experiments import load_experiment, resolve, run_experiment, RunSettings
resolved = resolve(inventory, load_experiment(Path("experiments/redis-outage.yaml")))
result = await run_experiment(inventory, resolved, RunSettings(log=print))
result.exit_code   # 0 passed, 1 deviated / aborted, 4 unreachable, 7 rollback failed, 130 interrupted
"""

from __future__ import annotations

from pushctl.experiments.html import report_html, write_html
from pushctl.experiments.junit import junit_xml, write_junit
from pushctl.experiments.loader import (
    ExperimentInvalid,
    Loaded,
    Problem,
    check_file,
    find_experiments,
    load_experiment,
)
from pushctl.experiments.model import Experiment
from pushctl.experiments.resolve import Resolved, ResolvedStep, resolve
from pushctl.experiments.run import LiveState, RunResult, RunSettings, run_experiment, worst_exit
from pushctl.experiments.run_journal import read_journal
from pushctl.experiments.schema import schema, schema_text

__all__ = [
    # files
    "Experiment",
    "ExperimentInvalid",
    # running
    "LiveState",
    "Loaded",
    "Problem",
    "Resolved",
    "ResolvedStep",
    "RunResult",
    "RunSettings",
    "check_file",
    "find_experiments",
    # reports
    "junit_xml",
    "load_experiment",
    "read_journal",
    "report_html",
    "resolve",
    "run_experiment",
    "schema",
    "schema_text",
    "worst_exit",
    "write_html",
    "write_junit",
]
