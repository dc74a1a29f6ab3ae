"""The default runtime: every component a local process on 127.0.0.1.

Run files live in one run directory (`pushctl.runtime.paths.run_dir`):
    pids/<component>.json   pid, start time (from /proc, so a recycled pid is never taken for ours), argv
    logs/<component>.log    stdout and stderr
    data/<component>/       Redis AOF, Kafka log dirs, the disk KV
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pushctl.contract.topology import Inventory
from pushctl.errors import UsageError
from pushctl.faults import links as fault_links
from pushctl.runtime import health, kafka, prometheus
from pushctl.runtime.base import ComponentStatus, Log, Runtime, StackStatus, ensure_kafka_topics
from pushctl.runtime.components import Component, Role, components, redis_argv, service_argv, toxiproxy_argv
from pushctl.runtime.install import Installed, install_all
from pushctl.runtime.paths import cache_dir, run_dir
from pushctl.runtime.pids import start_time

STOP_GRACE_S = 4.0  # Kafka needs ~2.3 s for a clean shutdown; everything stops concurrently


@dataclass(frozen=True)
class PidRecord:
    pid: int
    starttime: int
    started_at: float
    argv: list[str]


class ProcessRuntime(Runtime):
    name = "process"

    def __init__(self, inv: Inventory, *, log: Log) -> None:
        super().__init__(inv, log=log)
        self.dir = run_dir(inv.name)
        self.components = components(inv)
        self._started: list[str] = []

    # ---- files -----------------------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.dir / "pids" / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.dir / "logs" / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        return self.dir / "data" / name

    def _read_pid(self, name: str) -> PidRecord | None:
        try:
            raw = json.loads(self._pidfile(name).read_text())
            return PidRecord(int(raw["pid"]), int(raw["starttime"]), float(raw["started_at"]), list(raw["argv"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def alive(self, name: str) -> PidRecord | None:
        rec = self._read_pid(name)
        if rec is None or start_time(rec.pid) != rec.starttime:
            return None
        return rec

    # ---- up --------------------------------------------------------------------------------
    async def up(self, *, timeout: float = 120.0) -> StackStatus:
        installed = await asyncio.to_thread(
            install_all,
            cache_dir(),
            self.log,
            need_kafka=any(c.role == Role.KAFKA and c.managed for c in self.components),
            need_redis=any(c.role == Role.REDIS and c.managed for c in self.components),
            need_prometheus=any(c.role == Role.PROMETHEUS and c.managed for c in self.components),
        )
        for sub in ("pids", "logs", "data"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self._check_ports()
        deadline = time.monotonic() + timeout
        try:
            await self._start_stage([c for c in self.components if c.role == Role.TOXIPROXY], installed, deadline)
            await fault_links.sync_links(self.inv)
            await self._start_stage(
                [c for c in self.components if c.role in (Role.REDIS, Role.KAFKA)], installed, deadline
            )
            await ensure_kafka_topics(self.inv, self.components)
            await self._start_stage([c for c in self.components if c.role == Role.SERVICE], installed, deadline)
            await self._start_stage([c for c in self.components if c.role == Role.PROMETHEUS], installed, deadline)
        except BaseException:
            if self._started:
                self.log(f"stopping what this run started: {', '.join(self._started)}")
                await self._stop(list(reversed(self._started)))
            raise
        return await self.status()

    def _check_ports(self) -> None:
        """A port held by something that is not this stack's component is reported by number and owner."""
        health.check_ports_free(self.components, lambda comp: self.alive(comp.name) is not None)

    async def _start_stage(self, stage: list[Component], installed: Installed, deadline: float) -> None:
        to_wait: list[Component] = []
        for comp in stage:
            if not comp.managed:
                to_wait.append(comp)
                continue
            if self.alive(comp.name) is None:
                await asyncio.to_thread(self._spawn, comp, installed)
            to_wait.append(comp)
        await asyncio.gather(*(self._wait_healthy(c, deadline) for c in to_wait))

    def _spawn(self, comp: Component, installed: Installed) -> None:
        data = self.data_dir(comp.name)
        data.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PUSHCTL_DATA_DIR": str(data)}
        env["PUSHCTL_INVENTORY"] = self.inv.source
        if comp.role == Role.TOXIPROXY:
            argv = toxiproxy_argv(installed.toxiproxy_server, comp)
            env["LOG_LEVEL"] = "warn"
        elif comp.role == Role.REDIS:
            argv = redis_argv(installed.redis_server, comp, data)
        elif comp.role == Role.KAFKA:
            assert installed.kafka_libs is not None  # noqa: S101 - install_all installs Kafka when it is managed
            argv, extra = kafka.prepare_kafka(self.inv, comp.name, data, installed.kafka_libs)
            env.update(extra)
        elif comp.role == Role.PROMETHEUS:
            assert installed.prometheus is not None  # noqa: S101 - install_all installs it when it is managed
            assert self.inv.prometheus is not None  # noqa: S101 - the component exists only when configured
            prometheus.write_config(self.inv, self.inv.prometheus, data)
            argv = prometheus.prometheus_argv(installed.prometheus, self.inv.prometheus, data)
        else:
            argv = service_argv(comp, self.inv.source)
        log_file = self.log_path(comp.name)
        with log_file.open("ab") as out:
            out.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            out.flush()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=data,
                env=env,
                start_new_session=True,  # its own process group: down signals the whole group
            )
        starttime = None
        for _ in range(50):
            starttime = start_time(proc.pid)
            if starttime is not None:
                break
            time.sleep(0.01)
        record = {"pid": proc.pid, "starttime": starttime or 0, "started_at": time.time(), "argv": argv}
        self._pidfile(comp.name).write_text(json.dumps(record))
        self._started.append(comp.name)

    async def _wait_healthy(self, comp: Component, deadline: float) -> None:
        async def exited() -> bool:
            return comp.managed and self.alive(comp.name) is None

        async def log_tail() -> str:
            return self._log_tail(comp.name)

        await health.wait_healthy(self.inv, comp, deadline, exited=exited, log_tail=log_tail)

    def _log_tail(self, name: str, lines: int = 20) -> str:
        path = self.log_path(name)
        try:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return f"(no log at {path})"
        return f"--- last {len(tail)} lines of {path} ---\n" + "\n".join(tail)

    # ---- down ------------------------------------------------------------------------------
    async def down(self, *, purge: bool = False) -> list[str]:
        names = [c.name for c in reversed(self.components)]
        pid_dir = self.dir / "pids"
        if pid_dir.exists():  # leftovers of an older topology are ours too
            names += [p.stem for p in pid_dir.glob("*.json") if p.stem not in names]
        stopped = await self._stop(names)
        if any(not tp.managed for tp in self.inv.toxiproxy.values()):
            await fault_links.remove_links(self.inv)
        if purge and self.dir.exists():
            shutil.rmtree(self.dir)
        return stopped

    async def _stop(self, names: list[str]) -> list[str]:
        """SIGTERM every process group at once, SIGKILL what is left after the grace period."""
        live = {n: rec for n in names if (rec := self.alive(n)) is not None}
        for rec in live.values():
            _signal_group(rec.pid, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < end and any(self.alive(n) for n in live):
            _reap()
            await asyncio.sleep(0.05)
        for name, rec in live.items():
            if self.alive(name) is not None:
                self.log(f"{name} ignored SIGTERM for {STOP_GRACE_S:.0f}s: killing it")
                _signal_group(rec.pid, signal.SIGKILL)
        end = time.monotonic() + 2.0
        while time.monotonic() < end and any(self.alive(n) for n in live):
            _reap()
            await asyncio.sleep(0.05)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                self._pidfile(name).unlink()
        return list(live)

    # ---- status, logs, signals ---------------------------------------------------------------
    async def status(self) -> StackStatus:
        async def one(comp: Component) -> ComponentStatus:
            rec = self.alive(comp.name) if comp.managed else None
            running = rec is not None or not comp.managed
            ok, detail = await health.check(self.inv, comp) if running else (False, "not running")
            return ComponentStatus.of(
                comp,
                running=running,
                healthy=ok,
                detail=detail,
                pid=rec.pid if rec else None,
                uptime_s=round(time.time() - rec.started_at, 1) if rec else None,
            )

        comps = await asyncio.gather(*(one(c) for c in self.components))
        links = await fault_links.link_statuses(self.inv)
        return StackStatus(self.inv.name, self.name, str(self.dir), list(comps), links)

    def logs(self, component: str, *, follow: bool, lines: int) -> Iterator[str]:
        names = [c.name for c in self.components]
        if component not in names:
            raise UsageError(f"unknown component {component!r}; valid: {', '.join(names)}")
        path = self.log_path(component)
        if not path.exists():
            raise UsageError(f"{component} has no log yet ({path})")
        with path.open(errors="replace") as fh:
            yield from fh.readlines()[-lines:] if lines > 0 else fh.readlines()
            while follow:
                line = fh.readline()
                if line:
                    yield line
                else:
                    time.sleep(0.2)

    async def signal(self, component: str, action: str) -> str:
        comp = next((c for c in self.components if c.name == component), None)
        if comp is None:
            raise UsageError(f"unknown component {component!r}; valid: {', '.join(c.name for c in self.components)}")
        if action in ("restart", "ensure-running"):
            return await self._restart(comp, only_if_down=action == "ensure-running")
        rec = self.alive(component)
        if rec is None:
            raise UsageError(f"{component} is not running")
        sig = {"crash": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}.get(action)
        if sig is None:
            raise UsageError(f"unknown action {action!r}; valid: crash, pause, resume, restart")
        _signal_group(rec.pid, sig)
        return f"sent {sig.name} to {component} (pid {rec.pid})"

    async def _restart(self, comp: Component, *, only_if_down: bool) -> str:
        rec = self.alive(comp.name)
        if rec is not None:
            _signal_group(rec.pid, signal.SIGCONT)  # a paused process must run to be healthy or to stop
            if only_if_down:
                ok, _ = await health.check(self.inv, comp)
                if ok:
                    return f"{comp.name} already running (pid {rec.pid})"
            await self._stop([comp.name])
        installed = await asyncio.to_thread(
            install_all,
            cache_dir(),
            self.log,
            need_kafka=comp.role == Role.KAFKA,
            need_redis=comp.role == Role.REDIS,
            need_prometheus=comp.role == Role.PROMETHEUS,
        )
        await asyncio.to_thread(self._spawn, comp, installed)
        await self._wait_healthy(comp, time.monotonic() + health.HEALTH_TIMEOUT_S[comp.role])
        new = self.alive(comp.name)
        return f"started {comp.name} (pid {new.pid if new else '?'})"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _reap() -> None:
    """Collect exited children so they do not linger as zombies (when pushctl started them)."""
    with contextlib.suppress(ChildProcessError):
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
