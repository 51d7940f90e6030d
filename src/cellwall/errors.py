"""The cellwall exception tree and the diagnostics that errors carry.

::

    CellwallError                 every error that cellwall raises on purpose
    ├── UsageError                bad arguments or options (exit code 2)
    ├── InputError                bad input that stops a command (exit code 2)
    │   ├── FormatError           bytes that no registered format reads, or the wrong format
    │   └── InventoryError        a workload or label-convention document that is wrong
    ├── WorkspaceError            the workspace cannot be used (exit code 2)
    │   └── LockedError           another writer holds the workspace's writer lock
    └── EmptyWindowError          a time window holds no flows (exit code 2)

Foreign exceptions (OSError, yaml, DuckDB, Arrow) are translated into this tree at the
boundary where they enter cellwall, so that callers only ever catch ``CellwallError``.
A ``Diagnostic`` says where (file, line, column), what (a stable code and a message) and
how to fix it (a hint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CellwallError",
    "Diagnostic",
    "EmptyWindowError",
    "FormatError",
    "InputError",
    "InventoryError",
    "LockedError",
    "UsageError",
    "WorkspaceError",
]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One finding about an input: where, what, and how to fix it."""

    file: str | None
    line: int | None
    col: int | None
    code: str
    message: str
    hint: str = ""
    severity: str = "error"

    def location(self) -> str:
        parts = [self.file or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.col is not None:
                parts.append(str(self.col))
        return ":".join(parts)

    def __str__(self) -> str:
        text = f"{self.location()}: {self.severity} {self.code}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "code": self.code,
            "message": self.message,
            "hint": self.hint,
            "severity": self.severity,
        }


@dataclass
class CellwallError(Exception):
    """Base of every error that cellwall raises on purpose."""

    message: str
    hint: str = ""
    diagnostics: list[Diagnostic] = field(default_factory=list)
    exit_code: int = 2

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        lines = [self.message]
        lines.extend(f"  {d}" for d in self.diagnostics)
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class UsageError(CellwallError):
    """Bad arguments or options."""


class InputError(CellwallError):
    """Bad input that stops a command."""


class FormatError(InputError):
    """Bytes that no registered format reads, or that are not of the format asked for."""


class InventoryError(InputError):
    """A workload or label-convention document that is wrong."""


class WorkspaceError(CellwallError):
    """The workspace cannot be opened or used."""


class LockedError(WorkspaceError):
    """Another process holds the workspace's writer lock."""


class EmptyWindowError(CellwallError):
    """A time window holds no flows."""
