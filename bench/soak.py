"""Soak: steady traffic for --minutes with a drill every --drill-every; RSS, descriptors and lost per component.

    .venv/bin/python bench/soak.py --minutes 30 --drill-every 2m [--inventory FILE] [--json OUT]

Everything goes through the CLI a user runs. One `pushctl probe run` sends single and group pushes
for the whole run (its ledger accounts for every message); every --drill-every a drill starts, in
rotation, each rolling itself back:

- drain: `pushctl drain --region R --no-probe` (R rotates over the regions, so each drain moves
  devices); the drain is withdrawn when the command ends.
- redis: `pushctl fail redis --mode down --duration 20s --no-probe`: fallback storage, then Redis again.
- spike: `pushctl throttle access --auto --safe-load S --no-probe` (S defaults to 1.5x the steady
  rate, so the 80 % rule engages at 1.2x) while a second `pushctl probe run` adds --spike-rate
  pushes/s from its own devices: the excess goes through the Kafka buffer and the bypass consumer.

After each drill `pushctl status --json` must show the baseline again (no policy, fault, action or
throttle, storage on Redis, routing as before). Every --sample-every the script reads, for every
component's process group (pid files in $PUSHCTL_RUN_DIR/<stack>/pids), VmRSS and the count of
/proc/<pid>/fd.

Windows (only "quiet" samples: no drill running and --settle since the last one ended, so steady
traffic is compared with steady traffic):
- warm-up ends when the first rotation of drills (drain, redis, spike) has ended, or at --warmup:
  every path (drain reconnects, fallback storage, Kafka buffer) has then run once, so pools, caches
  and allocator arenas have reached their working size; growth before that is not a leak.
- baseline: the quiet samples of the one drill period after the warm-up, median per component.
- final: the quiet samples of the last --final (5 min), median per component.

Criteria (exit 1 when any fails, 2 when the run was too short to judge):
- memory growth < 5 % per component by both estimates: the window medians (final / baseline - 1; a
  leak that starts late shows here) and the trend (a Theil-Sen line, the median of every pairwise
  slope, through the quiet samples after the warm-up, its rise over that span; a slow leak shows
  here, and one burst or a few outliers barely move it). Memory is RSS for our services, Redis and
  Kafka. The Go servers are judged by their own accounting, read from their /metrics: Toxiproxy by
  its GC heap goal (twice the live heap at the last collection; its RSS drifts up with no leak
  because the Go runtime keeps freed pages), Prometheus by its head series (its head block holds
  every sample until the first compaction, 2 h, by design; an unbounded label is what grows for
  ever). Their goroutines (two per proxied connection) must stay flat like descriptors. RSS is
  shown for every component;
- descriptors flat: their persistent rise (final median - baseline median, and the trend's rise)
  <= max(10, 5 % of the baseline) per component. The maximum is shown, not judged: pooled
  keep-alive connections peak with a burst and close after it; a leaked descriptor never closes.
  Probe devices move between brokers with every drain, so the brokers and the region Toxiproxies
  are judged as groups (their sums), whose device count is constant;
- nothing lost: lost = 0 in the ledgers of the steady probe and every spike probe;
- every drill exited 0 and left the platform at its baseline.

Toxiproxy runs with -runtime-metrics: its goroutines, Go heap in use and GC heap goal are sampled
(and Prometheus's own, with its head series) and shown beside RSS. `--rejudge FILE` judges a stored
run (its --json) again; `--plant PATCH` runs the stack from a copy of stack/ with PATCH applied
(bench/leaks/ holds three leaks that must fail it).

Starts its own stack (a copy of stack/topology.toml named "soak", ports --shift, default -4000, run
dir --run-dir, default /tmp/pushctl-soak-run) unless --inventory names a running one; always stops it (`stack down
--purge`), also on Ctrl-C and SIGTERM, after any running drill has rolled back.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from pushctl.contract.derive import derived_inventory
from pushctl.contract.topology import Inventory, load_inventory
from pushctl.control import sum_samples
from pushctl.probe import parse_duration
from pushctl.runtime.pids import pid_alive

REPO = Path(__file__).resolve().parent.parent
RSS_GROWTH_MAX = 5.0  # percent
FD_SLACK_ABS, FD_SLACK_PCT = 10, 5.0
GROUPS = {"brokers": "broker", "device proxies": "toxiproxy"}  # judged as sums: devices move between them
COUNTERS = (  # per component, read once at the end: what would show a message dropped or a path used
    ("access", "pushstack_access_rejected_total"),
    ("access", "pushstack_access_payload_missing_total"),
    ("access", "pushstack_access_kafka_errors_total"),
    ("bypass", "pushstack_bypass_consumed_total"),
    ("bypass", "pushstack_bypass_bad_records_total"),
    ("bypass", "pushstack_bypass_forward_errors_total"),
    ("logic", "pushstack_logic_rejected_total"),
    ("logic", "pushstack_logic_payload_missing_total"),
    ("logic", "pushstack_logic_payload_diskkv_total"),
    ("logic", "pushstack_logic_store_errors_total"),
    ("broker", "pushstack_broker_deliver_timeouts_total"),
    ("kvwriter", "pushstack_kvwriter_write_errors_total"),
    ("diskkv", "pushstack_diskkv_errors_total"),
    ("*", "pushstack_routine_restarts_total"),
)
LEDGER_KEYS = ("sent", "on_time", "late", "lost", "duplicates", "rejected", "unexpected")


def out(line: str = "") -> None:
    print(line, flush=True)  # noqa: T201 - a benchmark prints its tables


class Interrupted(Exception):
    """SIGINT or SIGTERM: stop the drills, roll back, tear down."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


# ---- the CLI ----------------------------------------------------------------------------------------
@dataclass
class Cli:
    inventory: Inventory
    env: dict[str, str]
    children: set[subprocess.Popen[str]] = field(default_factory=set)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pushctl.cli.main", "-i", self.inventory.source, *args]

    @property
    def confirm(self) -> list[str]:
        return [] if self.inventory.reference else ["--confirm-target", self.inventory.name]

    def start(self, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.argv(*args), stdout=stdout, stderr=subprocess.PIPE, text=True, env=self.env, cwd=REPO
        )
        self.children.add(proc)
        return proc

    def finish(self, proc: subprocess.Popen[str], timeout: float) -> tuple[int, Any, str]:
        """Wait for `proc`: exit code, its JSON (None when not JSON), the last line of stderr."""
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            return -1, None, f"timed out after {timeout:.0f} s"
        finally:
            self.children.discard(proc)
        try:
            data = json.loads(stdout) if stdout else None
        except json.JSONDecodeError:
            data = None
        return proc.returncode, data, (stderr.strip().splitlines() or [""])[-1]

    def run(self, *args: str, timeout: float) -> tuple[int, Any, str]:
        return self.finish(self.start(*args), timeout)

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """SIGTERM (pushctl rolls back, then exits), SIGKILL after 60 s."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.discard(proc)

    def stop_all(self) -> None:
        for proc in list(self.children):
            self.stop(proc)


# ---- sampling -----------------------------------------------------------------------------------------
def pid_files(run_dir: Path) -> dict[str, int]:
    pids = {}
    for path in sorted((run_dir / "pids").glob("*.json")):
        try:
            pids[path.stem] = int(json.loads(path.read_text())["pid"])
        except (OSError, ValueError, KeyError):
            continue
    return pids


def group_usage() -> dict[int, tuple[int, int]]:
    """pgid -> (RSS kB, open descriptors), summed over every process of the group."""
    table: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            pgid = int(stat.read_text().rsplit(")", 1)[1].split()[2])
            rss = next(
                (
                    int(ln.split()[1])
                    for ln in (stat.parent / "status").read_text().splitlines()
                    if ln.startswith("VmRSS:")
                ),
                0,
            )
            fds = sum(1 for _ in (stat.parent / "fd").iterdir())
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        old = table.get(pgid, (0, 0))
        table[pgid] = (old[0] + rss, old[1] + fds)
    return table


GO_HEAP_GOAL = "go_memstats_next_gc_bytes"  # the GC's heap goal: twice the live heap at the last collection
HEAD_SERIES = "prometheus_tsdb_head_series"  # Prometheus: series in its in-memory head block
GO_GAUGES = ("go_goroutines", "go_memstats_heap_inuse_bytes", GO_HEAP_GOAL, HEAD_SERIES)


def go_gauges(urls: dict[str, str]) -> dict[str, dict[str, float]]:
    """Each Go component's own accounting: goroutines (two per proxied connection, plus a few) and
    heap in use, which, unlike RSS, does not count memory freed after a burst but kept by the runtime."""
    found: dict[str, dict[str, float]] = {}
    for name, url in urls.items():
        try:
            text = httpx.get(url, timeout=2).text
        except httpx.HTTPError:
            continue
        found[name] = {g: v for g in GO_GAUGES if (v := sum_samples(text, g)) is not None}
    return found


@dataclass
class Sample:
    t: float
    quiet: bool
    pid: dict[str, int]
    rss_kb: dict[str, int]
    fds: dict[str, int]
    go: dict[str, dict[str, float]] = field(default_factory=dict)


class Sampler(threading.Thread):
    """Reads every component's RSS and descriptors every `every` seconds until stopped."""

    def __init__(self, run_dir: Path, every: float, t0: float, go_urls: dict[str, str] | None = None) -> None:
        super().__init__(name="sampler", daemon=True)
        self.run_dir, self.every, self.t0 = run_dir, every, t0
        self.go_urls = go_urls or {}
        self.samples: list[Sample] = []
        self.busy_until = 0.0  # monotonic: samples before this are not quiet (a drill, or its settling)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            now = time.monotonic()
            usage, pids = group_usage(), pid_files(self.run_dir)
            # components are started as process-group leaders: a group is the component with its children
            rows = {name: usage.get(pid, (0, 0)) for name, pid in pids.items()}
            self.samples.append(
                Sample(
                    t=round(now - self.t0, 1),
                    quiet=now >= self.busy_until,
                    pid=pids,
                    rss_kb={n: r[0] for n, r in rows.items()},
                    fds={n: r[1] for n, r in rows.items()},
                    go=go_gauges(self.go_urls),
                )
            )
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)


# ---- drills -------------------------------------------------------------------------------------------
def baseline_of(status: dict[str, Any]) -> dict[str, Any]:
    """What `status --json` must show after every drill: what the drill changed, undone."""
    return {
        "policies": status.get("policies"),
        "faults": status.get("faults"),
        "actions": status.get("actions"),
        "throttle": (status.get("throttle") or {}).get("mode"),
        "storage": (status.get("storage") or {}).get("mode"),
        "routing": (status.get("routing") or {}).get("weights"),
    }


@dataclass
class Drill:
    kind: str
    start: float  # seconds since the steady probe started
    end: float = 0.0
    exit_code: int | None = None
    detail: str = ""
    problems: list[str] = field(default_factory=list)
    measurements: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.problems


@dataclass
class Soak:
    cli: Cli
    args: argparse.Namespace
    t0: float
    sampler: Sampler
    baseline: dict[str, Any]
    drills: list[Drill] = field(default_factory=list)
    spike_ledgers: list[dict[str, Any]] = field(default_factory=list)

    def since(self) -> float:
        return round(time.monotonic() - self.t0, 1)

    def drill(self, kind: str) -> Drill:
        d = Drill(kind, self.since())
        self.drills.append(d)
        self.sampler.busy_until = float("inf")
        try:
            {"drain": self._drain, "redis": self._redis, "spike": self._spike}[kind](d)
        finally:
            d.end = self.since()
            self.sampler.busy_until = time.monotonic() + self.args.settle
        _rc, status, err = self.cli.run("status", "--json", timeout=120)
        now = baseline_of(status) if isinstance(status, dict) else None
        if now != self.baseline:
            changed = {k: v for k, v in (now or {}).items() if self.baseline.get(k) != v} if now else err
            d.problems.append(f"not back at the baseline: {changed}")
        return d

    def _drain(self, d: Drill) -> None:
        regions = list(self.cli.inventory.regions)  # in turn, so every drain moves devices
        region = regions[(sum(1 for x in self.drills if x.kind == "drain") - 1) % len(regions)]
        args = ("drain", "--region", region, "--spread", "5s", "--no-probe", *self.cli.confirm, "--json")
        d.exit_code, data, err = self.cli.run(*args, timeout=600)
        m = (data or {}).get("measurements") or {}
        d.measurements = {"region": region, **{k: m.get(k) for k in ("devices_before", "devices_left", "drain_time_s")}}
        d.detail = f"{region}: {m.get('devices_before')} devices out in {m.get('drain_time_s')} s" if m else err

    def _redis(self, d: Drill) -> None:
        args = ("fail", "redis", "--mode", "down", "--duration", self.args.redis_for, "--no-probe", *self.cli.confirm)
        d.exit_code, data, err = self.cli.run(*args, "--json", timeout=600)
        m = (data or {}).get("measurements") or {}
        d.measurements = m
        d.detail = (
            f"fallback after {m.get('fallback_detected_s')} s, Redis again {m.get('storage_recovered_s')} s after"
            if m
            else err
        )

    def _spike(self, d: Drill) -> None:
        spike_s = parse_duration(self.args.spike_for)
        safe = self.args.safe_load or 1.5 * self.args.rate
        throttle = self.cli.start(
            *("throttle", "access", "--auto", "--safe-load", str(safe), "--duration", f"{spike_s + 15:g}s"),
            *("--no-probe", *self.cli.confirm, "--json"),
        )
        time.sleep(3)  # the throttle is applied (journal, then the access tier) before the burst
        probe_args = ("--devices", str(self.args.spike_devices), "--rate", str(self.args.spike_rate))
        p_rc, ledger, p_err = self.cli.run(
            "probe", "run", *probe_args, "--duration", self.args.spike_for, "--grace", "10s", "--json",
            timeout=spike_s + 300,
        )  # fmt: skip
        d.exit_code, data, err = self.cli.finish(throttle, timeout=spike_s + 300)
        m = (data or {}).get("measurements") or {}
        d.measurements = {**m, "safe_load": safe, "spike_rate": self.args.spike_rate, "probe_exit": p_rc}
        if isinstance(ledger, dict):
            self.spike_ledgers.append(ledger)
        else:
            d.problems.append(f"the spike probe left no ledger: {p_err}")
        if not m.get("buffered"):
            d.problems.append("nothing went through the Kafka buffer")
        d.detail = (
            f"+{self.args.spike_rate:g}/s over safe load {safe:g}/s: {m.get('buffered', 0):.0f} buffered, "
            f"{m.get('rejected', 0):.0f} rejected, spike lost {(ledger or {}).get('lost')}"
            if m
            else err
        )


# ---- the verdict --------------------------------------------------------------------------------------
class TooShort(Exception):
    """A window holds too few quiet samples to judge."""


def rise_bound(base: float) -> float:
    """How far a count that must stay flat (descriptors, goroutines) may persistently rise above `base`."""
    return max(FD_SLACK_ABS, base * FD_SLACK_PCT / 100)


def med(values: list[float]) -> float:
    return float(statistics.median(values))


def trend(points: list[tuple[float, float]]) -> tuple[float, float]:
    """The Theil-Sen line through `points` (the median of every pairwise slope), evaluated at the
    first and the last point: a leak is a sustained slope, and one burst or a few outliers barely
    move a median, where they would tilt a least-squares line."""
    if len(points) < 2:
        return (points[0][1], points[0][1]) if points else (0.0, 0.0)
    slopes = [(y2 - y1) / (x2 - x1) for i, (x1, y1) in enumerate(points) for x2, y2 in points[i + 1 :] if x2 != x1]
    slope = med(slopes) if slopes else 0.0
    intercept = med([y - slope * x for x, y in points])
    return intercept + slope * points[0][0], intercept + slope * points[-1][0]


def pct(start: float, end: float) -> float:
    return round((end / start - 1) * 100, 2) if start else float("inf")


@dataclass
class Row:
    name: str
    rss_base_mb: float
    rss_final_mb: float
    rss_growth_pct: float  # final window median against the baseline window median
    rss_trend_pct: float  # the trend line's rise over the judged span
    fd_base: float
    fd_max: int
    fd_final: float
    fd_trend: float  # the trend line's rise, in descriptors
    fd_bound: float
    restarted: bool
    group: str | None = None  # fds judged by this group's row
    go: dict[str, list[float]] = field(default_factory=dict)  # gauge -> [baseline, final, trend %]

    @property
    def memory_basis(self) -> str:
        """What memory growth is judged on. Ours, Redis and Kafka: RSS. A Go server (Toxiproxy) keeps pages
        freed after a burst and returns them lazily, so its RSS drifts up with no leak: its GC heap goal
        (set from the live heap at each collection) is judged instead. Prometheus holds every sample
        since start-up in its head block until the first compaction (2 h), by design: what can grow
        without bound there is the number of series (a label with unbounded values), so that is judged."""
        if HEAD_SERIES in self.go:
            return HEAD_SERIES
        return GO_HEAP_GOAL if GO_HEAP_GOAL in self.go else "rss"

    @property
    def memory_growth_pct(self) -> float:
        """The larger of the two estimates (windows, trend) on the judged basis."""
        if self.memory_basis == "rss":
            return max(self.rss_growth_pct, self.rss_trend_pct)
        base, final, trend_pct = self.go[self.memory_basis]
        return max(pct(base, final), trend_pct)

    @property
    def goroutines_ok(self) -> bool:
        """Two goroutines per proxied connection: a leaked connection is a persistent rise, like a descriptor."""
        if "go_goroutines" not in self.go:
            return True
        base, final, trend_pct = self.go["go_goroutines"]
        return max(final - base, base * trend_pct / 100) <= rise_bound(base)

    @property
    def memory_ok(self) -> bool:
        """Both estimates: a leak that starts late shows between the windows, a slow one in the trend."""
        return self.memory_growth_pct < RSS_GROWTH_MAX and self.goroutines_ok and not self.restarted

    @property
    def fd_ok(self) -> bool:
        """No persistent rise: the final median and the trend stay within the bound. The maximum is
        shown, not judged: pooled keep-alive connections peak with a burst and close 15 s after it,
        a leaked descriptor never closes, so it stays in the final median and tilts the trend."""
        rise = max(self.fd_final - self.fd_base, self.fd_trend)
        return rise <= self.fd_bound and not self.restarted


def judge(samples: list[Sample], members: dict[str, list[str]], windows: dict[str, tuple[float, float]]) -> list[Row]:
    """One row per component (or group of components, summed) over the quiet samples of the windows."""

    def pick(lo: float, hi: float) -> list[Sample]:
        return [s for s in samples if s.quiet and lo <= s.t < hi]

    base, final, after = pick(*windows["baseline"]), pick(*windows["final"]), pick(*windows["after_warmup"])
    if len(base) < 3 or len(final) < 3:
        raise TooShort(f"{len(base)} quiet samples in the baseline window, {len(final)} in the final one (need 3)")
    rows = []
    for name, parts in members.items():

        def total(s: Sample, what: str, parts: list[str] = parts) -> float:
            return float(sum(getattr(s, what).get(p, 0) for p in parts))

        rss_base, rss_final = med([total(s, "rss_kb") for s in base]), med([total(s, "rss_kb") for s in final])
        fd_base = med([total(s, "fds") for s in base])
        pids = {tuple(s.pid.get(p) for p in parts) for s in after}
        rss_start, rss_end = trend([(s.t, total(s, "rss_kb")) for s in after])
        fd_start, fd_end = trend([(s.t, total(s, "fds")) for s in after])
        rows.append(
            Row(
                name=name,
                rss_base_mb=round(rss_base / 1024, 1),
                rss_final_mb=round(rss_final / 1024, 1),
                rss_growth_pct=pct(rss_base, rss_final),
                rss_trend_pct=pct(rss_start, rss_end),
                fd_base=fd_base,
                fd_max=int(max(total(s, "fds") for s in after)),
                fd_final=med([total(s, "fds") for s in final]),
                fd_trend=round(fd_end - fd_start, 1),
                fd_bound=rise_bound(fd_base),
                restarted=len(pids) > 1,
                go=_go_rows(parts, base, final, after),
            )
        )
    return rows


def _go_rows(parts: list[str], base: list[Sample], final: list[Sample], after: list[Sample]) -> dict[str, list[float]]:
    """The Go runtime's gauges of a component (or group, summed) when every part reported them."""
    out: dict[str, list[float]] = {}
    for gauge in GO_GAUGES:

        def value(s: Sample, gauge: str = gauge) -> float | None:
            found = [s.go.get(p, {}).get(gauge) for p in parts]
            return None if any(v is None for v in found) else float(sum(v for v in found if v is not None))

        b, f = [v for s in base if (v := value(s)) is not None], [v for s in final if (v := value(s)) is not None]
        points = [(s.t, v) for s in after if (v := value(s)) is not None]
        if b and f and points:
            start, end = trend(points)
            out[gauge] = [med(b), med(f), pct(start, end)]
    return out


def read_counters(inv: Inventory) -> dict[str, dict[str, float]]:
    """The COUNTERS of every service that exposes them (a component that does not answer is left out)."""
    found: dict[str, dict[str, float]] = {}
    for name, svc in inv.services.items():
        wanted = [m for kind, m in COUNTERS if kind in ("*", svc.kind.value)]
        if not wanted or svc.kind.value in ("redis", "kafka"):
            continue
        try:
            text = httpx.get(f"http://{svc.host}:{svc.port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        values = {m: sum_samples(text, m) for m in wanted}
        if shown := {m: v for m, v in values.items() if v is not None}:
            found[name] = shown
    return found


def ledger_totals(steady: dict[str, Any] | None, spikes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spike = {k: sum(int(x.get(k) or 0) for x in spikes) for k in LEDGER_KEYS}
    rows: dict[str, dict[str, Any]] = {"steady probe": {k: (steady or {}).get(k) for k in LEDGER_KEYS}}
    rows["spike probes"] = dict(spike)
    if steady is not None:
        rows["total"] = {k: int(steady.get(k) or 0) + spike[k] for k in LEDGER_KEYS}
    return rows


# ---- the run ------------------------------------------------------------------------------------------
def render(report: dict[str, Any]) -> None:
    w = report["windows"]
    out(f"\n### Soak: {report['minutes']:g} min, a drill every {report['drill_every_s']:g} s ({report['traffic']})\n")
    out(
        f"Warm-up until {w['after_warmup'][0]:.0f} s; baseline = quiet samples {w['baseline'][0]:.0f}-"
        f"{w['baseline'][1]:.0f} s, final = {w['final'][0]:.0f}-{w['final'][1]:.0f} s; "
        f"{report['sample_count']} samples, load average at the end {report['loadavg']}\n"
    )
    out(
        "| component | RSS base MB | RSS final MB | growth % | trend % | fds base | fds max | fds final | "
        "fds trend | fd bound | verdict |"
    )
    out("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["components"] + report["groups"]:
        row = Row(**r)
        bad = [x for x, ok in (("memory", row.memory_ok), ("fds", row.fd_ok or row.group is not None)) if not ok]
        bad += ["restarted"] if row.restarted else []
        said = ("FAIL " + ", ".join(bad)) if bad else ("ok" if row.group is None else f"ok (fds: {row.group})")
        out(
            f"| {row.name} | {row.rss_base_mb} | {row.rss_final_mb} | {row.rss_growth_pct:+.2f} | "
            f"{row.rss_trend_pct:+.2f} | {row.fd_base:g} | {row.fd_max} | {row.fd_final:g} | {row.fd_trend:+g} | "
            f"{row.fd_bound:g} | {said} |"
        )
    go_rows = [Row(**r) for r in report["components"] + report["groups"] if r.get("go")]
    if go_rows:
        out(
            "\n| Go servers (base / final / trend %) | goroutines | heap in use MB | GC heap goal MB | head series "
            "| judged on | growth % |"
        )
        out("|---|---|---|---|---|---|---|")
        for row in go_rows:
            g, h, goal, series = (row.go.get(k) for k in GO_GAUGES)
            cells = [
                f"{v[0] / scale:.{digits}f} / {v[1] / scale:.{digits}f} / {v[2]:+.1f}" if v else "-"
                for v, scale, digits in ((g, 1, 0), (h, 2**20, 1), (goal, 2**20, 1), (series, 1, 0))
            ]
            out(f"| {row.name} | {' | '.join(cells)} | {row.memory_basis} | {row.memory_growth_pct:+.2f} |")
    out("\n| t s | drill | exit | s | detail | problems |\n|---|---|---|---|---|---|")
    for d in report["drills"]:
        problems = "; ".join(d["problems"]) or "-"
        out(
            f"| {d['start']:.0f} | {d['kind']} | {d['exit_code']} | {d['end'] - d['start']:.0f} | "
            f"{d['detail']} | {problems} |"
        )
    out(f"\n| ledger | {' | '.join(LEDGER_KEYS)} |\n|---|{'---|' * len(LEDGER_KEYS)}")
    for name, counts in report["ledger"].items():
        out(f"| {name} | {' | '.join(str(counts.get(k)) for k in LEDGER_KEYS)} |")
    out("\n| component | counters (lifetime) |\n|---|---|")
    for name, counters in report["counters"].items():
        shown = ", ".join(f"{m.removeprefix('pushstack_')}={v:g}" for m, v in counters.items())
        out(f"| {name} | {shown} |")
    out()
    for name, (ok, why) in report["criteria"].items():
        out(f"- {'PASS' if ok else 'FAIL'} {name}: {why}")
    out(f"\n{'PASSED' if report['passed'] else 'FAILED'}")


def own_stack(run_base: Path, shift: int) -> Path:
    """A copy of the reference inventory named "soak", every port moved by `shift`, beside its run directory."""
    run_base.mkdir(parents=True, exist_ok=True)
    path = run_base / "topology.toml"
    path.write_text(derived_inventory((REPO / "stack" / "topology.toml").read_text(), name="soak", shift=shift))
    return path


def plant(patches: list[Path], root: Path) -> Path:
    """A copy of stack/ with `patches` applied; its services import pushstack from there."""
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(REPO / "stack", root / "stack", ignore=shutil.ignore_patterns("__pycache__"))
    for patch in patches:
        proc = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", str(patch.resolve())],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"error: {patch} does not apply to stack/: {proc.stderr.strip()}")
        out(f"planted {patch.name}")
    return root / "stack"


def soak(cli: Cli, args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    total, every = args.minutes * 60.0, parse_duration(args.drill_every)
    rc, status, err = cli.run("status", "--json", timeout=120)
    if not isinstance(status, dict):
        raise SystemExit(f"pushctl status failed ({rc}): {err}")
    baseline = baseline_of(status)
    traffic = (
        f"{args.devices} devices, {args.rate:g} pushes/s + {args.group_rate:g} group pushes/s to 10 devices; "
        f"spikes +{args.spike_rate:g}/s from {args.spike_devices} more devices"
    )
    probe = cli.start(
        *("probe", "run", "--devices", str(args.devices), "--rate", str(args.rate)),
        *("--group-rate", str(args.group_rate), "--duration", f"{total:g}s", "--grace", "10s", "--json"),
    )
    t0 = time.monotonic()
    go_urls = {name: f"http://{tp.host}:{tp.port}/metrics" for name, tp in cli.inventory.toxiproxy.items()}
    if (prom := cli.inventory.prometheus) is not None:
        go_urls["prometheus"] = f"http://{prom.host}:{prom.port}/metrics"
    sampler = Sampler(run_dir, parse_duration(args.sample_every), t0, go_urls)
    sampler.busy_until = t0 + args.settle  # the devices connect
    sampler.start()
    run = Soak(cli, args, t0, sampler, baseline)
    try:
        kinds = ("drain", "redis", "spike")
        for k in range(1, int(total // every)):
            time.sleep(max(0.0, t0 + k * every - time.monotonic()))
            if probe.poll() is not None:
                break  # the steady probe died: its ledger says why
            d = run.drill(kinds[(k - 1) % len(kinds)])
            out(f"[{run.since():6.0f} s] {d.kind}: exit {d.exit_code}, {d.detail} {'; '.join(d.problems)}")
        p_rc, steady, p_err = cli.finish(probe, timeout=max(0.0, t0 + total - time.monotonic()) + 300)
    finally:
        sampler.stop()
    counters = read_counters(cli.inventory)

    warm_end = (run.drills[2].end if len(run.drills) >= 3 else 60.0) + args.settle
    if args.warmup:
        warm_end = parse_duration(args.warmup)
    windows = {
        "after_warmup": (warm_end, total),
        "baseline": (warm_end, warm_end + every),
        "final": (max(total - parse_duration(args.final), warm_end + every), total + 0.1),
    }
    inv = cli.inventory
    device_tps = {r.toxiproxy for r in inv.regions.values()}
    names = sorted({n for s in sampler.samples for n in s.pid})
    grouped = {
        "brokers": [n for n in names if n in inv.services and inv.services[n].kind.value == "broker"],
        "device proxies": [n for n in names if n in device_tps],
    }
    ledger = ledger_totals(steady if isinstance(steady, dict) else None, run.spike_ledgers)
    report: dict[str, Any] = {
        "minutes": args.minutes,
        "drill_every_s": every,
        "traffic": traffic,
        "stack": inv.name,
        "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "windows": windows,
        "grouped": grouped,
        "drills": [asdict(d) for d in run.drills],
        "ledger": ledger,
        "steady_probe": {"exit": p_rc, "error": p_err},
        "counters": counters,
        "sample_count": len(sampler.samples),
        "samples": [asdict(s) for s in sampler.samples],
    }
    return verdict(report)


def verdict(report: dict[str, Any]) -> dict[str, Any]:
    """Judge a run from what it recorded (also a stored one: --rejudge); adds rows, criteria, passed."""
    samples = [Sample(**s) for s in report["samples"]]
    windows = {k: (float(v[0]), float(v[1])) for k, v in report["windows"].items()}
    names = sorted({n for s in samples for n in s.pid})
    grouped: dict[str, list[str]] = report.get("grouped") or {  # runs recorded before "grouped" was stored
        "brokers": [n for n in names if n.startswith("broker-")],
        "device proxies": [n for n in names if n.startswith("tp-") and n != "tp-internal"],
    }
    rows = judge(samples, {n: [n] for n in names}, windows)
    groups = judge(samples, grouped, windows)
    for row in rows:
        row.group = next((g for g, parts in grouped.items() if row.name in parts), None)
    drills = [Drill(**d) for d in report["drills"]]
    ledger = report["ledger"]
    probe = report.get("steady_probe") or {}
    lost = (ledger.get("total") or {}).get("lost")
    memory_bad = [r for r in rows if not r.memory_ok]
    fd_bad = [r.name for r in rows if r.group is None and not r.fd_ok] + [g.name for g in groups if not g.fd_ok]
    criteria = {
        f"memory growth < {RSS_GROWTH_MAX:g} % (RSS; Go heap goal; Prometheus head series), goroutines flat": (
            not memory_bad,
            ", ".join(f"{r.name} ({r.memory_basis} {r.memory_growth_pct:+.2f} %)" for r in memory_bad)
            or f"max {max(r.memory_growth_pct for r in rows):+.2f} %",
        ),
        "descriptors flat": (
            not fd_bad,
            ", ".join(fd_bad)
            or f"max persistent rise {max(max(r.fd_final - r.fd_base, r.fd_trend) for r in rows + groups):g}",
        ),
        "0 lost": (
            lost == 0,
            f"lost {lost}"
            if lost is not None
            else f"no ledger from the steady probe ({probe.get('exit')}: {probe.get('error')})",
        ),
        "drills ok, baseline after each": (
            all(d.ok for d in drills) and len(drills) > 0,
            f"{sum(d.ok for d in drills)} of {len(drills)}",
        ),
    }
    return {
        **report,
        "criteria": criteria,
        "passed": all(ok for ok, _ in criteria.values()),
        "components": [asdict(r) for r in rows],
        "groups": [asdict(g) for g in groups],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--drill-every", default="2m")
    ap.add_argument("-i", "--inventory", help="a running stack (left running); default: start one, stop it after")
    ap.add_argument(
        "--run-dir",
        default=str(Path(tempfile.gettempdir()) / "pushctl-soak-run"),
        help="PUSHCTL_RUN_DIR for the stack it starts",
    )
    ap.add_argument("--shift", type=int, default=-4000, help="port shift of the stack it starts")
    ap.add_argument("--json", dest="json_out", type=Path, help="write the report (with every sample) here")
    ap.add_argument("--devices", type=int, default=90)
    ap.add_argument("--rate", type=float, default=250.0, help="steady single pushes per second")
    ap.add_argument("--group-rate", type=float, default=2.0, help="steady group pushes (10 devices) per second")
    ap.add_argument("--redis-for", default="20s", help="how long Redis is down in a redis drill")
    ap.add_argument("--spike-rate", type=float, default=400.0, help="pushes/s added during a spike")
    ap.add_argument("--spike-devices", type=int, default=60)
    ap.add_argument("--spike-for", default="20s")
    ap.add_argument("--safe-load", type=float, default=None, help="access tier's safe load in a spike (1.5x --rate)")
    ap.add_argument("--sample-every", default="10s")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after a drill before samples count")
    ap.add_argument("--warmup", default=None, help="override: the warm-up ends here (default: after 3 drills)")
    ap.add_argument("--final", default="5m", help="the final window: the last this long")
    ap.add_argument("--rejudge", type=Path, help="judge a stored run (its --json file) again; runs nothing")
    ap.add_argument(
        "--plant",
        type=Path,
        action="append",
        default=[],
        help="a patch to stack/ (e.g. bench/leaks/*.patch) the stack it starts runs with: shows the verdict failing",
    )
    args = ap.parse_args()
    if args.rejudge is not None:
        report = verdict(json.loads(args.rejudge.read_text()))
        render(report)
        return 0 if report["passed"] else 1
    if parse_duration(args.drill_every) * 2 > args.minutes * 60:
        ap.error("--minutes must hold at least one drill period after the first")

    signal.signal(signal.SIGTERM, _on_signal)
    own = args.inventory is None
    if args.plant and not own:
        ap.error("--plant needs the stack the soak starts itself (no --inventory)")
    if own:
        os.environ["PUSHCTL_RUN_DIR"] = args.run_dir
    if args.plant:
        planted = plant(args.plant, Path(args.run_dir) / "planted")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(planted), os.environ.get("PYTHONPATH")]))
    inv = load_inventory(args.inventory or own_stack(Path(args.run_dir), args.shift))
    run_dir = Path(os.environ.get("PUSHCTL_RUN_DIR") or Path.home() / ".local/state/pushctl") / inv.name
    cli = Cli(inv, {**os.environ, "PYTHONUNBUFFERED": "1"})
    pids: dict[str, int] = {}
    code = 0
    try:
        if own:
            rc, _, err = cli.run("stack", "up", "--json", timeout=900)
            if rc != 0:
                out(f"stack up failed ({rc}): {err}")
                return 5
        pids = pid_files(run_dir)
        report = soak(cli, args, run_dir)
        render(report)
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=1))
        code = 0 if report["passed"] else 1
    except TooShort as exc:
        out(f"too short to judge: {exc}")
        code = 2
    except (Interrupted, KeyboardInterrupt) as exc:
        out(f"interrupted ({exc or 'SIGINT'}): rolling back and stopping")
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the teardown short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cli.stop_all()  # each drill rolls back on SIGTERM before it exits
        if own:
            pids = pids or pid_files(run_dir)
            rc, _, err = cli.run("stack", "down", "--purge", timeout=300)
            left = [f"{n}:{p}" for n, p in pids.items() if pid_alive(p)]
            out(f"stack down --purge: exit {rc} {err}; still running: {', '.join(left) or 'nothing'}")
            (Path(args.run_dir) / "topology.toml").unlink(missing_ok=True)
            code = code or (1 if rc != 0 or left else 0)
    return code


if __name__ == "__main__":
    sys.exit(main())
