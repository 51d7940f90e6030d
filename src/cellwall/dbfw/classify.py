"""Classify one SQL text: its pglast fingerprint plus the identity-free injection indicators.

Fast path, in order: an exact-text cache; a *shape* cache (below); the fingerprint
(libpg_query, a few microseconds); the structural facts cached by fingerprint; the per-query
checks only where they can fire (the constant-value checks when the fingerprint compares
constants, the lexical checks when the text holds a quote, a dollar quote or a comment).
Caches are bounded and simply cleared when full.

The shape of a text is the text with every integer literal of up to nine digits written as
``0``; it skips the parser for the same statement with other numbers, as clients that do not
bind parameters send it. Two texts of one shape lex to the same tokens but for the values of
those integers, so they parse to the same tree but for the values of those constants. A
shape is cached only when that makes its analysis the same whatever the numbers: every
replaced integer is a plain constant of the tree (``A_Const``, which the fingerprint ignores,
not ``FETCH 5`` or ``float(24)``), the statement compares no constants (no value checks),
has no set operation, and the text is ASCII with no quote, comment or dollar quote (no
lexical checks).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash
from pglast import parser as pg

from cellwall.dbfw.indicators import Hit, StructuralFacts, structural_facts, value_hits

__all__ = ["Analysis", "Classifier", "libinjection_detector"]

_LEXICAL = re.compile(r"'|--|/\*|\$(?!\d)")
_KEYWORDS = frozenset(
    {
        "AND",
        "OR",
        "WHERE",
        "LIMIT",
        "ORDER",
        "GROUP",
        "HAVING",
        "FROM",
        "SELECT",
        "UNION",
        "OFFSET",
        "UPDATE",
        "DELETE",
        "INSERT",
        "DROP",
    }
)
_SETOPS = frozenset({"UNION", "INTERSECT", "EXCEPT"})
#: An integer literal that always lexes as one (ICONST): not part of a name, a parameter
#: (``$1``), a decimal, an exponent or a longer number.
_INTEGER = re.compile(r"(?<![\w$.])\d{1,9}(?![\w.])")
#: What rules a text out of the shape cache: anything the lexical checks look at, or a
#: quoted identifier (which may hold digits).
_NO_SHAPE = re.compile(r"['\"]|--|/\*|\$(?!\d)")
#: libinjection looks at a literal only when it holds something that could break out of a
#: quoted context (a quote or a comment opener): plain prose that mentions "select" or
#: "union" is not an injection, and libinjection flags too much of it.
_BREAKOUT = re.compile(r"['\"`]|--|/\*|#")


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything about a text that does not depend on who sent it."""

    fingerprint: str
    statements: int
    hits: tuple[Hit, ...]
    has_setop: bool = False
    union_suspicious: bool = False
    #: The fingerprint of the text before the first top-level UNION/INTERSECT/EXCEPT.
    prefix_fingerprint: str | None = None
    parse_error: str | None = None
    housekeeping: bool = False


Detector = Callable[[str], bool]


def libinjection_detector() -> Detector:
    """libinjection's SQLi test, from the ``libinjection-python`` binding."""
    import libinjection  # type: ignore[import-not-found]

    def detect(value: str) -> bool:
        return bool(libinjection.is_sql_injection(value)["is_sqli"])

    return detect


def _literal_value(text: str) -> str:
    if text[:1] in "eEnN" and text[1:2] == "'":
        text = text[1:]
    if text.startswith("'") and text.endswith("'") and len(text) >= 2:
        return text[1:-1].replace("''", "'")
    if text.startswith("$"):
        tag_end = text.find("$", 1)
        tag = text[: tag_end + 1]
        if tag_end > 0 and text.endswith(tag) and len(text) >= 2 * len(tag):
            return text[len(tag) : -len(tag)]
    return text


def _comment_hits(text: str, tokens: list[Any], index: int) -> list[Hit]:
    tok = tokens[index]
    body = text[tok.start : tok.end + 1]
    if tok.name == "C_COMMENT":
        if body == "/**/" and 0 < index < len(tokens) - 1:
            return [Hit("comment-truncation", "empty /**/ comment used as a separator")]
        return []
    inner = body[2:]
    if "'" in inner or '"' in inner:
        return [Hit("comment-truncation", f"comment swallows a quote: {body[:40]!r}")]
    words = {w.upper() for w in re.findall(r"[A-Za-z_]+", inner)}
    if words & _KEYWORDS or "=" in inner:
        return [Hit("comment-truncation", f"comment swallows SQL: {body[:40]!r}")]
    prev = tokens[index - 1] if index else None
    if prev is not None and prev.end + 1 == tok.start and index == len(tokens) - 1:
        return [Hit("comment-truncation", "a comment right after a value ends the query")]
    return []


def _integer_constants(tree: dict[str, Any]) -> set[int]:
    """Where the integer constants (``A_Const`` with an ``ival``) of a parse tree begin."""
    found: set[int] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            const = node.get("A_Const")
            if isinstance(const, dict) and "ival" in const:
                found.add(int(const.get("location", -1)))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _shape_safe(text: str, analysis: Analysis, tree: dict[str, Any] | None, compares: bool) -> bool:
    """Whether every text of this one's shape has its analysis (see the module's doc)."""
    if analysis.parse_error is not None or compares or analysis.has_setop:
        return False
    if tree is None:
        tree = json.loads(pg.parse_sql_json(text))
    consts = _integer_constants(tree)
    for m in _INTEGER.finditer(text):
        at = m.start()
        # a negative constant begins at its minus sign (the parser folds it in)
        if at not in consts and not (at - 1 in consts and text[at - 1] == "-"):
            return False
    return True


class Classifier:
    """Fingerprints and indicator hits, cached; one per proxy (not thread-safe)."""

    def __init__(
        self,
        literal_detector: Detector | None = None,
        *,
        text_cache: int = 50_000,
        fingerprint_cache: int = 20_000,
        max_literal: int = 4096,
    ) -> None:
        self._detect = literal_detector
        self._texts: dict[str, Analysis] = {}
        #: shape -> its analysis, or None for a shape found unsafe (checked once)
        self._shapes: dict[str, Analysis | None] = {}
        self._facts: dict[str, StructuralFacts] = {}
        self._text_cap = text_cache
        self._fp_cap = fingerprint_cache
        self._max_literal = max_literal

    def analyse(self, text: str) -> Analysis:
        got = self._texts.get(text)
        if got is not None:
            return got
        shape = None
        if text.isascii() and not _NO_SHAPE.search(text):
            shape, count = _INTEGER.subn("0", text)
            known = self._shapes.get(shape, False) if count else None
            if isinstance(known, Analysis):
                return known
            if known is None:  # no integers, or a shape already found unsafe
                shape = None
        result, tree, compares = self._analyse(text)
        if len(self._texts) >= self._text_cap:
            self._texts.clear()
        self._texts[text] = result
        if shape is not None:
            if len(self._shapes) >= self._text_cap:
                self._shapes.clear()
            safe = _shape_safe(text, result, tree, compares)
            self._shapes[shape] = result if safe else None
        return result

    def _analyse(self, text: str) -> tuple[Analysis, dict[str, Any] | None, bool]:
        """The analysis, the parse tree when it was needed, and whether the statement
        compares constants."""
        try:
            fp = pg.fingerprint(text)
        except pg.ParseError as exc:
            digest = xxhash.xxh64_hexdigest(" ".join(text.split()).encode())
            hit = Hit("unparseable", str(exc)[:120])
            return Analysis("unparsed-" + digest, 0, (hit,), parse_error=str(exc)), None, False
        facts = self._facts.get(fp)
        tree: dict[str, Any] | None = None
        if facts is None:
            tree = json.loads(pg.parse_sql_json(text))
            facts = structural_facts(tree)
            if len(self._facts) >= self._fp_cap:
                self._facts.clear()
            self._facts[fp] = facts
        hits = list(facts.hits)
        if facts.compares_constants:
            if tree is None:
                tree = json.loads(pg.parse_sql_json(text))
            hits.extend(value_hits(tree))
        prefix = None
        if _LEXICAL.search(text) or facts.has_setop:
            lex_hits, prefix = self._lexical(text, facts.has_setop)
            hits.extend(lex_hits)
        analysis = Analysis(
            fp,
            facts.statements,
            tuple(dict.fromkeys(hits)),
            facts.has_setop,
            facts.union_suspicious,
            prefix,
            None,
            facts.housekeeping,
        )
        return analysis, tree, facts.compares_constants

    def _literal_injection(self, value: str) -> bool:
        if self._detect is None or not 2 < len(value) <= self._max_literal:
            return False
        if not _BREAKOUT.search(value):
            return False
        # a backslash-escaped quote is data here, but breaks out wherever the value is
        # reused with backslash escapes (MySQL, E'' strings, a second-order injection)
        return self._detect(value) or ("\\'" in value and self._detect(value.replace("\\'", "'")))

    def _lexical(self, text: str, has_setop: bool) -> tuple[list[Hit], str | None]:
        tokens = pg.scan(text)
        hits: list[Hit] = []
        depth = 0
        prefix_end: int | None = None
        for i, tok in enumerate(tokens):
            name = tok.name
            if name == "SCONST" and self._detect is not None:
                value = _literal_value(text[tok.start : tok.end + 1])
                if self._literal_injection(value):
                    hits.append(Hit("libinjection", value[:60]))
            elif name in ("SQL_COMMENT", "C_COMMENT"):
                hits.extend(_comment_hits(text, tokens, i))
            elif name == "ASCII_40":
                depth += 1
            elif name == "ASCII_41":
                depth -= 1
            elif has_setop and prefix_end is None and depth == 0 and name in _SETOPS:
                prefix_end = tok.start
        prefix = None
        if prefix_end:
            try:
                prefix = pg.fingerprint(text[:prefix_end])
            except pg.ParseError:
                prefix = None
        return hits, prefix
