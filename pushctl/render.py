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
    kv(f"{report.action} {report.params}", {k: v for k, v in report.measurements.items()})
    table(
        "delivery (probe)",
        ["window", "sent", "on time", "late", "lost", "dup", "delivery", "p99"],
        [_counts_row("during the action", report.during), _counts_row("whole run", report.overall)],
    )
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
            "held / open actions": ", ".join(
                f"{a['action']} {a['params']} ({a['status']})" for a in data.get("actions", [])
            )
            or "none",
        },
    )
