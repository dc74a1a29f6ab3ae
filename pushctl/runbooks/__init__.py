"""On-call runbooks that run: parse, lint and verify Markdown runbooks against a stack.

    from pushctl.runbooks import load_runbook, lint, Verifier, CommandRunner

`model` parses a file, `expect` is the `# expect:` grammar, `lint` checks a runbook against
today's CLI and metrics, `verify` executes it, `junit` writes the report for CI.
"""

from pushctl.runbooks.catalog import EXPERIMENTS_DIR, runbook_dir, select
from pushctl.runbooks.expect import Expect, ExpectSyntaxError, parse_expect
from pushctl.runbooks.lint import errors, lint
from pushctl.runbooks.metrics import MetricNames, documented_metric_names, scrape_metric_names
from pushctl.runbooks.model import SECTIONS, Command, Problem, Runbook, find_runbooks, load_runbook
from pushctl.runbooks.runner import CommandRunner, Finished
from pushctl.runbooks.verify import RunbookResult, Step, Verifier, VerifyReport, baseline_problems

__all__ = [
    "EXPERIMENTS_DIR",
    "SECTIONS",
    "Command",
    "CommandRunner",
    "Expect",
    "ExpectSyntaxError",
    "Finished",
    "MetricNames",
    "Problem",
    "Runbook",
    "RunbookResult",
    "Step",
    "Verifier",
    "VerifyReport",
    "baseline_problems",
    "documented_metric_names",
    "errors",
    "find_runbooks",
    "lint",
    "load_runbook",
    "parse_expect",
    "runbook_dir",
    "scrape_metric_names",
    "select",
]
