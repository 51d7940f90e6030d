"""Injection indicators read from a statement's parse tree, each with its own metadata.

The tree is pglast's JSON form of libpg_query's parse tree (``parse_sql_json``), walked as
plain dicts. :func:`structural_facts` finds what the fingerprint determines (relations,
functions, statement kinds, casts, set operations), so its answer can be cached by
fingerprint. :func:`value_hits` finds what depends on constant values (tautologies and
contradictions); the classifier runs it per query only for fingerprints whose trees compare
constants at all.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "INDICATORS",
    "STRUCTURAL",
    "Hit",
    "Indicator",
    "StructuralFacts",
    "structural_facts",
    "value_hits",
]


@dataclass(frozen=True, slots=True)
class Indicator:
    """One detector: a stable id, a severity, what it means and what to do about it."""

    id: str
    severity: str
    title: str
    remediation: str


@dataclass(frozen=True, slots=True)
class Hit:
    """An indicator that fired on a query, with the evidence (a short fragment)."""

    indicator: str
    evidence: str

    def to_dict(self) -> dict[str, str]:
        ind = INDICATORS[self.indicator]
        return {
            "id": self.indicator,
            "severity": ind.severity,
            "title": ind.title,
            "evidence": self.evidence,
        }


_FIX = "use bound parameters instead of concatenating input into SQL"
INDICATORS: dict[str, Indicator] = {
    i.id: i
    for i in (
        Indicator("new-fingerprint", "medium", "a query shape this client never used", _FIX),
        Indicator("tautology", "high", "an OR with an always-true condition", _FIX),
        Indicator("contradiction", "medium", "an AND with an always-false condition", _FIX),
        Indicator("union-injection", "high", "UNION SELECT added to a query", _FIX),
        Indicator("stacked-statements", "high", "several statements where one was used", _FIX),
        Indicator("comment-truncation", "high", "a comment that cuts off the rest", _FIX),
        Indicator("catalog-probe", "high", "probing information_schema or pg_catalog", _FIX),
        Indicator("time-delay", "high", "a time delay such as pg_sleep", _FIX),
        Indicator("file-access", "critical", "server file or large-object access", _FIX),
        Indicator("program-exec", "critical", "COPY ... PROGRAM runs a shell command", _FIX),
        Indicator("out-of-band", "critical", "a connection out of the database (dblink)", _FIX),
        Indicator("privilege-change", "critical", "a role or privilege change", _FIX),
        Indicator("error-cast", "high", "a cast that leaks data through an error", _FIX),
        Indicator("libinjection", "high", "libinjection flags a string literal", _FIX),
        Indicator("unparseable", "medium", "PostgreSQL's parser rejects the text", _FIX),
        Indicator(
            "rejected-fingerprint",
            "high",
            "a query shape that a reviewer rejected",
            "fix the client, or approve the fingerprint in review if it is legitimate",
        ),
    )
}

#: Indicators that the fingerprint alone decides; a reviewer's approval of a fingerprint
#: accepts them for that identity. Value and lexical indicators are checked every time.
STRUCTURAL = frozenset(
    {
        "catalog-probe",
        "time-delay",
        "file-access",
        "program-exec",
        "out-of-band",
        "privilege-change",
        "error-cast",
    }
)

_SLEEP = frozenset({"pg_sleep", "pg_sleep_for", "pg_sleep_until"})
_FILES = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "lo_import",
        "lo_export",
        "pg_file_write",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
    }
)
_OOB = frozenset({"dblink", "dblink_connect", "dblink_exec", "dblink_send_query"})
_SYSINFO = frozenset(
    {
        "version",
        "current_database",
        "inet_server_addr",
        "inet_server_port",
        "pg_postmaster_start_time",
        "current_schemas",
        "pg_backend_pid",
    }
)
_CATALOGS = frozenset({"information_schema", "pg_catalog"})
_ROLE_STMTS = frozenset(
    {
        "CreateRoleStmt",
        "AlterRoleStmt",
        "AlterRoleSetStmt",
        "DropRoleStmt",
        "GrantStmt",
        "GrantRoleStmt",
        "AlterDefaultPrivilegesStmt",
        "ReassignOwnedStmt",
    }
)
_USER_SVF = frozenset(
    {"SVFOP_CURRENT_USER", "SVFOP_SESSION_USER", "SVFOP_USER", "SVFOP_CURRENT_ROLE"}
)
_NUMERIC = frozenset(
    {
        "int2",
        "int4",
        "int8",
        "integer",
        "int",
        "bigint",
        "smallint",
        "numeric",
        "decimal",
        "float4",
        "float8",
        "real",
        "oid",
        "regclass",
        "bool",
    }
)
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "!=": operator.ne,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_COMPARE = frozenset(_OPS)
_HOUSEKEEPING = frozenset(
    {
        "TransactionStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "DiscardStmt",
        "DeallocateStmt",
        "ClosePortalStmt",
    }
)


@dataclass(frozen=True, slots=True)
class StructuralFacts:
    """What a fingerprint determines: statement count, set operations and structural hits."""

    statements: int
    hits: tuple[Hit, ...]
    has_setop: bool
    union_suspicious: bool
    compares_constants: bool
    #: Only transaction control, SET/SHOW/RESET, DISCARD, DEALLOCATE, CLOSE (or nothing):
    #: statements that any session needs and that read no data.
    housekeeping: bool = False


def _names(items: list[Any] | None) -> list[str]:
    return [i["String"]["sval"] for i in items or () if "String" in i]


def _walk(node: Any, nested: bool = False) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every ``(node type, fields, nested)``; ``nested`` is true inside subqueries and the
    later arms of set operations, where injected probes live."""
    stack: list[tuple[Any, bool]] = [(node, nested)]
    while stack:
        cur, inner = stack.pop()
        if isinstance(cur, list):
            stack.extend((c, inner) for c in cur)
            continue
        if not isinstance(cur, dict):
            continue
        for key, value in cur.items():
            if isinstance(value, dict) and key[:1].isupper():
                yield key, value, inner
                if key == "SubLink":
                    stack.append((value, True))
                elif key == "SelectStmt" and value.get("op", "SETOP_NONE") != "SETOP_NONE":
                    stack.append((value.get("larg"), inner))
                    stack.append((value.get("rarg"), True))
                    rest = {k: v for k, v in value.items() if k not in ("larg", "rarg")}
                    stack.append((rest, inner))
                else:
                    stack.append((value, inner))
            elif isinstance(value, dict | list):
                if key == "relation" and isinstance(value, dict):
                    yield "RangeVar", value, inner
                stack.append((value, inner))


def _leaks(node: Any) -> bool:
    """Does this subtree read something worth leaking: a subquery or system information?"""
    for kind, fields, _ in _walk(node):
        if kind == "SubLink":
            return True
        if kind == "SQLValueFunction" and fields.get("op") in _USER_SVF:
            return True
        if kind == "FuncCall" and (_names(fields.get("funcname")) or [""])[-1] in _SYSINFO:
            return True
    return False


def _check(kind: str, f: dict[str, Any], nested: bool, hits: list[Hit]) -> None:
    if kind == "RangeVar":
        schema, rel = f.get("schemaname", ""), f.get("relname", "")
        if schema in _CATALOGS or (not schema and rel.startswith("pg_")):
            hits.append(Hit("catalog-probe", f"{schema}.{rel}" if schema else rel))
    elif kind == "FuncCall":
        name = (_names(f.get("funcname")) or [""])[-1].lower()
        if name in _SLEEP:
            hits.append(Hit("time-delay", name))
        elif name in _FILES:
            hits.append(Hit("file-access", name))
        elif name in _OOB:
            hits.append(Hit("out-of-band", name))
        elif name in _SYSINFO:
            hits.append(Hit("catalog-probe", f"{name}()"))
    elif kind == "SQLValueFunction" and nested and f.get("op") in _USER_SVF:
        hits.append(Hit("catalog-probe", f["op"].removeprefix("SVFOP_").lower()))
    elif kind == "CopyStmt":
        if f.get("is_program"):
            hits.append(Hit("program-exec", f"COPY PROGRAM {f.get('filename', '')!r}"))
        elif f.get("filename"):
            hits.append(Hit("file-access", f"COPY file {f['filename']!r}"))
    elif kind in _ROLE_STMTS:
        hits.append(Hit("privilege-change", kind.removesuffix("Stmt")))
    elif kind == "VariableSetStmt" and f.get("name") in ("role", "session_authorization"):
        hits.append(Hit("privilege-change", f"SET {f['name'].upper()}"))
    elif kind == "TypeCast":
        target = (_names(f.get("typeName", {}).get("names")) or [""])[-1]
        if target in _NUMERIC and _leaks(f.get("arg")):
            hits.append(Hit("error-cast", f"cast to {target}"))


def _const_only_targets(select: dict[str, Any]) -> bool:
    targets = select.get("targetList") or []
    vals = [t.get("ResTarget", {}).get("val", {}) for t in targets]
    return bool(vals) and not select.get("fromClause") and all("A_Const" in v for v in vals)


def _arms(select: dict[str, Any]) -> list[dict[str, Any]]:
    if select.get("op", "SETOP_NONE") == "SETOP_NONE":
        return [select]
    out: list[dict[str, Any]] = []
    for side in ("larg", "rarg"):
        arm = select.get(side)
        if isinstance(arm, dict):
            out.extend(_arms(arm))
    return out


def structural_facts(tree: dict[str, Any]) -> StructuralFacts:
    stmts = tree.get("stmts") or []
    hits: list[Hit] = []
    compares = False
    for kind, fields, nested in _walk(stmts):
        _check(kind, fields, nested, hits)
        if not compares and kind in ("A_Expr", "BoolExpr"):
            compares = _compares_constants(kind, fields)
    has_setop = False
    suspicious = False
    for s in stmts:
        sel = s.get("stmt", {}).get("SelectStmt")
        if sel and sel.get("op", "SETOP_NONE") != "SETOP_NONE":
            has_setop = True
            later = _arms(sel)[1:]
            suspicious = suspicious or any(_const_only_targets(a) for a in later)
    if has_setop:
        suspicious = suspicious or any(h.indicator == "catalog-probe" for h in hits)
    uniq = tuple(dict.fromkeys(hits))
    housekeeping = all(set(s.get("stmt", {})) <= _HOUSEKEEPING for s in stmts) and not any(
        h.indicator == "privilege-change" for h in uniq
    )
    return StructuralFacts(len(stmts), uniq, has_setop, suspicious, compares, housekeeping)


# --- constants and their truth ------------------------------------------------------------

_NO = object()


def _const(node: Any) -> Any:
    """The Python value of a constant expression, or ``_NO``."""
    if not isinstance(node, dict):
        return _NO
    if "A_Const" in node:
        c = node["A_Const"]
        if c.get("isnull"):
            return None
        for key, default in (("ival", 0), ("fval", "0"), ("sval", ""), ("boolval", False)):
            if key in c:
                v = c[key].get(key, default)
                return float(v) if key == "fval" else v
        return _NO
    if "TypeCast" in node:
        return _const(node["TypeCast"].get("arg"))
    if "A_Expr" in node:
        e = node["A_Expr"]
        op = (_names(e.get("name")) or [""])[-1]
        if e.get("kind") == "AEXPR_OP" and op in ("+", "-", "*", "||"):
            a, b = _const(e.get("lexpr")), _const(e.get("rexpr"))
            if a is _NO or b is _NO or a is None or b is None:
                return _NO
            if op == "||":
                return f"{a}{b}"
            if isinstance(a, int | float) and isinstance(b, int | float):
                return a + b if op == "+" else a - b if op == "-" else a * b
    return _NO


def _compare(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
        a, b = str(a), str(b)
    try:
        return bool(_OPS[op](a, b))
    except TypeError:
        return None


def _same_column(a: Any, b: Any) -> bool:
    if not (isinstance(a, dict) and isinstance(b, dict) and "ColumnRef" in a and "ColumnRef" in b):
        return False
    return bool(a["ColumnRef"].get("fields") == b["ColumnRef"].get("fields"))


def _truth(node: Any) -> bool | None:
    """True or False when the expression is constant, else None."""
    if not isinstance(node, dict):
        return None
    if "A_Const" in node:
        c = node["A_Const"]
        return bool(c["boolval"].get("boolval", False)) if "boolval" in c else None
    if "A_Expr" in node:
        e = node["A_Expr"]
        op = (_names(e.get("name")) or [""])[-1]
        left, right = e.get("lexpr"), e.get("rexpr")
        if op in _COMPARE and e.get("kind") == "AEXPR_OP":
            a, b = _const(left), _const(right)
            if a is not _NO and b is not _NO:
                return _compare(op, a, b)
            if op == "=" and _same_column(left, right):
                return True
        if e.get("kind") == "AEXPR_LIKE" and op == "~~":
            a, b = _const(left), _const(right)
            if isinstance(a, str) and isinstance(b, str):
                return a == b or b.strip("%") == "" or (b.strip("%") in a)
        return None
    if "BoolExpr" in node:
        b = node["BoolExpr"]
        vals = [_truth(x) for x in b.get("args") or []]
        if b.get("boolop") == "NOT_EXPR":
            return None if vals[0] is None else not vals[0]
        if b.get("boolop") == "OR_EXPR" and any(v is True for v in vals):
            return True
        if b.get("boolop") == "AND_EXPR" and any(v is False for v in vals):
            return False
        if all(v is not None for v in vals):
            return any(vals) if b.get("boolop") == "OR_EXPR" else all(vals)
    return None


def _compares_constants(kind: str, f: dict[str, Any]) -> bool:
    if kind == "BoolExpr":
        return any(_truth(a) is not None for a in f.get("args") or [])
    op = (_names(f.get("name")) or [""])[-1]
    if op in _COMPARE or op == "~~":
        if _const(f.get("lexpr")) is not _NO and _const(f.get("rexpr")) is not _NO:
            return True
        return op == "=" and _same_column(f.get("lexpr"), f.get("rexpr"))
    return False


def value_hits(tree: dict[str, Any]) -> tuple[Hit, ...]:
    """Tautologies (an OR arm that is always true) and contradictions (an AND arm that is
    always false). ``WHERE 1=1 AND ...``, which query builders write, is neither."""
    hits: list[Hit] = []
    for kind, f, _ in _walk(tree.get("stmts") or []):
        if kind != "BoolExpr":
            continue
        op = f.get("boolop")
        for arm in f.get("args") or []:
            t = _truth(arm)
            if op == "OR_EXPR" and t is True:
                hits.append(Hit("tautology", _sketch(arm)))
            elif op == "AND_EXPR" and t is False:
                hits.append(Hit("contradiction", _sketch(arm)))
    return tuple(dict.fromkeys(hits))


def _sketch(node: dict[str, Any]) -> str:
    if "A_Expr" in node:
        e = node["A_Expr"]
        op = (_names(e.get("name")) or ["?"])[-1]
        a, b = _const(e.get("lexpr")), _const(e.get("rexpr"))
        if a is not _NO and b is not _NO:
            return f"{a!r} {op} {b!r}"
        return f"column {op} itself"
    return "constant " + next(iter(node))
