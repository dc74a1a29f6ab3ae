"""The root of pushctl's exception hierarchy, and the errors the contract itself raises.

They live here, not in `pushctl.errors`, because the reference stack's services load inventories
too (an invalid one is an `InventoryError` there as well), and the contract is the only part of
pushctl they may import. `pushctl.errors` re-exports them beside the rest of the hierarchy.
"""

from __future__ import annotations


class PushctlError(Exception):
    """Root of every error pushctl shows to a user."""

    exit_code: int = 3
    retriable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message} ({self.hint})"


class UsageError(PushctlError):
    """The user asked for something that cannot be done as asked."""

    exit_code = 2


class InventoryError(UsageError):
    """The inventory file is invalid; the message names the file and the key."""
