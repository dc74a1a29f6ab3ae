"""The life cycle every change to a target goes through, whoever makes it: one action (`runner`) or
an experiment's method (`pushctl.experiments.run`).

    async with ChangeLifecycle(inv, "drain --region south", log=print) as life:
        try:
            with life.cancellable():               # the first Ctrl-C / SIGTERM cancels what is inside
                journal = life.begin(action)       # one journal per change, fsynced before it is made
                await action.apply(ctx)            # ctx.journal.will_undo(step) before each mutation
        finally:
            outcomes = await life.rollback(journal)  # never cancelled: runs to completion
    life.raise_for(outcomes, journal)              # RollbackFailed (7), else Interrupted (130)

Entering takes the target's lock (`LockHeld`, exit 6, while another live pushctl holds it) and
refuses while an earlier run left open journal entries (`LockHeld`: run `pushctl recover` first).
A first SIGINT or SIGTERM cancels the work inside `cancellable()` and is remembered in
`interrupted`; further signals only say the rollback is in progress. Outside `cancellable()` (the
rollback, reading the results) a signal cancels nothing: it is remembered, and the caller ends
with `Interrupted` once the platform is back. Leaving releases the lock and the signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from types import TracebackType

import httpx

from pushctl.actions.base import Action
from pushctl.actions.journal import Journal, open_entries
from pushctl.actions.lock import TargetLock
from pushctl.actions.undo import Log, UndoOutcome, failures, run_undo
from pushctl.contract.topology import Inventory
from pushctl.errors import Interrupted, LockHeld, RollbackFailed

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ChangeLifecycle:
    """Owns a target while changes are made to it: lock, signals, journals, rollback, statuses."""

    def __init__(
        self,
        inv: Inventory,
        what: str,
        *,
        log: Log,
        on_interrupt: str = "rolling back before exit ...",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.inv = inv
        self.log = log
        self.on_interrupt = on_interrupt  # said after the first signal's name
        self.transport = transport  # replaces the network under the undo steps' client (tests)
        self.lock = TargetLock(inv, what)
        self.interrupted: str | None = None  # the first signal's name
        self.journals: list[Journal] = []
        self._task: asyncio.Task[object] | None = None
        self._working = False
        self._handlers: list[signal.Signals] = []

    # ---- owning the target -----------------------------------------------------------------------
    async def __aenter__(self) -> ChangeLifecycle:
        self._task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            with contextlib.suppress(RuntimeError, ValueError):  # not the main thread: no signals to handle
                loop.add_signal_handler(sig, self._on_signal, sig.name)
                self._handlers.append(sig)
        try:
            self.lock.acquire()
            self._refuse_leftovers()
        except BaseException:
            self._leave()
            raise
        return self

    def _refuse_leftovers(self) -> None:
        leftovers = open_entries(self.inv)
        if leftovers:
            raise LockHeld(
                f"an earlier action ({leftovers[-1].action}, journal {leftovers[-1].id}) may have left changes behind",
                hint="run `pushctl recover` first",
            )

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._leave()

    def _leave(self) -> None:
        self.lock.release()
        loop = asyncio.get_running_loop()
        for sig in self._handlers:
            loop.remove_signal_handler(sig)
        self._handlers.clear()

    # ---- signals ---------------------------------------------------------------------------------
    def _on_signal(self, name: str) -> None:
        if self.interrupted is not None:
            self.log(f"{name}: rollback in progress, please wait")
            return
        self.interrupted = name
        self.log(f"{name}: {self.on_interrupt}")
        if self._working and self._task is not None:
            self._task.cancel()

    @contextlib.contextmanager
    def cancellable(self) -> Iterator[None]:
        """The work a first signal cancels; its cancellation ends here, so what follows (the rollback) runs.

        A cancellation that no signal of ours asked for (a timeout around the whole run) goes on.
        """
        self._working = True
        if self.interrupted is not None and self._task is not None:
            self._task.cancel()  # a signal came before the work began: do none of it
        try:
            yield
        except asyncio.CancelledError:
            if self.interrupted is None or self._task is None:
                raise
            self._task.uncancel()
        finally:
            self._working = False

    # ---- journals and rollback -------------------------------------------------------------------
    def begin(self, action: Action) -> Journal:
        """A durable journal of `action`'s intent, written before any of its changes."""
        journal = Journal.begin(self.inv, action.name, action.params(), [s.describe() for s in action.plan()])
        self.journals.append(journal)
        return journal

    async def rollback(self, journal: Journal) -> list[UndoOutcome]:
        """Run the journal's undo steps (newest first, every one tried) and record how that went."""
        outcomes = await run_undo(self.inv, journal.entry.undo, log=self.log, transport=self.transport)
        journal.set_status("rolled-back" if all(o.ok for o in outcomes) else "rollback-failed")
        return outcomes

    @staticmethod
    def keep(journal: Journal, *, drill: bool) -> None:
        """Leave the change applied: a drill is held (undone later by `recover --all` or a heal);
        anything else (restore, heal) is itself an undo, so it is complete."""
        journal.set_status("held" if drill else "completed")

    def raise_for(self, outcomes: Sequence[UndoOutcome], journal: Journal | None) -> None:
        """End the run as its rollback and the signals decide: RollbackFailed, else Interrupted, else return."""
        failed = failures(outcomes)
        if failed:
            raise RollbackFailed(
                "rollback failed: " + "; ".join(failed),
                hint=f"fix the cause, then run `pushctl recover` (journal {journal.entry.path if journal else '?'})",
            )
        if self.interrupted is not None:
            raise Interrupted(f"interrupted by {self.interrupted}; rolled back ({len(outcomes)} undo steps)")
