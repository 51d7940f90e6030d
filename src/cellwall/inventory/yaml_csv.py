"""Workloads and label conventions written as cellwall YAML documents or as CSV.

Both forms mean the same (CONTRACTS.md, Inventory)::

    apiVersion: cellwall/v1
    kind: Workload
    metadata: {name: pay-db-1, owner: team-payments}
    spec:
      addresses: [10.1.3.3, {ip: 10.1.9.7, from: 2026-11-01T00:00:00Z, until: ...}]
      labels: {app: payments, role: db}

    name,addresses,owner,app,role
    pay-db-1,10.1.3.3 10.1.9.7@2026-11-01T00:00:00Z..2026-11-03T12:00:00Z,team-payments,...

A workload with any error is left out (so that a half-read workload never widens or narrows
a policy); the others load. Unknown fields are warnings.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from cellwall.errors import Diagnostic
from cellwall.inventory.nodes import N, ShapeError, diag
from cellwall.model.inventory import AddressLease, Origin, Workload, check_workload_name
from cellwall.model.labels import LabelConvention, Labels, check_label_key, check_label_value

__all__ = [
    "CSV_HEADER",
    "convention_from_doc",
    "load_csv",
    "make_lease",
    "parse_address",
    "parse_time",
    "workload_from_doc",
]

CSV_HEADER = ("name", "addresses", "owner")
T = TypeVar("T")


def parse_time(text: str) -> datetime:
    """An ISO 8601 time in UTC; a time without an offset is taken as UTC."""
    try:
        ts = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2026-11-01T00:00:00Z") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def node_time(node: N | None) -> datetime | None:
    """The time a document node holds, None when absent; a ShapeError when it is not a time."""
    text = node.opt_text("a time") if node is not None else None
    try:
        return parse_time(text) if text else None
    except ValueError as exc:
        raise ShapeError(node, "bad-time", str(exc)) from None


def make_lease(ip: str, start: str | None, until: str | None) -> AddressLease:
    """A lease from text; an empty or missing time is unbounded on that side."""
    if "/" in ip:
        raise ValueError(f"{ip!r} is a network; list single addresses (use an IPList for ranges)")
    return AddressLease(
        ip.strip(),
        parse_time(start) if start and start.strip() else None,
        parse_time(until) if until and until.strip() else None,
    )


def parse_address(text: str) -> AddressLease:
    """``ip``, or ``ip@FROM..UNTIL`` where FROM or UNTIL may be left empty (unbounded)."""
    ip, at, span = text.strip().partition("@")
    if not at:
        return make_lease(ip, None, None)
    start, dots, until = span.partition("..")
    if not dots:
        raise ValueError(f"{text!r}: write the interval as ip@FROM..UNTIL")
    return make_lease(ip, start, until)


class _Collect:
    """Diagnostics of one document or row; ``ok`` is False once an error was recorded."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.diags: list[Diagnostic] = []

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diags)

    def add(self, node: N | None, code: str, msg: str, hint: str = "", sev: str = "error") -> None:
        self.diags.append(diag(self.file, node, code, msg, hint, sev))

    def guard(self, node: N, code: str, fn: Callable[[], T], hint: str = "") -> T | None:
        try:
            return fn()
        except ShapeError as exc:
            self.diags.append(exc.diagnostic(self.file, node))
        except ValueError as exc:
            self.add(node, code, str(exc), hint)
        return None

    def fields(self, node: N, what: str, allowed: Iterable[str]) -> dict[str, N]:
        """The mapping at ``node``, warning about keys outside ``allowed``."""
        mapping = node.map(what)
        known = list(allowed)
        for key in mapping:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"known: {', '.join(known)}"
                msg = f"unknown field `{key}` in {what}; it is ignored"
                self.add(node.key(key), "unknown-field", msg, hint, "warning")
        return mapping


def _label_value(key: str, node: N) -> str | None:
    text = node.opt_text(f"label `{key}`")
    return None if text is None else check_label_value(key, text)


def _labels(c: _Collect, node: N | None) -> Labels:
    if node is None or node.value is None:
        return Labels()
    mapping = c.guard(node, "bad-type", lambda: node.map("spec.labels")) or {}
    pairs: dict[str, str] = {}
    for key, vnode in mapping.items():
        if c.guard(node.key(key), "bad-label", partial(check_label_key, key)) is None:
            continue
        if (value := c.guard(vnode, "bad-label", partial(_label_value, key, vnode))) is not None:
            pairs[key] = value
    return Labels.of(pairs)


def _address(c: _Collect, node: N) -> AddressLease | None:
    if not isinstance(node.value, dict):
        return c.guard(node, "bad-address", lambda: parse_address(node.text("an address")))
    f = c.fields(node, "an address", ("ip", "from", "until"))
    ip, start, until = f.get("ip"), f.get("from"), f.get("until")
    if ip is None:
        c.add(node, "missing-field", "an address needs `ip`", "write {ip: 10.0.0.1}")
        return None
    return c.guard(
        node,
        "bad-address",
        lambda: make_lease(
            ip.text("ip"),
            start.opt_text("from") if start else None,
            until.opt_text("until") if until else None,
        ),
    )


def workload_from_doc(doc: N, file: str) -> tuple[Workload | None, list[Diagnostic]]:
    """One ``kind: Workload`` document as a workload (None when it has an error)."""
    c = _Collect(file)
    top = c.fields(doc, "the document", ("apiVersion", "kind", "metadata", "spec"))
    meta, spec = top.get("metadata"), top.get("spec")
    if meta is None:
        c.add(doc, "missing-field", "a Workload needs `metadata`", "add metadata: {name: NAME}")
        return None, c.diags
    m = c.guard(meta, "bad-type", lambda: c.fields(meta, "metadata", ("name", "owner"))) or {}
    name = owner = None
    if (name_node := m.get("name")) is None:
        c.add(meta, "missing-field", "a Workload needs `metadata.name`", "add name: NAME")
    else:
        name = c.guard(name_node, "bad-name", lambda: check_workload_name(name_node.text("name")))
    if (owner_node := m.get("owner")) is not None and owner_node.value not in (None, ""):
        owner = c.guard(
            owner_node, "bad-name", lambda: check_workload_name(owner_node.text("owner"))
        )
    s: dict[str, N] = {}
    if spec is not None and spec.value is not None:
        s = c.guard(spec, "bad-type", lambda: c.fields(spec, "spec", ("addresses", "labels"))) or {}
    labels = _labels(c, s.get("labels"))
    leases: list[AddressLease] = []
    addr = s.get("addresses")
    if addr is not None and addr.value is not None:
        for item in c.guard(addr, "bad-type", lambda: addr.seq("spec.addresses")) or []:
            lease = _address(c, item)
            if lease is not None:
                leases.append(lease)
    if not c.ok or name is None:
        return None, c.diags
    origin = Origin(file, doc.line, doc.col)
    return Workload(name, owner or None, labels, tuple(leases), origin, "workload"), c.diags


def convention_from_doc(doc: N, file: str) -> tuple[LabelConvention | None, list[Diagnostic]]:
    """One ``kind: LabelConvention`` document (None when it has an error)."""
    c = _Collect(file)
    top = c.fields(doc, "the document", ("apiVersion", "kind", "metadata", "spec"))
    spec = top.get("spec")
    if spec is None:
        c.add(doc, "missing-field", "a LabelConvention needs `spec`", "add spec: {required: [...]}")
        return None, c.diags
    parts = ("required", "values", "aliases")
    s = c.guard(spec, "bad-type", lambda: c.fields(spec, "spec", parts)) or {}

    def texts(node: N, what: str) -> list[str]:
        return [x.text(what) for x in node.seq(what)]

    def mapping(what: str, each: Callable[[str, N], T]) -> dict[str, T]:
        node = s.get(what)
        if node is None:
            return {}
        out: dict[str, T] = {}
        for key, vn in (c.guard(node, "bad-type", lambda: node.map(what)) or {}).items():
            value = c.guard(vn, "bad-type", partial(each, key, vn))
            if value is not None:
                out[key] = value
        return out

    req = s.get("required")
    required = (c.guard(req, "bad-type", lambda: texts(req, "required")) if req else None) or []
    values = mapping("values", lambda k, v: texts(v, f"values.{k}"))
    aliases = mapping("aliases", lambda k, v: v.text(f"aliases.{k}"))
    conv = c.guard(spec, "bad-convention", lambda: LabelConvention.of(required, values, aliases))
    return (conv if c.ok else None), c.diags


def _field_columns(line: str) -> list[int]:
    """1-based start column of each field of one CSV line (quotes respected)."""
    cols, quoted = [1], False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            cols.append(i + 2)
    return cols


def load_csv(text: str, file: str) -> tuple[list[Workload], list[Diagnostic]]:
    """Workloads from CSV: ``name,addresses,owner`` then one column per label key."""
    text = text.removeprefix("\ufeff")
    lines = text.splitlines()
    diags: list[Diagnostic] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    header: list[str] | None = None
    out: list[Workload] = []
    while True:
        line_no = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            diags.append(
                Diagnostic(
                    file,
                    line_no,
                    None,
                    "csv-syntax",
                    f"cannot read: {exc}",
                    "fix the quoting on this line",
                )
            )
            continue
        if not any(cell.strip() for cell in row):
            continue
        cols = _field_columns(lines[line_no - 1] if line_no <= len(lines) else "")
        if header is None:
            header = [cell.strip() for cell in row]
            bad = _check_header(header, file, line_no, cols)
            if bad:
                return [], bad
            continue
        w, row_diags = _row(header, row, file, line_no, cols)
        diags.extend(row_diags)
        if w is not None:
            out.append(w)
    if header is None:
        diags.append(
            Diagnostic(
                file,
                1,
                1,
                "csv-header",
                "the CSV file is empty",
                "start with the header name,addresses,owner",
            )
        )
    return out, diags


def _check_header(header: list[str], file: str, line: int, cols: list[int]) -> list[Diagnostic]:
    def col(i: int) -> int | None:
        return cols[i] if i < len(cols) else None

    if tuple(header[:3]) != CSV_HEADER:
        msg = f"the header starts with {','.join(header[:3])!r}, not 'name,addresses,owner'"
        hint = "the first three columns are name,addresses,owner; then one column per label key"
        return [Diagnostic(file, line, 1, "csv-header", msg, hint)]
    out: list[Diagnostic] = []
    for i, key in enumerate(header[3:], start=3):
        try:
            check_label_key(key)
        except ValueError as exc:
            out.append(Diagnostic(file, line, col(i), "csv-header", str(exc), "rename the column"))
        if key in header[:i]:
            out.append(
                Diagnostic(
                    file,
                    line,
                    col(i),
                    "csv-header",
                    f"column `{key}` is given twice",
                    "remove one of them",
                )
            )
    return out


def _row(
    header: list[str], row: list[str], file: str, line: int, cols: list[int]
) -> tuple[Workload | None, list[Diagnostic]]:
    c = _Collect(file)

    def at(i: int) -> N:
        return N(row[i] if i < len(row) else None, line, cols[i] if i < len(cols) else None)

    cells = [cell.strip() for cell in row]
    if len(cells) < len(header) or any(cells[len(header) :]):
        msg = f"the row has {len(cells)} cells; the header has {len(header)}"
        c.add(at(0), "csv-row", msg, "quote cells that contain commas; leave absent labels empty")
        return None, c.diags
    name = c.guard(
        at(0), "bad-name", lambda: check_workload_name(cells[0]), "give every row a name"
    )
    leases = [c.guard(at(1), "bad-address", partial(parse_address, e)) for e in cells[1].split()]
    owner = c.guard(at(2), "bad-name", lambda: cells[2] and check_workload_name(cells[2]))
    pairs: dict[str, str] = {}
    for i, key in enumerate(header[3:], start=3):
        if cells[i]:
            value = c.guard(at(i), "bad-label", partial(check_label_value, key, cells[i]))
            if value is not None:
                pairs[key] = value
    if not c.ok or name is None:
        return None, c.diags
    good = tuple(x for x in leases if x is not None)
    return Workload(name, owner or None, Labels.of(pairs), good, Origin(file, line, 1)), c.diags
