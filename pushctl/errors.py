"""One exception hierarchy, each class carrying its exit code and a user-facing message.

    PushctlError (exit 3)
    ├── InternalError (exit 3)              a bug in pushctl: any exception that is not one of these
    ├── UsageError (exit 2)                 bad input: flags, files, names
    │   └── InventoryError (exit 2)         an invalid inventory / topology file
    ├── SloBreached (exit 1)                the verifier measured a breach
    ├── Inconclusive (exit 8)               only timing checks failed while the rig could not keep up,
    │                                       or Prometheus had no data to judge an SLO by
    ├── TargetUnreachable (exit 4)          a component or API did not answer
    │   ├── ToxiproxyError (exit 4)         Toxiproxy answered with an error
    │   └── CommandFailed (exit 4)          a `command` driver's command failed or timed out
    ├── ComponentFailed (exit 5)            a component did not start / became unhealthy
    ├── MissingToolchain (exit 2)           go, java, mvn, apt-get ... not found
    ├── LockHeld (exit 6)                   another action holds the target's lock
    ├── RollbackFailed (exit 7)             the platform could not be restored
    └── Interrupted (exit 130)              Ctrl-C / SIGTERM, after rolling back

`retriable` says whether retrying the same call may succeed. The root, `UsageError` and
`InventoryError` are defined in `pushctl.contract.errors` (the stack raises them too).
"""

from __future__ import annotations

from pushctl.contract.errors import InventoryError, PushctlError, UsageError

__all__ = [
    "EXIT_CODES",
    "CommandFailed",
    "ComponentFailed",
    "Inconclusive",
    "InternalError",
    "Interrupted",
    "InventoryError",
    "LockHeld",
    "MissingToolchain",
    "PushctlError",
    "RollbackFailed",
    "SloBreached",
    "TargetUnreachable",
    "ToxiproxyError",
    "UsageError",
    "error_for_exit",
]


class InternalError(PushctlError):
    """A bug in pushctl (an unexpected exception), never a verdict on the platform."""

    exit_code = 3


class MissingToolchain(PushctlError):
    """A tool needed to install a real component is not on this machine."""

    exit_code = 2


class SloBreached(PushctlError):
    """The delivery SLO did not hold."""

    exit_code = 1


class Inconclusive(PushctlError):
    """Only timing checks failed, while the test rig itself could not keep up: no verdict.

    Also `slo check --prometheus` when the SLI has no data (no series, or NaN over no traffic).

    Never raised when anything was lost, duplicated or otherwise broken: that is `SloBreached`.
    """

    exit_code = 8


class TargetUnreachable(PushctlError):
    """A component or control API did not answer in time."""

    exit_code = 4
    retriable = True


class ToxiproxyError(TargetUnreachable):
    """Toxiproxy refused a call; carries its HTTP status."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.retriable = status is None or status >= 500


class CommandFailed(TargetUnreachable):
    """A command of the inventory's `command` driver exited non-zero or timed out (the target refused)."""

    retriable = False


class ComponentFailed(PushctlError):
    """A component of the stack failed to start or stay healthy."""

    exit_code = 5


class LockHeld(PushctlError):
    """Another pushctl action holds the lock on this target."""

    exit_code = 6


class RollbackFailed(PushctlError):
    """Rolling back left the platform away from its baseline."""

    exit_code = 7


class Interrupted(PushctlError):
    """Ctrl-C or SIGTERM stopped the run (after rolling back)."""

    exit_code = 130


# The exit-code table: one class per code (the README's table and `pushctl --help` list the same).
EXIT_CODES: dict[int, type[PushctlError]] = {
    cls.exit_code: cls
    for cls in (
        SloBreached,
        UsageError,
        InternalError,
        TargetUnreachable,
        ComponentFailed,
        LockHeld,
        RollbackFailed,
        Inconclusive,
        Interrupted,
    )
}


def error_for_exit(code: int, message: str, *, hint: str | None = None) -> PushctlError:
    """The error of the class that carries `code`, for a result that sums up several runs whose
    worst exit code decides (an experiment library, a set of journals)."""
    return EXIT_CODES.get(code, InternalError)(message, hint=hint)
