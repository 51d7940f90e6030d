"""Reading the fields of policy documents: the collector of findings and scalar fields.

A :class:`Ctx` belongs to one document. Readers record findings on it and go on, so that one
load reports every problem at once; a document with an error is left out by the loader.
Besides findings, a context collects *references* (label keys and values, IP list names)
that can only be checked once every document is read.

Unknown fields are errors, not warnings: a misspelt ``exept`` or ``from_outside_scop`` would
silently change what a policy allows.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import TypeVar

from cellwall.errors import Diagnostic
from cellwall.inventory.nodes import N, ShapeError, diag

__all__ = ["Ctx", "IPListRef", "LabelRef", "check_id"]

T = TypeVar("T")
_ID = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9_])?")
_TRUE = ("true", "yes", "on")
_FALSE = ("false", "no", "off")


ID_HINT = "use letters, digits, '.', '_' and '-', starting with a letter or digit (at most 128)"


def check_id(text: str, what: str) -> str:
    """``text`` when it is a usable name or rule id; ValueError saying why otherwise."""
    if not _ID.fullmatch(text):
        raise ValueError(f"{what} {text!r} is not a valid name")
    return text


@dataclass(frozen=True, slots=True)
class LabelRef:
    """A label key (and values) that a selector, ``same`` or ``apps`` names.

    ``key_node`` None means that the key is implied (``apps`` names values of ``app``)."""

    key: str
    key_node: N | None
    values: tuple[tuple[str, N], ...] = ()


@dataclass(frozen=True, slots=True)
class IPListRef:
    name: str
    node: N


@dataclass
class Ctx:
    """Findings and references of one document."""

    file: str
    diags: list[Diagnostic] = field(default_factory=list)
    labels: list[LabelRef] = field(default_factory=list)
    iplists: list[IPListRef] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diags)

    def errors_since(self, start: int) -> bool:
        """True when an error was recorded after the first ``start`` findings."""
        return any(d.severity == "error" for d in self.diags[start:])

    def error(self, node: N | None, code: str, message: str, hint: str = "") -> None:
        self.diags.append(diag(self.file, node, code, message, hint))

    def warn(self, node: N | None, code: str, message: str, hint: str = "") -> None:
        self.diags.append(diag(self.file, node, code, message, hint, "warning"))

    def guard(self, node: N, code: str, fn: Callable[[], T], hint: str = "") -> T | None:
        """``fn()``; a ShapeError or ValueError becomes a finding at ``node`` and None."""
        try:
            return fn()
        except ShapeError as exc:
            self.diags.append(exc.diagnostic(self.file, node))
        except ValueError as exc:
            self.error(node, code, str(exc), hint)
        return None

    def fields(self, node: N, what: str, allowed: Iterable[str]) -> dict[str, N] | None:
        """The mapping at ``node``; an error for each key outside ``allowed``."""
        mapping = self.guard(node, "bad-type", lambda: node.map(what))
        if mapping is None:
            return None
        known = list(allowed)
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"known: {', '.join(known)}"
                self.error(node.key(key), "unknown-field", f"unknown field `{key}` in {what}", hint)
        return mapping

    def require(self, mapping: dict[str, N], key: str, where: N, what: str, hint: str) -> N | None:
        """``mapping[key]`` when given and not null; else a ``missing-field`` error."""
        node = mapping.get(key)
        if node is None or node.value is None:
            self.error(where, "missing-field", f"{what} needs `{key}`", hint)
            return None
        return node

    def text(self, node: N | None, what: str) -> str | None:
        """A single value, or None (with an error when the node holds something else)."""
        if node is None or node.value is None:
            return None
        return self.guard(node, "bad-type", lambda: node.text(what))

    def name(self, node: N | None, what: str) -> str | None:
        """A name (``check_id``); None with an error when it is not one."""
        text = self.text(node, what)
        if text is None or node is None:
            return None
        return self.guard(node, "bad-name", lambda: check_id(text, what), ID_HINT)

    def texts(self, node: N | None, what: str) -> list[tuple[str, N]]:
        """A list of single values (one value alone counts as a list of one)."""
        if node is None or node.value is None:
            return []
        items = (
            [node]
            if isinstance(node.value, str)
            else self.guard(node, "bad-type", lambda: node.seq(what))
        )
        out = []
        for item in items or []:
            text = self.text(item, f"each entry of {what}")
            if text is not None:
                out.append((text, item))
        return out

    def flag(self, node: N | None, what: str) -> bool:
        """A boolean; absent is False."""
        text = self.text(node, what)
        if text is None or node is None:
            return False
        if text.lower() in _TRUE:
            return True
        if text.lower() not in _FALSE:
            self.error(node, "bad-type", f"{what} must be true or false", f"found {text!r}")
        return False

    def when(self, node: N | None, what: str) -> date | None:
        text = self.text(node, what)
        if text is None or node is None:
            return None
        try:
            return date.fromisoformat(text.strip())
        except ValueError:
            self.error(node, "bad-date", f"{what} {text!r} is not a date", "write YYYY-MM-DD")
            return None

    def count(self, node: N | None, what: str) -> int | None:
        text = self.text(node, what)
        if text is None or node is None:
            return None
        digits = text.strip()
        if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
            self.error(node, "bad-type", f"{what} must be a whole number", "write 1 or more")
            return None
        return int(digits)
