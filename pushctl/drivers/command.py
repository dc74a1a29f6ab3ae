"""The `command` driver: each verb is a shell command template of the inventory, with its undo template.

    [driver.commands.drain]
    apply = "curl -fsS -X POST -H 'Authorization: Bearer {env:TOKEN}' https://ops.example/drain -d {body}"
    undo = "curl -fsS -X POST -H 'Authorization: Bearer {env:TOKEN}' https://ops.example/undrain/{region}"

The undo command is rendered and journaled (`RunCommand`, fsynced) before the apply command runs, so a
rollback, `pushctl recover` and `pushctl abort` run it whatever killed pushctl. A non-zero exit or a
timeout is a `CommandFailed` (exit 4) and the action rolls back. `pushctl restore` runs drain's undo.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, ClassVar

from pushctl.actions.undo import Log, UndoStep
from pushctl.contract.driverspec import VerbCommands, placeholders, render
from pushctl.contract.topology import Inventory
from pushctl.control import PlatformClient
from pushctl.drivers import StorageFault, ThrottleRequest, Verb
from pushctl.drivers.shell import require_env, run_shell
from pushctl.errors import UsageError

if TYPE_CHECKING:
    from pushctl.actions.base import ActionContext

BASELINE_POLL_S = 0.5


class RunCommand(UndoStep):
    """Undo of a `command` driver verb: its rendered undo command (secrets stay `${NAME}` references)."""

    op: ClassVar[str] = "run_command"
    verb: str
    command: str
    env: tuple[str, ...] = ()
    timeout_s: float = 30.0

    def summary(self) -> str:
        return f"run the {self.verb} undo command"

    async def run(self, inv: Inventory, api: PlatformClient, log: Log) -> str:
        what = f"the {self.verb} undo command"
        require_env(set(self.env), what)
        out = await run_shell(self.command, timeout_s=self.timeout_s, what=what)
        return f"{what} ran{': ' + out[-200:] if out else ''}"


def env_of(*templates: str) -> set[str]:
    names: set[str] = set()
    for t in templates:
        names |= placeholders(t)[1]
    return names


class CommandDriver:
    """Makes each change with the inventory's command templates (docs/drivers.md)."""

    kind = "command"

    def __init__(self, inv: Inventory) -> None:
        self.inv = inv
        self.spec = inv.driver

    # ---- refusing what it cannot do --------------------------------------------------------------
    def require(self, verb: Verb, what: str) -> None:
        if verb == "journal":
            return
        where = self.inv.source or self.inv.name
        if verb == "reference":
            raise UsageError(
                f"`{what}` works through the reference stack's own mechanics (Toxiproxy links, processes, "
                f"broker limits), which the command driver of {where} does not drive",
                hint="run it against an inventory with the reference driver, or use a verb the commands define",
            )
        name = "drain" if verb == "restore" else verb
        cmds = self.spec.commands.get(name)
        if cmds is None:
            defined = ", ".join(sorted(self.spec.commands)) or "none"
            raise UsageError(
                f"the command driver of {where} defines no {name} command, so `{what}` cannot run (defined: {defined})",
                hint=f"add [driver.commands.{name}] with apply and undo templates (docs/drivers.md)",
            )
        require_env(env_of(cmds.apply, cmds.undo), f"the {name} command")
        if self.spec.baseline is not None:
            require_env(env_of(self.spec.baseline.command), "the baseline command")

    # ---- the verbs ---------------------------------------------------------------------------------
    def _values(self, verb: str, **values: Any) -> dict[str, Any]:
        return {"verb": verb, "target": self.inv.name, **values}

    def _timeout(self, cmds: VerbCommands) -> float:
        return cmds.timeout_s or self.spec.timeout_s

    async def _change(self, ctx: ActionContext, verb: Verb, values: dict[str, Any]) -> str:
        """Journal the rendered undo command, then run the apply command."""
        self.require(verb, verb)
        cmds = self.spec.commands[verb]
        values = self._values(verb, **values)
        ctx.journal.will_undo(
            RunCommand(
                verb=verb,
                command=render(cmds.undo, values),
                env=tuple(sorted(env_of(cmds.undo))),
                timeout_s=self._timeout(cmds),
            )
        )
        out = await run_shell(render(cmds.apply, values), timeout_s=self._timeout(cmds), what=f"the {verb} command")
        ctx.journal.event(f"{verb} command ran", output=out[-500:])
        return f"the {verb} command ran{': ' + out[-200:] if out else ''}"

    async def drain(self, ctx: ActionContext, region: str, spread_s: float) -> str:
        body = {"region": region, "spread_s": spread_s}
        return await self._change(ctx, "drain", {"region": region, "spread_s": spread_s, "body": body})

    async def restore(self, ctx: ActionContext, region: str) -> str:
        """Drain's undo command, run as a change of its own (restore is the undo of a drain: nothing to journal)."""
        self.require("restore", "restore")
        cmds = self.spec.commands["drain"]
        out = await run_shell(
            render(cmds.undo, self._values("drain", region=region)),
            timeout_s=self._timeout(cmds),
            what="the drain undo command",
        )
        ctx.journal.event("drain undo command ran", output=out[-500:])
        return f"the drain undo command ran for {region}"

    async def switch(self, ctx: ActionContext, weights: dict[str, float]) -> str:
        whole = [idc for idc, w in weights.items() if w > 0]
        values = {
            "weights": ",".join(f"{idc}={w:g}" for idc, w in weights.items()),
            "to": whole[0] if len(whole) == 1 else "",
            "body": {"weights": weights},
        }
        return await self._change(ctx, "switch", values)

    async def throttle(self, ctx: ActionContext, want: ThrottleRequest) -> str:
        body: dict[str, Any] = {"mode": want.mode, "threshold": want.threshold}
        if want.limit is not None:
            body["limit_per_s"] = want.limit
        if want.safe_load is not None:
            body["safe_load_per_s"] = want.safe_load
        values = {
            "mode": want.mode,
            "limit": want.limit,
            "safe_load": want.safe_load,
            "threshold": want.threshold,
            "body": body,
        }
        return await self._change(ctx, "throttle", values)

    async def storage_fault(self, ctx: ActionContext, fault: StorageFault) -> str:
        body = {"mode": fault.mode, "service": fault.service, "latency_ms": fault.latency_ms}
        values = {"mode": fault.mode, "service": fault.service, "latency_ms": fault.latency_ms, "body": body}
        return await self._change(ctx, "storage_fault", values)

    # ---- the baseline --------------------------------------------------------------------------------
    async def snapshot(self) -> str | None:
        base = self.spec.baseline
        if base is None:
            return None
        command = render(base.command, self._values("baseline"))
        return await run_shell(command, timeout_s=base.timeout_s or self.spec.timeout_s, what="the baseline command")

    async def wait_baseline(self, before: str) -> tuple[float | None, str]:
        base = self.spec.baseline
        if base is None:
            return 0.0, before
        started = time.monotonic()
        now = ""
        while True:
            now = await self.snapshot() or ""
            if now == before:
                return time.monotonic() - started, now
            if time.monotonic() - started >= base.settle_s:
                return None, now
            await asyncio.sleep(BASELINE_POLL_S)
