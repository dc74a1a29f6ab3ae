"""Benchmark: the push pipeline end to end, with the probe on the same machine.

    .venv/bin/python bench/pipeline.py -i /tmp/bench/topology.toml [--sections loopback,ceiling,half,group,hold]

Every push goes sender -> access (HTTP) -> logic (through its internal proxy) -> broker (through the
VPC proxy) -> device (through the regional device proxy), i.e. through every Toxiproxy hop.

- loopback: the ceiling of a bare asyncio TCP fan-out on 127.0.0.1 (one server process writing small
  newline-terminated frames round-robin to N client connections, the client side reading them line by
  line), msgs/s. The ratio ceiling / loopback says how much of the hardware the stack uses.
- ceiling: single pushes stepped at --rates for --step seconds each with --devices devices; per step the
  delivery rate (deadline 1 s), p50/p99/p99.9, lost, and the CPU each component used during the step.
  The ceiling is the highest step with delivery rate >= 99.9 % (and the probe keeping up with the pace).
- half: the ceiling / 2 for --half-duration seconds: p99 and p99.9.
- group: group pushes to --group-sizes devices (a device list, one group per 1/--group-rate s):
  deliveries/s and the latency to the LAST device of each group.
- hold: --hold device counts connected through the regional proxies, low traffic; broker RSS delta per
  connection (VmRSS of each broker's process group, before vs. after the devices are idle).

The stack must be up on the inventory (`pushctl -i ... stack up`); with --manage the script brings it
up and always down at the end. `--json-out PATH` also writes CPU µs per delivery by component (and its
kernel-mode part) per load, which `bench/ab.py` uses to compare two code trees in one run.
Prints markdown tables for bench/RESULTS.md. Load average is printed
before every section: the numbers are only comparable on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pushctl.contract.topology import load_inventory
from pushctl.probe.ledger import LedgerSummary, percentile
from pushctl.probe.probe import Probe, ProbeOptions

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PASS_RATE = 99.9


def out(line: str = "") -> None:
    print(line, flush=True)  # noqa: T201 - a benchmark prints its tables


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- the stack's processes ------------------------------------------------------------------------
def pushctl(inventory: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pushctl.cli.main", "-i", inventory, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    if check and proc.returncode != 0:
        sys.exit(f"pushctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def components(inventory: str) -> dict[str, int]:
    status = json.loads(pushctl(inventory, "stack", "status", "--json").stdout)
    return {c["name"]: c["pid"] for c in status["components"] if c.get("pid")}


def proc_table() -> dict[int, tuple[int, int]]:
    """pgid -> (cpu ticks, RSS kB) summed over every process of the group."""
    table: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            rss = 0
            for line in (stat.parent / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                    break
        except (OSError, IndexError):
            continue
        pgid, ticks = int(fields[2]), int(fields[11]) + int(fields[12])
        old = table.get(pgid, (0, 0))
        table[pgid] = (old[0] + ticks, old[1] + rss)
    return table


def sys_table() -> dict[int, int]:
    """pgid -> kernel-mode CPU ticks (stime) summed over the group: the syscall share of utime + stime."""
    table: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(fields[2])] = table.get(int(fields[2]), 0) + int(fields[12])
    return table


def pid_ticks(pids: list[int]) -> dict[int, tuple[int, int]]:
    """pid -> (utime + stime, stime) ticks of each live process. The probe's worker processes share
    this script's process group, which no component owns: a pgid table would count them as "other"."""
    table: dict[int, tuple[int, int]] = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[pid] = (int(fields[11]) + int(fields[12]), int(fields[12]))
    return table


def own_sys_cpu() -> float:
    """Kernel-mode CPU seconds of this process and its reaped children."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime


def machine_busy() -> int:
    """Busy ticks of the whole machine (every core), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # minus idle and iowait


def own_cpu() -> float:
    """CPU seconds of this process and its reaped children (probe workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


@dataclass
class CpuWindow:
    """CPU % (of one core) per component between start() and stop()."""

    comps: dict[str, int]
    before: dict[int, tuple[int, int]] | None = None
    t0: float = 0.0
    self0: float = 0.0
    busy0: int = 0
    result: dict[str, float] | None = None
    sys_before: dict[int, int] | None = None
    sys_self0: float = 0.0
    sys_result: dict[str, float] | None = None  # kernel-mode CPU % per component (part of `result`)
    workers0: dict[int, tuple[int, int]] | None = None

    def start(self, extra_pids: list[int] = ()) -> None:  # type: ignore[assignment]
        self.workers0 = pid_ticks(list(extra_pids))
        self.sys_before, self.sys_self0 = sys_table(), own_sys_cpu()
        self.before, self.t0, self.self0 = proc_table(), time.monotonic(), own_cpu()
        self.busy0 = machine_busy()

    def stop(self, extra_pids: list[int] = ()) -> dict[str, float]:  # type: ignore[assignment]
        assert self.before is not None  # noqa: S101 - narrows the type for mypy; guaranteed by the caller
        after, secs = proc_table(), time.monotonic() - self.t0
        workers, workers0 = pid_ticks(list(extra_pids)), self.workers0 or {}
        res = {}
        for name, pid in self.comps.items():
            res[name] = (after.get(pid, (0, 0))[0] - self.before.get(pid, (0, 0))[0]) / CLK_TCK / secs * 100
        probe = own_cpu() - self.self0
        for pid, (ticks, _) in workers.items():  # live worker processes (not reaped yet)
            probe += (ticks - workers0.get(pid, (0, 0))[0]) / CLK_TCK
        res["probe (this process)"] = probe / secs * 100
        machine = (machine_busy() - self.busy0) / CLK_TCK / secs * 100
        res["other processes (not this stack)"] = max(0.0, machine - sum(res.values()))
        self.result = res
        sys_after, before = sys_table(), self.sys_before or {}
        kernel = {n: (sys_after.get(p, 0) - before.get(p, 0)) / CLK_TCK / secs * 100 for n, p in self.comps.items()}
        probe_sys = own_sys_cpu() - self.sys_self0
        for pid, (_, stime) in workers.items():
            probe_sys += (stime - workers0.get(pid, (0, 0))[1]) / CLK_TCK
        kernel["probe (this process)"] = probe_sys / secs * 100
        self.sys_result = kernel
        return res


def group_cpu(res: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = {}
    for name, pct in res.items():
        key = name
        for prefix in ("broker", "logic", "tp-", "redis"):
            if name.startswith(prefix):
                key = {"tp-": "toxiproxy (4)", "broker": "brokers (3)", "logic": "logic (2)", "redis": "redis (2)"}[
                    prefix
                ]
        groups[key] = groups.get(key, 0.0) + pct
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


# ---- 1a. bare asyncio loopback ---------------------------------------------------------------------
def _loop_server(port_q: mp.Queue, conns: int, seconds: float, payload: bytes) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        writers: list[asyncio.StreamWriter] = []
        ready = asyncio.Event()

        async def on_conn(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            writers.append(w)
            if len(writers) == conns:
                ready.set()

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        port_q.put(server.sockets[0].getsockname()[1])
        await asyncio.wait_for(ready.wait(), 30)
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        i = 0
        while loop.time() < end:
            for _ in range(1000):  # one write() per message, like one push frame per device
                writers[i % conns].write(payload)
                i += 1
            for w in writers:
                await w.drain()
        for w in writers:
            w.close()
        server.close()

    asyncio.run(main())


async def _loop_client(port: int, conns: int) -> tuple[int, float]:
    count = 0
    first = last = 0.0

    async def reader(port: int) -> None:
        nonlocal count, first, last
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while await r.readline():
            if not first:
                first = time.monotonic()
            count += 1
        last = time.monotonic()
        w.close()

    await asyncio.gather(*(reader(port) for _ in range(conns)))
    return count, last - first


async def loopback(conns: int, seconds: float) -> float:
    payload = b'{"id":"abc123-000001","payload":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}\n'
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    server = mp.Process(target=_loop_server, args=(q, conns, seconds, payload), daemon=True)
    server.start()
    try:
        port = await asyncio.to_thread(q.get, timeout=10)
        count, secs = await _loop_client(port, conns)
    finally:
        server.join(timeout=seconds + 10)
        if server.is_alive():
            server.kill()
    return count / secs


# ---- probe runs -------------------------------------------------------------------------------------
@dataclass
class Step:
    rate: float
    summary: LedgerSummary
    sent_rate: float  # what the sender actually achieved
    cpu: dict[str, float]
    load: str

    @property
    def passed(self) -> bool:
        dr = self.summary.delivery_rate or 0.0
        return dr >= PASS_RATE and self.sent_rate >= 0.97 * self.rate


ONLINE_AT_START: list[int] = []
RESULTS: list[dict[str, object]] = []  # what --json-out writes (bench/ab.py reads it)
LAST_SYS: dict[str, float] = {}  # kernel-mode CPU % per component of the last probe step


async def probe_step(
    inv_path: str, comps: dict[str, int], opts: ProbeOptions
) -> tuple[Probe, LedgerSummary, float, dict[str, float]]:
    inv = load_inventory(inv_path)
    probe = Probe(inv, opts)
    cpu = CpuWindow(comps)
    try:
        await probe.start()
        ONLINE_AT_START.append(probe.snapshot().online)
        cpu.start(probe.worker_pids)
        t0 = time.monotonic()
        await probe.wait_sent()
        sent_secs = time.monotonic() - t0
        res = cpu.stop(probe.worker_pids)
        LAST_SYS.clear()
        LAST_SYS.update(cpu.sys_result or {})
        summary = await probe.stop()
    finally:
        await probe.close()
    return probe, summary, sent_secs, res


async def ceiling(args: argparse.Namespace, comps: dict[str, int], rates: list[float]) -> list[Step]:
    steps = []
    failures = 0
    for rate in rates:
        load = loadavg()
        opts = ProbeOptions(devices=args.devices, rate=rate, duration=args.step, grace=5.0, seed=1)
        _, summary, secs, cpu = await probe_step(args.inventory, comps, opts)
        sent_rate = summary.sent / max(secs, 1e-9)
        step = Step(rate, summary, sent_rate, cpu, load)
        steps.append(step)
        lat = summary.latency_ms
        out(
            f"<!-- step {rate:.0f}/s: sent {summary.sent} ({sent_rate:.0f}/s) delivery "
            f"{summary.delivery_rate:.3f}% p50 {lat.p50} p99 {lat.p99} p999 {lat.p999} lost {summary.lost} "
            f"load {load} -->"
        )
        raw = ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 1)
        out(f"<!-- step {rate:.0f}/s CPU %: {raw} -->")
        failures = 0 if step.passed else failures + 1
        if failures >= 2:  # two failing steps in a row: past the ceiling
            break
        await asyncio.sleep(3)  # let queues settle before the next step
    return steps


def print_steps(steps: list[Step]) -> None:
    out("| offered /s | sent /s | delivery % (1 s) | p50 ms | p99 ms | p99.9 ms | late | lost | pass | load avg |")
    out("|---|---|---|---|---|---|---|---|---|---|")
    for s in steps:
        m = s.summary
        out(
            f"| {s.rate:.0f} | {s.sent_rate:.0f} | {m.delivery_rate:.3f} | {fmt_ms(m.latency_ms.p50)} | "
            f"{fmt_ms(m.latency_ms.p99)} | {fmt_ms(m.latency_ms.p999)} | {m.late} | {m.lost} | "
            f"{'yes' if s.passed else 'no'} | {s.load} |"
        )


def print_cpu(steps: list[Step]) -> None:
    groups = [group_cpu(s.cpu) for s in steps]
    names = list(groups[-1])
    out("| CPU % of one core | " + " | ".join(f"{s.rate:.0f}/s" for s in steps) + " |")
    out("|---|" + "---|" * len(steps))
    for name in names:
        out(f"| {name} | " + " | ".join(f"{g.get(name, 0):.0f}" for g in groups) + " |")
    other = "other processes (not this stack)"
    out(
        "| this stack + probe | "
        + " | ".join(f"{sum(v for k, v in g.items() if k != other):.0f}" for g in groups)
        + " |"
    )
    out("| whole machine (200 = both cores) | " + " | ".join(f"{sum(g.values()):.0f}" for g in groups) + " |")
    out("")
    out("| CPU µs per push (this stack + probe) | " + " | ".join(f"{s.rate:.0f}/s" for s in steps) + " |")
    out("|---|" + "---|" * len(steps))
    for name in [n for n in names if n != other]:
        out(
            f"| {name} | "
            + " | ".join(f"{g.get(name, 0) / 100 / s.sent_rate * 1e6:.0f}" for g, s in zip(groups, steps, strict=True))
            + " |"
        )
    out(
        "| total | "
        + " | ".join(
            f"{sum(v for k, v in g.items() if k != other) / 100 / s.sent_rate * 1e6:.0f}"
            for g, s in zip(groups, steps, strict=True)
        )
        + " |"
    )


# ---- 2. group fan-out -------------------------------------------------------------------------------
async def group(args: argparse.Namespace, comps: dict[str, int], size: int, group_rate: float) -> dict[str, object]:
    load = loadavg()
    opts = ProbeOptions(
        devices=size,
        rate=0.0,
        group_rate=group_rate,
        group_size=size,
        duration=args.group_duration,
        grace=10.0,
        seed=2,
        connect_timeout=10.0 + 2.0 * size / 400.0,
    )
    probe, summary, secs, cpu = await probe_step(args.inventory, comps, opts)
    # the last device of each group: max over its devices of (first delivery - sent); private, read-only
    ledger = probe.ledger
    last, full, delivered, t_first, t_last = [], 0, 0, float("inf"), 0.0
    for msg_id, rec in ledger._sent.items():
        firsts = [d.first_at for dev in rec.devices if (d := ledger._deliveries.get((msg_id, dev)))]
        t_first = min(t_first, rec.at)
        if firsts:
            last.append(max(firsts) - rec.at)
            full += len(firsts) == len(rec.devices)
            delivered += len(firsts)
            t_last = max(t_last, max(firsts))
    last.sort()
    return {
        "size": size,
        "group_rate": group_rate,
        "groups": len(ledger._sent),
        "complete": full,
        "deliveries_per_s": summary.sent / secs,
        "delivered_per_s": delivered / max(1e-9, t_last - t_first),
        "online": ONLINE_AT_START[-1],
        "summary": summary,
        "last_p50": percentile(last, 50),
        "last_max": last[-1] if last else None,
        "cpu": group_cpu(cpu),
        # CPU time per delivery over the sending window (deliveries land in it when groups keep up)
        "cpu_us": {k: v / 100 * secs / max(1, summary.sent) * 1e6 for k, v in group_cpu(cpu).items()},
        "sys_us": {k: v / 100 * secs / max(1, summary.sent) * 1e6 for k, v in group_cpu(LAST_SYS).items()},
        "load": load,
    }


# ---- 3. held connections ----------------------------------------------------------------------------
async def hold(
    args: argparse.Namespace, comps: dict[str, int], n: int, baseline: dict[int, tuple[int, int]]
) -> dict[str, object]:
    """RSS deltas are against `baseline`, taken once on the idle stack before the first hold."""
    brokers = {name: pid for name, pid in comps.items() if name.startswith("broker")}
    proxies = {name: pid for name, pid in comps.items() if name in ("tp-north", "tp-east", "tp-south")}
    load = loadavg()
    before = baseline
    inv = load_inventory(args.inventory)
    opts = ProbeOptions(devices=n, rate=5.0, duration=None, grace=5.0, seed=3, connect_timeout=10.0 + 3.0 * n / 400)
    probe = Probe(inv, opts)
    t0 = time.monotonic()
    try:
        await probe.start()
        connect_s = time.monotonic() - t0
        await asyncio.sleep(args.idle)
        snap = probe.snapshot()
        after = proc_table()
        summary = await probe.stop()
    finally:
        await probe.close()

    def delta(pids: dict[str, int]) -> float:
        return sum(after.get(p, (0, 0))[1] - before.get(p, (0, 0))[1] for p in pids.values())

    return {
        "devices": n,
        "online": snap.online,
        "connected": snap.connected,
        "connect_s": connect_s,
        "broker_delta_kb": delta(brokers),
        "broker_rss_kb": sum(after.get(p, (0, 0))[1] for p in brokers.values()),
        "broker_base_kb": sum(before.get(p, (0, 0))[1] for p in brokers.values()),
        "proxy_delta_kb": delta(proxies),
        "delivery": summary.delivery_rate,
        "sent": summary.sent,
        "load": load,
    }


# ---- main -------------------------------------------------------------------------------------------
@contextmanager
def managed_stack(inventory: str, manage: bool) -> Iterator[None]:
    if manage:
        pushctl(inventory, "stack", "up")
    try:
        yield
    finally:
        if manage:
            pushctl(inventory, "stack", "down", check=False)


async def run(args: argparse.Namespace) -> None:
    sections = args.sections.split(",")
    comps = components(args.inventory)
    out(f"<!-- {time.strftime('%Y-%m-%d %H:%M')} load average at start: {loadavg()} -->")
    loop_rate = None
    if "loopback" in sections:
        loop_rate = await loopback(args.loop_conns, args.loop_seconds)
        out(f"<!-- loopback: {loop_rate:.0f} msgs/s over {args.loop_conns} connections -->")
    ceiling_rate = args.ceiling
    if "ceiling" in sections:
        steps = await ceiling(args, comps, [float(r) for r in args.rates.split(",")])
        for st in steps:
            grouped = group_cpu(st.cpu)
            RESULTS.append(
                {
                    "section": "single",
                    "spec": f"{st.rate:.0f}/s",
                    "cpu_us": {k: v / 100 / max(st.sent_rate, 1e-9) * 1e6 for k, v in grouped.items()},
                    "deliveries_per_s": st.sent_rate,
                    "delivery_rate": st.summary.delivery_rate,
                    "load": st.load,
                }
            )
        out("\n### Single-push ceiling\n")
        print_steps(steps)
        out("")
        print_cpu(steps)
        passing = [s.rate for s in steps if s.passed]
        ceiling_rate = max(passing) if passing else None
        out(f"\nceiling: {ceiling_rate or 0:.0f} pushes/s")
        if loop_rate:
            out(
                f"bare asyncio loopback: {loop_rate:.0f} msgs/s ({args.loop_conns} connections); "
                f"ratio ceiling/loopback = {(ceiling_rate or 0) / loop_rate:.3f}"
            )
    elif loop_rate:
        out(f"\nbare asyncio loopback: {loop_rate:.0f} msgs/s ({args.loop_conns} connections)")
    if "half" in sections and ceiling_rate:
        half = ceiling_rate / 2
        load = loadavg()
        opts = ProbeOptions(devices=args.devices, rate=half, duration=args.half_duration, grace=5.0, seed=4)
        _, summary, secs, cpu = await probe_step(args.inventory, comps, opts)
        step = Step(half, summary, summary.sent / secs, cpu, load)
        out(f"\n### Latency at half the ceiling ({half:.0f}/s, {args.half_duration:.0f} s)\n")
        print_steps([step])
    if "group" in sections:
        out("\n### Group fan-out\n")
        out(
            "| group size | online | groups/s | groups | complete | offered deliveries/s | delivered/s | "
            "delivery % (1 s) | p50 ms | p99 ms | last device p50 ms | last device max ms | lost | "
            "hottest CPU % | load avg |"
        )
        out("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        per_delivery: list[tuple[str, dict[str, float]]] = []
        for spec in args.groups.split(","):
            size, grate = spec.split("@")
            g = await group(args, comps, int(size), float(grate))
            per_delivery.append((spec, g["cpu_us"]))  # type: ignore[arg-type]
            RESULTS.append(
                {
                    "section": "group",
                    "spec": spec,
                    "cpu_us": g["cpu_us"],
                    "sys_us": g["sys_us"],
                    "deliveries_per_s": g["deliveries_per_s"],
                    "delivered_per_s": g["delivered_per_s"],
                    "delivery_rate": g["summary"].delivery_rate,  # type: ignore[attr-defined]
                    "load": g["load"],
                }
            )
            s: LedgerSummary = g["summary"]  # type: ignore[assignment]
            hot = ", ".join(f"{k} {v:.0f}" for k, v in list(g["cpu"].items())[:3])  # type: ignore[union-attr]
            out(
                f"| {g['size']} | {g['online']} | {g['group_rate']} | {g['groups']} | {g['complete']} | "
                f"{g['deliveries_per_s']:.0f} | {g['delivered_per_s']:.0f} | "
                f"{s.delivery_rate:.3f} | {fmt_ms(s.latency_ms.p50)} | {fmt_ms(s.latency_ms.p99)} | "
                f"{fmt_ms(g['last_p50'] * 1000 if g['last_p50'] is not None else None)} | "  # type: ignore[operator]
                f"{fmt_ms(g['last_max'] * 1000 if g['last_max'] is not None else None)} | {s.lost} | {hot} | "  # type: ignore[operator]
                f"{g['load']} |"
            )
            await asyncio.sleep(3)
        out("\n| CPU µs per delivery | " + " | ".join(spec for spec, _ in per_delivery) + " |")
        out("|---|" + "---|" * len(per_delivery))
        for name in per_delivery[-1][1]:
            out(f"| {name} | " + " | ".join(f"{us.get(name, 0):.0f}" for _, us in per_delivery) + " |")
        out("| total | " + " | ".join(f"{sum(us.values()):.0f}" for _, us in per_delivery) + " |")
    if "hold" in sections:
        out(f"\n### Held connections (idle {args.idle:.0f} s after all connected)\n")
        out(
            "| devices | online | per region | connect time s | broker RSS MB (3, idle -> held) | broker delta MB | "
            "per connection kB | device-proxy RSS delta MB (3) | delivery % | load avg |"
        )
        out("|---|---|---|---|---|---|---|---|---|---|")
        baseline = proc_table()
        for n in [int(x) for x in args.hold.split(",")]:
            h = await hold(args, comps, n, baseline)
            per = h["broker_delta_kb"] / max(1, h["online"])  # type: ignore[operator]
            out(
                f"| {h['devices']} | {h['online']} | {h['connected']} | {h['connect_s']:.1f} | "
                f"{h['broker_base_kb'] / 1024:.1f} -> {h['broker_rss_kb'] / 1024:.1f} | "  # type: ignore[operator]
                f"{h['broker_delta_kb'] / 1024:.1f} | {per:.1f} | {h['proxy_delta_kb'] / 1024:.1f} | "  # type: ignore[operator]
                f"{h['delivery'] if h['delivery'] is None else round(h['delivery'], 3)} | {h['load']} |"  # type: ignore[arg-type]
            )
            await asyncio.sleep(3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-i", "--inventory", default=str(REPO / "stack" / "topology.toml"))
    ap.add_argument("--manage", action="store_true", help="stack up first, always stack down at the end")
    ap.add_argument("--sections", default="loopback,ceiling,half,group,hold")
    ap.add_argument("--rates", default="1000,2000,3000,4000,5000,6000")
    ap.add_argument("--step", type=float, default=12.0, help="seconds per rate step")
    ap.add_argument("--devices", type=int, default=600)
    ap.add_argument("--ceiling", type=float, default=None, help="for --sections half without ceiling")
    ap.add_argument("--half-duration", type=float, default=30.0)
    ap.add_argument("--groups", default="2000@1,2000@2,5000@0.5,5000@1", help="size@groups-per-second,...")
    ap.add_argument("--group-duration", type=float, default=10.0)
    ap.add_argument("--hold", default="3000,10000")
    ap.add_argument("--idle", type=float, default=10.0)
    ap.add_argument("--loop-conns", type=int, default=100)
    ap.add_argument("--loop-seconds", type=float, default=4.0)
    ap.add_argument("--json-out", default=None, help="also write the ceiling/group CPU µs per delivery as JSON")
    args = ap.parse_args()
    with managed_stack(args.inventory, args.manage):
        asyncio.run(run(args))
    if args.json_out:
        code = str(Path(sys.modules[Probe.__module__].__file__ or "").resolve())  # which tree the probe ran
        Path(args.json_out).write_text(json.dumps({"probe_code": code, "results": RESULTS}))


if __name__ == "__main__":
    main()
