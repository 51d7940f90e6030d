"""YAML and JSON documents as small trees that remember their line and column.

Every loader reads documents through :func:`read_documents`, which splits a multi-document
stream at its ``---`` markers and composes each document on its own (``yaml.compose``), so a
syntax error in one document does not lose the others. Each value becomes an :class:`N`
holding a dict, a list, a string (scalars keep their source text: ``tier: 1`` is ``"1"``) or
None (a YAML null), with its 1-based line and column. JSON is read as YAML; a JSON file that
PyYAML cannot read falls back to :mod:`json` and loses positions below the file.

Shape problems raise :class:`ShapeError`, which a loader turns into one diagnostic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from cellwall.errors import Diagnostic

__all__ = ["N", "ShapeError", "diag", "read_documents"]

_NULL = "tag:yaml.org,2002:null"
_DOC_MARK = re.compile(r"^---(?:[ \t]|$)")
_SURROGATE = re.compile("[\ud800-\udfff]")
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(slots=True, eq=False)
class N:
    """One value of a document and where it starts (1-based line and column, if known)."""

    value: dict[str, N] | list[N] | str | None
    line: int | None = None
    col: int | None = None
    keys: dict[str, N] | None = None  # a mapping's keys, for their positions

    def map(self, what: str) -> dict[str, N]:
        if not isinstance(self.value, dict):
            raise ShapeError(self, "bad-type", f"{what} must be a mapping", _found(self))
        return self.value

    def seq(self, what: str) -> list[N]:
        if not isinstance(self.value, list):
            raise ShapeError(self, "bad-type", f"{what} must be a list", _found(self))
        return self.value

    def text(self, what: str) -> str:
        if not isinstance(self.value, str):
            raise ShapeError(self, "bad-type", f"{what} must be a single value", _found(self))
        return self.value

    def opt_text(self, what: str) -> str | None:
        """The text, or None for a null or an empty string."""
        return None if self.value is None or self.value == "" else self.text(what)

    def key(self, key: str) -> N:
        """Where ``key`` of this mapping is written (its value's place when unknown)."""
        found = self.keys.get(key) if self.keys else None
        return found or self.get(key) or self

    def get(self, key: str) -> N | None:
        return self.value.get(key) if isinstance(self.value, dict) else None

    def at(self, *path: str) -> N | None:
        """The value at a path of keys, or None when a step is missing or not a mapping."""
        node: N | None = self
        for key in path:
            node = node.get(key) if node is not None else None
        return node

    def plain(self) -> Any:
        """The value as plain Python (dicts, lists, strings and None)."""
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value


def _found(n: N) -> str:
    if isinstance(n.value, dict):
        return "found a mapping here"
    if isinstance(n.value, list):
        return "found a list here"
    return "found a single value here" if n.value is not None else "found nothing here"


class ShapeError(Exception):
    """A document that does not have the shape a loader expects."""

    def __init__(self, node: N | None, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.node = node
        self.code = code
        self.message = message
        self.hint = hint

    def diagnostic(self, file: str, fallback: N | None = None) -> Diagnostic:
        node = self.node if self.node is not None and self.node.line is not None else fallback
        return diag(file, node, self.code, self.message, self.hint)


def diag(
    file: str, node: N | None, code: str, message: str, hint: str = "", severity: str = "error"
) -> Diagnostic:
    line = node.line if node is not None else None
    col = node.col if node is not None else None
    return Diagnostic(file, line, col, code, message, hint, severity)


def _chunks(text: str) -> Iterator[tuple[int, str]]:
    """(0-based first line, text) of each document of a stream, split at ``---`` lines."""
    lines = text.splitlines(keepends=True)
    start = 0
    for i, line in enumerate(lines):
        if i > start and _DOC_MARK.match(line):
            head = lines[start:i]
            if not all(s.startswith("%") or not s.strip() or s.startswith("#") for s in head):
                yield start, "".join(head)
                start = i
    yield start, "".join(lines[start:])


def _convert(node: yaml.Node, offset: int, memo: dict[int, N], active: set[int]) -> N:
    key = id(node)
    if key in memo:
        return memo[key]
    pos = N(None, node.start_mark.line + offset + 1, node.start_mark.column + 1)
    if key in active:
        raise ShapeError(pos, "yaml-syntax", "a YAML alias refers to itself", "remove the cycle")
    active.add(key)
    if isinstance(node, yaml.ScalarNode):
        pos.value = None if node.tag == _NULL else _text(str(node.value))
    elif isinstance(node, yaml.SequenceNode):
        pos.value = [_convert(c, offset, memo, active) for c in node.value]
    elif isinstance(node, yaml.MappingNode):
        out: dict[str, N] = {}
        pos.keys = {}
        for k, v in node.value:
            kn = _convert(k, offset, memo, active)
            if not isinstance(kn.value, str):
                raise ShapeError(kn, "bad-type", "a mapping key must be a single value")
            if kn.value in out:
                raise ShapeError(kn, "duplicate-key", f"key `{kn.value}` is given twice")
            out[kn.value] = _convert(v, offset, memo, active)
            pos.keys[kn.value] = kn
        pos.value = out
    active.discard(key)
    memo[key] = pos
    return pos


def _text(value: str) -> str:
    """Join UTF-16 surrogate pairs (JSON escapes of characters beyond the BMP)."""
    if _SURROGATE.search(value) is None:
        return value
    return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _from_plain(value: Any) -> N:
    if isinstance(value, dict):
        return N({str(k): _from_plain(v) for k, v in value.items()})
    if isinstance(value, list):
        return N([_from_plain(v) for v in value])
    if value is None:
        return N(None)
    if isinstance(value, bool):
        return N("true" if value else "false")
    return N(str(value))


def _compose(text: str, offset: int, loader: Any = _Loader) -> N | None:
    node = yaml.compose(text, Loader=loader)
    return None if node is None else _convert(node, offset, {}, set())


def _yaml_error(file: str, exc: yaml.YAMLError, offset: int, code: str) -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + offset + 1 if mark is not None else offset + 1
    col = mark.column + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return Diagnostic(
        file, line, col, code, f"cannot read: {problem}", "fix the syntax at this place"
    )


def read_documents(text: str, file: str, *, is_json: bool = False) -> Iterator[N | Diagnostic]:
    """Each document of a YAML or JSON stream as an :class:`N`, or a diagnostic for it."""
    if is_json or text.lstrip()[:1] in ("{", "["):
        yield from _read_json(text, file)
        return
    for offset, chunk in _chunks(text):
        try:
            doc = _compose(chunk, offset)
        except yaml.YAMLError as exc:
            yield _yaml_error(file, exc, offset, "yaml-syntax")
            continue
        except ShapeError as exc:
            yield exc.diagnostic(file)
            continue
        except RecursionError:
            yield Diagnostic(file, offset + 1, None, "yaml-syntax", "the document nests too deep")
            continue
        if doc is not None and doc.value is not None:  # an empty document holds nothing
            yield doc


def _read_json(text: str, file: str) -> Iterator[N | Diagnostic]:
    # JSON forbids raw tabs inside strings, so tabs are whitespace that YAML would refuse.
    # libyaml refuses escaped surrogate pairs ("\ud83d\ude00"); the Python reader takes them.
    doc = None
    for loader in dict.fromkeys((_Loader, yaml.SafeLoader)):
        try:
            doc = _compose(text.replace("\t", " "), 0, loader)
            break
        except ShapeError as exc:
            yield exc.diagnostic(file)
            return
        except (yaml.YAMLError, RecursionError):
            continue
    if doc is not None:
        yield doc
        return
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        yield Diagnostic(
            file, exc.lineno, exc.colno, "json-syntax", f"cannot read: {exc.msg}", "fix the JSON"
        )
        return
    except RecursionError:
        yield Diagnostic(file, 1, None, "json-syntax", "the document nests too deep")
        return
    yield _from_plain(value)
