"""Every rich call pushctl makes lives here: tables, panels, errors, JSON output."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

STYLE_OK = "bold green"
STYLE_BAD = "bold red"
STYLE_WARN = "yellow"
STYLE_DIM = "dim"
STYLE_HEADER = "bold cyan"

# piped output (CI logs, `| less`) gets a wide console instead of rich's 80-column default
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    """Machine output: one JSON document on stdout, nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def error(message: str, *, hint: str | None = None) -> None:
    """A one-line error on stderr (a panel would be harder to grep in CI logs)."""
    err_console.print(f"[{STYLE_BAD}]error:[/] {message}")
    if hint:
        err_console.print(f"[{STYLE_DIM}]hint: {hint}[/]")


def info(message: str) -> None:
    err_console.print(message)


def ok_mark(flag: bool) -> str:
    return f"[{STYLE_OK}]yes[/]" if flag else f"[{STYLE_BAD}]no[/]"


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain table on stdout; cells may carry rich markup."""
    tbl = Table(title=title, header_style=STYLE_HEADER, title_justify="left")
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*("" if c is None else str(c) for c in row))
    console.print(tbl)


def panel(title: str, body: str, *, good: bool = True) -> None:
    console.print(Panel(body, title=title, border_style=STYLE_OK if good else STYLE_BAD))


def kv(title: str, items: Mapping[str, Any]) -> None:
    """Key/value pairs as a two-column table."""
    table(title, ["", ""], [(k, v) for k, v in items.items()])


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def raw(text: str) -> None:
    """Text exactly as given (log lines)."""
    sys.stdout.write(text)
    sys.stdout.flush()


def stack_status(status: Any) -> None:
    """The `stack status` tables: components, then links."""
    rows = []
    for c in status.components:
        rows.append(
            (
                c.name,
                c.kind,
                c.pid if c.pid is not None else ("external" if not c.managed else "-"),
                ",".join(str(p) for p in c.ports),
                ok_mark(c.healthy),
                fmt_seconds(c.uptime_s),
                "" if c.healthy else f"[{STYLE_WARN}]{c.detail}[/]",
            )
        )
    table(
        f"stack {status.stack} ({status.runtime}, {status.run_dir})",
        ["component", "kind", "pid", "port", "healthy", "uptime", "detail"],
        rows,
    )
    link_rows = [
        (
            lk.name,
            lk.kind,
            lk.toxiproxy,
            lk.listen,
            lk.upstream,
            ok_mark(lk.present and lk.enabled) if lk.present else f"[{STYLE_BAD}]missing[/]",
            ", ".join(lk.toxics) or "-",
        )
        for lk in status.links
    ]
    table("links", ["link", "kind", "toxiproxy", "listen", "upstream", "up", "toxics"], link_rows)
    verdict = f"[{STYLE_OK}]healthy[/]" if status.healthy else f"[{STYLE_BAD}]NOT healthy[/]"
    console.print(f"stack {status.stack}: {verdict}")


def link_state(enabled: bool | None) -> str:
    """A link's state as markup: up, DOWN, or unknown."""
    if enabled is None:
        return f"[{STYLE_WARN}]unknown[/]"
    return f"[{STYLE_OK}]up[/]" if enabled else f"[{STYLE_BAD}]DOWN[/]"


def fault_list(links: Sequence[Any]) -> None:
    """The `fault list` table: every link (a `LinkFaults`), up or down, and its toxics."""
    rows = [
        (
            lk.link,
            lk.toxiproxy,
            link_state(lk.enabled),
            f"[{STYLE_BAD}]{lk.error}[/]" if lk.error else ("\n".join(lk.summaries) or f"[{STYLE_DIM}]-[/]"),
        )
        for lk in links
    ]
    table("faults", ["link", "toxiproxy", "state", "toxics"], rows)
    faulty = sum(1 for lk in links if lk.toxics or lk.enabled is False)
    console.print(f"{faulty} of {len(links)} links have a fault" if faulty else "no faults")


def fault_results(results: Sequence[Any]) -> None:
    """What a fault verb did (`FaultResult`s): toxics added/removed and what open connections saw."""
    for res in results:
        if not res.changed:
            continue
        console.print(f"[bold]{res.link}[/]: {res.action}, link {link_state(res.enabled)}")
        for line in res.summaries:
            console.print(f"  [{STYLE_OK}]+[/] {line}")
        for name in res.removed:
            console.print(f"  [{STYLE_BAD}]-[/] {name}")
        console.print(f"  [{STYLE_WARN if res.caution else STYLE_DIM}]connections: {res.connections}[/]")
    unchanged = sum(1 for res in results if not res.changed)
    if unchanged:
        console.print(f"[{STYLE_DIM}]{unchanged} links had nothing to undo[/]")


# ---- probe and SLO ------------------------------------------------------------------------------
def fmt_rate(rate: float | None) -> str:
    """A delivery rate with enough digits to see 99.9 vs 99.99; '-' when nothing was sent."""
    return "-" if rate is None else f"{rate:.3f}%"


def fmt_ms(ms: float | None) -> str:
    return "-" if ms is None else f"{ms:.1f} ms"


def _rate_markup(rate: float | None, target: float | None = None) -> str:
    if rate is None:
        return f"[{STYLE_DIM}]-[/]"
    good = rate >= (target if target is not None else 100.0)
    return f"[{STYLE_OK if good else STYLE_BAD}]{fmt_rate(rate)}[/]"


def probe_view(snap: Any) -> Any:
    """The live view of a running probe (a `ProbeSnapshot`) as a renderable."""
    from rich.console import Group

    p = snap.progress
    regions = Table(header_style=STYLE_HEADER, box=None, pad_edge=False)
    regions.add_column("region")
    regions.add_column("connected", justify="right")
    for region, count in snap.connected.items():
        regions.add_row(region, str(count))
    regions.add_row(f"[{STYLE_DIM}]online[/]", f"{snap.online}/{snap.devices}")
    s = snap.sender
    lines = [
        f"[bold]probe[/] {snap.phase}  {snap.elapsed_s:.1f}s",
        f"sent {p.sent}  delivered {p.delivered}  on time {p.on_time}  late {p.late}  "
        f"overdue {p.overdue}  pending {p.pending}",
        f"delivery rate {_rate_markup(p.delivery_rate)}  p99 {fmt_ms(p.latency_p99_ms)}  "
        f"duplicates {p.duplicates} (raw {p.raw_duplicates})  reconnects {snap.reconnects}",
        f"requests {s.requests}  failed {s.failed_requests}  buffered {s.buffered}  rejected {s.rejected}",
    ]
    return Group(regions, *lines)


class ProbeLive:
    """`with render.ProbeLive(enabled) as show: show(snapshot)`; a no-op when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and console.is_terminal
        self._live: Any = None

    def __enter__(self) -> ProbeLive:
        if self.enabled:
            from rich.live import Live

            self._live = Live(console=console, auto_refresh=False, transient=True)
            self._live.__enter__()
        return self

    def __call__(self, snap: Any) -> None:
        if self._live is not None:
            self._live.update(probe_view(snap), refresh=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None


def probe_summary(summary: Any, *, title: str = "probe") -> None:
    """The classified run (a `LedgerSummary`): per region and total, then the worst seconds."""
    from rich import box

    tbl = Table(
        title=f"{title}: delivery (deadline {summary.deadline_s:g}s, latency in ms)",
        header_style=STYLE_HEADER,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("region", "sent", "on time", "late", "lost", "dup/raw", "rate", "p50", "p99", "p999"):
        tbl.add_column(col, justify="left" if col == "region" else "right", no_wrap=True)

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"

    def add(name: str, c: Any, style: str | None = None) -> None:
        lost = f"[{STYLE_BAD}]{c.lost}[/]" if c.lost else "0"
        lat = c.latency_ms
        tbl.add_row(
            name, str(c.sent), str(c.on_time), str(c.late), lost, f"{c.duplicates}/{c.raw_duplicates}",
            _rate_markup(c.delivery_rate), ms(lat.p50), ms(lat.p99), ms(lat.p999), style=style,
        )  # fmt: skip

    for name, counts in sorted(summary.by_region.items()):
        add(name, counts)
    add("total", summary, style="bold")
    console.print(tbl)
    worst_seconds(summary.worst_seconds)
    if summary.sent and summary.latency_ms.p50 is None:
        console.print(f"[{STYLE_WARN}]nothing was delivered[/]")


def worst_seconds(seconds: Sequence[Any]) -> None:
    """The seconds (`Second`s) that missed the most, worst first."""
    if not seconds:
        return
    rows = [(s.t, s.sent, s.on_time, s.late, s.lost, _rate_markup(s.delivery_rate)) for s in seconds]
    columns = ["t (s)", "sent", "on time", "late", "lost", "rate"]
    table("worst seconds", columns, rows)


def slo_verdict(summary: Any, target: float, passed: bool) -> None:
    """One line: did the delivery SLO hold."""
    word = f"[{STYLE_OK}]SLO held[/]" if passed else f"[{STYLE_BAD}]SLO BREACHED[/]"
    console.print(
        f"{word}: delivery rate {fmt_rate(summary.delivery_rate)} (target {target:g}%), "
        f"lost {summary.lost}, late {summary.late}, sent {summary.sent}"
    )


def plan(title: str, steps: Sequence[Any], *, drill: bool) -> None:
    """`--dry-run`: what will change, where, how it is verified and undone."""
    rows = [(i + 1, s.component, s.change, s.verify, s.undo) for i, s in enumerate(steps)]
    table(f"plan: {title}", ["#", "component", "change", "verify", "undo"], rows)
    tail = "rolled back at the end (unless --hold)" if drill else "kept: this action is itself an undo"
    console.print(f"[{STYLE_DIM}]dry run: nothing changed; when run, the change is journaled first and {tail}[/]")


def _counts_row(name: str, data: Mapping[str, Any] | None) -> tuple[Any, ...]:
    if not data:
        return (name, "-", "-", "-", "-", "-", "-", "-")
    lat = data.get("latency_ms") or {}
    rate = data.get("delivery_rate")
    return (
        name,
        data.get("sent"),
        data.get("on_time"),
        data.get("late"),
        data.get("lost"),
        data.get("duplicates"),
        "-" if rate is None else f"{rate:.3f}%",
        "-" if lat.get("p99") is None else f"{lat['p99']:.0f} ms",
    )


def action_report(report: Any) -> None:
    """The report of one failover action: measurements, delivery during/overall, rollback, verdict."""
    cohorts: Mapping[str, Any] = report.measurements.get("cohorts") or {}
    kv(f"{report.action} {report.params}", {k: v for k, v in report.measurements.items() if k != "cohorts"})
    rows = [_counts_row("during the action", report.during), _counts_row("whole run", report.overall)]
    # a connection fault's ledger per cohort: the devices it reached beside those it spared
    rows += [_counts_row(f"{name} devices ({c.get('devices')})", c) for name, c in cohorts.items()]
    table("delivery (probe)", ["window", "sent", "on time", "late", "lost", "dup", "delivery", "p99"], rows)
    if report.rollback:
        table(
            "rollback",
            ["step", "ok", "detail"],
            [(r["step"], ok_mark(r["ok"]), r["detail"]) for r in report.rollback],
        )
    elif report.held:
        console.print(f"[{STYLE_WARN}]held: the change stays applied (journal {report.journal})[/]")
    panel("verdict", report.verdict, good=report.passed)


def recover_report(results: Sequence[Mapping[str, Any]]) -> None:
    if not results:
        console.print(f"[{STYLE_OK}]nothing to recover: no interrupted action in the journal[/]")
        return
    rows = []
    for r in results:
        for step in r["steps"] or [{"step": "(no change had been applied)", "ok": True, "detail": ""}]:
            rows.append((r["journal"], r["action"], step["step"], ok_mark(step["ok"]), step["detail"]))
    table("recovered", ["journal", "action", "undo step", "ok", "detail"], rows)


def live_status(data: Mapping[str, Any]) -> None:
    """`pushctl status`: the live platform state."""
    conns = data.get("connections", {})
    regions = data.get("regions", {})
    rows = []
    for region, c in conns.items():
        r = regions.get(region, {})
        rows.append(
            (
                region,
                "-" if c is None else c["count"],
                "-" if c is None else c["limit"],
                "unreachable" if c is None else ("draining" if c["draining"] else "serving"),
                ok_mark(r.get("healthy", c is not None)),
            )
        )
    table("regions", ["region", "connections", "limit", "broker", "healthy"], rows)
    policies = data.get("policies")
    if isinstance(policies, list):
        table(
            "policies",
            ["id", "kind", "region", "spread", "origin"],
            [(p["id"], p["kind"], p["region"], f"{p['spread_s']:g}s", p["origin"]) for p in policies]
            or [("-", "none", "", "", "")],
        )
    faults = data.get("faults")
    if isinstance(faults, list):
        table(
            "active faults",
            ["link", "enabled", "toxics"],
            [
                (f["link"], ok_mark(f["enabled"]), ", ".join(t.get("name", "?") for t in f.get("toxics", [])) or "-")
                for f in faults
            ]
            or [("-", "", "none")],
        )
    routing = data.get("routing") or {}
    throttle = data.get("throttle") or {}
    storage = data.get("storage") or {}
    kv(
        "platform",
        {
            "routing weights": routing.get("weights", routing.get("error", "-")),
            "throttle": throttle.get("mode", throttle.get("error", "-"))
            + (f" ({throttle['limit_per_s']:g}/s)" if throttle.get("limit_per_s") else ""),
            "storage mode": storage.get("mode", storage.get("error", "-")),
            "kafka buffer lag": data.get("buffer_lag"),
            "dead letters": _dead_letter_line(data.get("dead_letters") or {}),
            "held / open actions": ", ".join(
                f"{a['action']} {a['params']} ({a['status']})" for a in data.get("actions", [])
            )
            or "none",
        },
    )


def _dead_letter_line(dead: Mapping[str, Any]) -> str:
    records = dead.get("records")
    line = f"{records} in {dead.get('topic', '?')}" if records is not None else dead.get("error", "-")
    counted = dead.get("bypass")
    if isinstance(counted, Mapping) and "error" not in counted and counted:
        line += " (bypass since start: " + ", ".join(f"{k} {v:g}" for k, v in counted.items()) + ")"
    return str(line)


# ---- experiments --------------------------------------------------------------------------------
_SPARK = "▁▂▃▄▅▆▇█"


def sparkline(rates: Sequence[float | None], *, floor: float = 90.0) -> str:
    """Delivery rates (percent) as a one-line chart from `floor` to 100; red below 99.9."""
    out = []
    for r in rates:
        if r is None:
            out.append(f"[{STYLE_DIM}]·[/]")
            continue
        level = max(0.0, min(1.0, (r - floor) / (100.0 - floor)))
        ch = _SPARK[min(len(_SPARK) - 1, int(level * (len(_SPARK) - 1) + 0.5))]
        out.append(ch if r >= 99.9 else f"[{STYLE_BAD}]{ch}[/]")
    return "".join(out)


def experiment_valid(files: Sequence[tuple[str, str]]) -> None:
    for path, title in files:
        console.print(f"[{STYLE_OK}]valid[/] {path}: {title}")
    console.print(f"{len(files)} experiment file{'s' if len(files) != 1 else ''} valid")


def experiment_list(rows: Sequence[Mapping[str, Any]]) -> None:
    table(
        "experiments",
        ["file", "title", "tags", "steps", "valid"],
        [
            (r["file"], r["title"] or "-", ", ".join(r["tags"]), r["steps"] or "-",
             ok_mark(r["valid"]) if r["valid"] else f"[{STYLE_BAD}]no[/]: {r['problems'][0]}")
            for r in rows
        ],
    )  # fmt: skip


def experiment_plan(resolved: Any) -> None:
    """`experiment plan`: the checks, every change in order with its undo, the rollbacks."""
    exp = resolved.experiment
    p = exp.probe
    console.print(f"[bold]{exp.title}[/]  [{STYLE_DIM}]{resolved.loaded.path}[/]")
    console.print(f"probe: {p.devices} devices, {p.rate:g} pushes/s, deadline {p.deadline:g}s, grace {p.grace:g}s")
    table("steady state (before and after)", ["check"], [(c.title(),) for c in exp.steady_state.probes])
    if exp.steady_state.during:
        table("during the method (exact)", ["check"], [(c.title(),) for c in exp.steady_state.during])
    rows = []
    for s in resolved.steps:
        for i, ps in enumerate(s.plan):
            when = ("background, " if s.background else "") + ("undone after its duration" if s.reverts else "")
            rows.append((f"{s.index + 1}" if i == 0 else "", s.label if i == 0 else "", ps.component, ps.change,
                         ps.undo, when or "-"))  # fmt: skip
    table("method", ["#", "step", "component", "change", "undo", "when undone"], rows)
    stops = [(c.title(), f"{c.for_:g}s") for c in exp.stop_conditions]
    if exp.blast_radius.devices < 100:
        stops.append((f"blast radius: <= {exp.blast_radius.devices:g}% devices offline", f"{exp.blast_radius.for_:g}s"))
    if stops:
        table("stop conditions (abort and roll back)", ["condition", "for"], stops)
    extra = [(s.label, "; ".join(ps.change for ps in s.plan)) for s in resolved.rollbacks]
    table(
        "rollbacks (always run)",
        ["step", "change"],
        [("automatic", "undo every applied action still in effect, newest first (from its journal)"), *extra],
    )


def _run_verdict(run: Mapping[str, Any]) -> tuple[bool, str]:
    code, status = run.get("exit_code"), run.get("status")
    if code == 0:
        return True, "PASSED"
    if run.get("verdict") == "inconclusive":
        reasons = "; ".join(run.get("inconclusive") or [])
        return False, f"INCONCLUSIVE (exit {code}): the rig could not keep up: {reasons}"
    word = {"aborted": "ABORTED", "interrupted": "INTERRUPTED"}.get(str(status), "FAILED")
    if run.get("deviated"):
        word += " (hypothesis deviated)"
    return False, f"{word} (exit {code})"


def experiment_result(run: Mapping[str, Any]) -> None:
    """One finished run: checks, stop conditions, rollbacks, verdict."""
    rows = []
    for when in ("before", "during", "after", "run"):
        state = (run.get("steady_states") or {}).get(when)
        for c in (state or {}).get("checks", []):
            rows.append(("whole run" if when == "run" else when, c["title"], ok_mark(c["ok"]), c["detail"]))
    for s in run.get("method") or []:
        out = s.get("output")
        if s.get("kind") == "probe" and isinstance(out, dict) and "ok" in out:
            rows.append((f"step {s['index'] + 1}", out["title"], ok_mark(out["ok"]), out["detail"]))
        for c in s.get("checks") or []:
            rows.append((f"step {s['index'] + 1}", "verify", ok_mark(c["ok"]), c["check"]))
    table(f"{run.get('title')}: hypothesis", ["when", "check", "ok", "measured"], rows)
    steps = [(s["index"] + 1, s["label"], s["status"], s.get("error") or "") for s in run.get("method") or []]
    table("method", ["#", "step", "status", "error"], steps)
    stops = [(s["name"], f"[{STYLE_BAD}]FIRED[/]" if s["fired"] else f"[{STYLE_OK}]held[/]", s.get("detail") or "")
             for s in run.get("stop_conditions") or []]  # fmt: skip
    if stops:
        table("stop conditions", ["condition", "", "last measured"], stops)
    rbs = [(r["step"], r.get("of", ""), ok_mark(r["ok"]), r.get("detail", "")) for r in run.get("rollbacks") or []]
    if rbs:
        table("rollbacks", ["undo", "of", "ok", "detail"], rbs)
    good, word = _run_verdict(run)
    body = f"{word} in {float(run.get('duration_s') or 0):.1f}s; journal {run.get('journal_path')}"
    if run.get("error"):
        body += f"\n{run['error']}"
    panel(str(run.get("title")), body, good=good)


def experiment_totals(runs: Sequence[Mapping[str, Any]], *, junit: Any = None, html: Any = None) -> None:
    rows = []
    for r in runs:
        good, word = _run_verdict(r)
        took = f"{float(r.get('duration_s') or 0):.1f}s"
        rows.append((r.get("title"), f"[{STYLE_OK if good else STYLE_BAD}]{word}[/]", took))
    table("experiments", ["experiment", "verdict", "took"], rows)
    passed = sum(1 for r in runs if r.get("exit_code") == 0)
    unsure = sum(1 for r in runs if r.get("verdict") == "inconclusive")
    where = (f"; JUnit {junit}" if junit else "") + (f"; HTML {html}" if html else "")
    console.print(f"{passed} of {len(runs)} passed" + (f", {unsure} inconclusive" if unsure else "") + where)


def experiment_view(live: Any) -> Any:
    """The live view of a running experiment (a `LiveState`)."""
    import time as _time

    from rich.console import Group

    lines = [f"[bold]{live.title}[/]  phase: {live.phase}" + (f"  step: {live.step}" if live.step else "")]
    probe = live.probe
    if probe is not None and probe.phase in ("sending", "grace"):
        progress = probe.ledger.progress(_time.time())
        rates = [(s.on_time * 100.0 / s.sent) if s.sent and s.overdue else None for s in progress.per_second][-60:]
        lines.append(f"delivery/s {sparkline(rates)}  now {_rate_markup(progress.delivery_rate, 99.9)}  "
                     f"p99 {fmt_ms(progress.latency_p99_ms)}  rate {probe.rate:g}/s")  # fmt: skip
        snap = probe.snapshot()
        conns = "  ".join(f"{r} {n}" for r, n in snap.connected.items()) or "-"
        lines.append(f"connected: {conns}  (online {snap.online}/{snap.devices})")
    active = ", ".join(live.active.values()) or f"[{STYLE_DIM}]none[/]"
    lines.append(f"active: {active}")
    if live.watch is not None:
        for s in live.watch.states:
            mark = f"[{STYLE_BAD}]FIRED[/]" if s.fired else (f"[{STYLE_WARN}]broken[/]" if s.broken_since else "ok")
            lines.append(f"stop if not {s.tolerance}: {s.name} - {mark}")
    return Group(*lines)


class ExperimentLive:
    """`with render.ExperimentLive(enabled) as show: show(live_state)`; a no-op off a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and console.is_terminal
        self._live: Any = None

    def __enter__(self) -> ExperimentLive:
        if self.enabled:
            from rich.live import Live

            self._live = Live(console=console, auto_refresh=False, transient=True)
            self._live.__enter__()
        return self

    def __call__(self, live: Any) -> None:
        if self._live is not None:
            self._live.update(experiment_view(live), refresh=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None


# ---- runbooks ---------------------------------------------------------------------------------


def runbook_list(rows: Sequence[Mapping[str, Any]]) -> None:
    """`pushctl runbook list`."""
    table(
        "runbooks",
        ["id", "severity", "title", "experiment", "owner", "commands"],
        [(r["id"], r["severity"], r["title"], r["experiment"], r["owner"], r["commands"]) for r in rows],
    )


def runbook_show(meta: Mapping[str, Any], body: str) -> None:
    """A runbook in the terminal: its front matter as a header, then the Markdown, commands highlighted."""
    from rich.markdown import Markdown

    header = {k: meta[k] for k in ("id", "severity", "owner", "experiment") if k in meta}
    failure = meta.get("failure") or []
    if failure:
        header["reproduce (CI)"] = "\n".join(failure if isinstance(failure, list) else [failure])
    kv(str(meta.get("title", meta.get("id", "runbook"))), header)
    # ```pushctl blocks are shell commands with `# expect:` comments: highlight them as such
    text = body.replace("```pushctl\n", "```bash\n")
    console.print(Markdown(text, code_theme="monokai", inline_code_lexer="bash"))


def runbook_problems(path: str, problems: Sequence[Any], *, quiet_when_clean: bool = False) -> None:
    """Lint problems as `file:line: message`, errors red, warnings yellow (on stderr)."""
    if not problems:
        if not quiet_when_clean:
            err_console.print(f"[{STYLE_OK}]ok[/] {path}")
        return
    for p in problems:
        style = STYLE_BAD if p.severity == "error" else STYLE_WARN
        err_console.print(f"{path}:{p.line}: [{style}]{p.severity}:[/] {p.message}", highlight=False)


def runbook_step(runbook_id: str, step: Any) -> None:
    """One progress line per verified step (stderr), and the output of a failed one."""
    mark = {"passed": f"[{STYLE_OK}]pass[/]", "failed": f"[{STYLE_BAD}]FAIL[/]"}.get(step.status, "skip")
    where = f"L{step.line} " if step.line else ""
    err_console.print(
        f"{mark} {runbook_id} [{STYLE_DIM}]{step.phase}[/] {where}{step.command} [{STYLE_DIM}]({step.seconds:.1f}s)[/]",
        highlight=False,
    )
    if step.status == "failed":
        for check in step.checks:
            if not check.ok:
                err_console.print(
                    f"     line {check.line}: expected {check.expect}, found {check.found}", highlight=False
                )
        if step.message and not step.checks:
            err_console.print(f"     {step.message}", highlight=False)
        if step.output:
            err_console.print(Panel(step.output, title="output", border_style=STYLE_BAD), highlight=False)


def runbook_report(report: Any) -> None:
    """`pushctl runbook verify`: one row per runbook."""
    rows = []
    for r in report.results:
        failed = r.failed_step
        errors = [p for p in r.problems if p.severity == "error"]
        if errors:
            why = f"lint: {r.path}:{errors[0].line}: {errors[0].message}"
        elif failed is not None:
            where = f"line {failed.line}: " if failed.line else ""
            why = f"{where}{failed.command}: {failed.message}"
        else:
            why = ""
        steps = [s for s in r.steps if s.phase not in ("baseline", "restore")]
        done = sum(s.status == "passed" for s in steps)
        rows.append((r.id, ok_mark(r.passed), f"{done}/{len(steps)}", fmt_seconds(r.seconds), why[:160]))
    table("runbook verify", ["runbook", "passed", "steps", "time", "failure"], rows)
    good = report.passed
    passed = sum(r.passed for r in report.results)
    panel("verdict", f"{passed}/{len(report.results)} runbooks passed in {fmt_seconds(report.seconds)}", good=good)


def experiment_score(score: Any) -> None:
    """The resilience score of a library run (a `pushctl.experiments.score.Score`), runs left out listed apart."""
    value = score.value
    style = STYLE_DIM if value is None else (STYLE_OK if value >= 100 else STYLE_WARN if value >= 80 else STYLE_BAD)
    console.print(
        f"resilience score [{style}]{score.text()}[/] "
        f"(weight passed {score.passed_weight:g} of {score.counted_weight:g} counted)"
    )
    for e in score.apart:
        console.print(f"  [{STYLE_DIM}]left out: {e.title} (weight {e.weight:g}): {e.outcome}: {e.reason}[/]")


def experiment_trend(trend: Any) -> None:
    """The score per library run and the margins that erode (a `pushctl.experiments.trend.Trend`)."""
    import time as _time

    rows = []
    for p in trend.points:
        apart = ", ".join(f"{e.title} ({e.outcome})" for e in p.score.apart)
        when = _time.strftime("%Y-%m-%d %H:%M:%S", _time.localtime(p.started_at))
        rows.append((when, p.score.text(), p.runs, apart or "-"))
    table("resilience score per run", ["run", "score", "experiments", "left out"], rows)
    se = trend.score_erosion
    if se.eroding:
        console.print(f"[{STYLE_BAD}]the score is falling:[/] {se.why}")
    eroding = trend.eroding
    if eroding:
        erows: list[tuple[Any, ...]] = []
        for s in eroding:
            e = s.erosion
            spark = margin_sparkline(s.margins)
            left = "-" if e.runs_left is None else f"~{e.runs_left}"
            erows.append((s.experiment, s.key, s.tolerance, f"{s.last:g}", f"{e.slope:+.4g}", left, spark))
        table(
            "eroding margins (still passing or not)",
            ["experiment", "check", "tolerance", "last margin", "per run", "runs to limit", "margins"],
            erows,
        )
    outside = [s for s in trend.series if s not in eroding and s.last is not None and s.last < 0]
    if outside:
        table(
            "outside their tolerance in the last run",
            ["experiment", "check", "tolerance", "last margin", "margins"],
            [(s.experiment, s.key, s.tolerance, f"{s.last:g}", margin_sparkline(s.margins)) for s in outside],
        )
    steady = len(trend.series) - len(eroding) - len(outside)
    console.print(
        f"{len(trend.points)} library runs; {len(trend.series)} margins: "
        + (f"[{STYLE_BAD}]{len(eroding)} eroding[/], " if eroding else "none eroding, ")
        + (f"{len(outside)} outside their tolerance in the last run, " if outside else "")
        + f"{steady} steady or too few runs to tell"
    )


def margin_sparkline(margins: Sequence[float | None]) -> str:
    """Margins scaled from their lowest (or 0) to their highest; red at or below the limit (0)."""
    known = [m for m in margins if m is not None]
    lo, hi = min([*known, 0.0]), max([*known, 0.0])
    out = []
    for m in margins:
        if m is None:
            out.append(f"[{STYLE_DIM}]·[/]")
            continue
        level = (m - lo) / (hi - lo) if hi > lo else 0.5
        ch = _SPARK[min(len(_SPARK) - 1, int(level * (len(_SPARK) - 1) + 0.5))]
        out.append(ch if m >= 0 else f"[{STYLE_BAD}]{ch}[/]")
    return "".join(out)
