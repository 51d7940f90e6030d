"""Reachability: what FROM may open to TO under a policy, the class-level matrix, and what a
draft policy changes.

Ends are selectors (``app=payments,role=web``, ``{role: web, env: [prod]}``,
``iplist:internet``, ``10.0.0.0/8``, ``any``) or workloads (``pay-web-1``,
``workload:pay-web-1``); :func:`parse_end` reads them.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from cellwall.analyze.atoms import probe, services_text, touched
from cellwall.analyze.results import Hop, MatrixResult, ReachPair, ReachResult
from cellwall.analyze.space import Space
from cellwall.errors import UsageError
from cellwall.model.policy import LabelTerm, Selector, Service

__all__ = ["class_matrix", "hop", "pair_count", "parse_end", "reach", "selector_of"]

Mask = npt.NDArray[np.bool_]
_HINT = (
    "write a workload (pay-web-1), labels (app=payments,role=web or {role: web}), "
    "iplist:NAME, a CIDR, or any"
)


def selector_of(doc: Mapping[str, Any]) -> Selector:
    """A selector from its YAML mapping form (as in a policy file)."""
    labels, negations = [], []
    kw: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "not":
            negations.append(selector_of(value))
        elif key in ("workload", "iplist", "fqdn"):
            kw[key] = str(value)
        elif key in ("cidrs", "except"):
            items = [value] if isinstance(value, str) else list(value)
            kw["cidrs" if key == "cidrs" else "except_"] = tuple(str(v) for v in items)
        elif key == "any":
            kw["any"] = bool(value)
        else:
            values = [value] if not isinstance(value, list) else value
            labels.append(LabelTerm(str(key), tuple(str(v) for v in values)))
    return Selector(labels=tuple(labels), negations=tuple(negations), **kw)


def _labels(text: str) -> Selector:
    terms, negations = [], []
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip("!") or not value:
            raise UsageError(f"{part!r} is not KEY=VALUE", _HINT)
        term = LabelTerm(key.strip("!").strip(), tuple(v.strip() for v in value.split("|")))
        if key.startswith("!"):
            negations.append(Selector(labels=(term,)))
        else:
            terms.append(term)
    return Selector(labels=tuple(terms), negations=tuple(negations))


def parse_end(text: str, workloads: Iterable[str] = ()) -> Selector:
    """A selector or a workload written on the command line."""
    text = text.strip()
    if text == "any":
        return Selector(any=True)
    if text.startswith("{"):
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"{text!r} is not a YAML mapping: {exc}", _HINT) from None
        if not isinstance(doc, dict) or not doc:
            raise UsageError(f"{text!r} is not a selector", _HINT)
        try:
            return selector_of(doc)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{text!r}: {exc}", _HINT) from None
    if text.startswith("workload:") or text in set(workloads):
        return Selector(workload=text.removeprefix("workload:"))
    if text.startswith("iplist:"):
        return Selector(iplist=text.removeprefix("iplist:"))
    try:
        return Selector(cidrs=(str(ipaddress.ip_network(text, strict=False)),))
    except ValueError:
        pass
    if "=" in text:
        return _labels(text)
    raise UsageError(f"{text!r} is neither a workload nor a selector", _HINT)


def pair_count(space: Space, i: int, j: int) -> int:
    """Workload pairs between two endpoints (an address range counts as one end)."""
    a, b = max(int(space.sizes[i]), 1), max(int(space.sizes[j]), 1)
    return a * (a - 1) if i == j and space.is_cell[i] else a * b


def hop(space: Space, i: int, j: int, atom: int, services: Sequence[Service] = ()) -> Hop:
    """One conversation from endpoint ``i`` to ``j`` on ``atom``, with concrete ends."""
    d = space.decide(i, j, atom)
    client = space.example(i)
    server = space.example(j, other=client if i == j else None)
    return Hop(
        client,
        server,
        probe(space.atoms[atom], services),
        d.verdict,
        d.rule,
        d.rules,
        d.unverified,
        space.blocked(i, j, d.verdict),
    )


def _pairs(
    space: Space, src: Mask, dst: Mask, atoms: Mask, effective: bool
) -> dict[tuple[int, int], Mask]:
    """Per permitted (client, server) endpoint pair, the atoms it is permitted on."""
    si, di = np.flatnonzero(src), np.flatnonzero(dst)
    out: dict[tuple[int, int], Mask] = {}
    for part, m in space.per_atom(atoms, effective):
        sub = m[np.ix_(si, di)]
        for a, b in zip(*np.nonzero(sub), strict=True):
            key = (int(si[a]), int(di[b]))
            found = out.get(key)
            if found is None:
                found = out[key] = np.zeros(len(space.atoms), bool)
            found |= part
    return out


def reach(
    space: Space,
    source: Selector,
    target: Selector,
    *,
    services: Sequence[Service] = (),
    effective: bool = False,
    policy: str = "the policy",
    names: tuple[str, str] | None = None,
) -> ReachResult:
    """What ``source`` may open to ``target`` (on ``services``; all when none)."""
    atoms = touched(space.atoms, services)
    src, dst = space.select(source), space.select(target)
    found = _pairs(space, src, dst, atoms, effective)
    pairs = sorted(
        (
            ReachPair(
                space.name(i),
                space.name(j),
                pair_count(space, i, j),
                tuple(services_text(space.atoms, mask & atoms)),
            )
            for (i, j), mask in found.items()
        ),
        key=lambda p: (-p.workload_pairs, p.client, p.server),
    )
    example = None
    if found:
        (i, j), mask = min(found.items(), key=lambda kv: (space.name(kv[0][0]), kv[0]))
        example = hop(space, i, j, int(np.flatnonzero(mask & atoms)[0]), services)
    a, b = names or (str(source), str(target))
    return ReachResult(a, b, policy, effective, tuple(pairs), example)


def class_matrix(
    space: Space,
    *,
    services: Sequence[Service] = (),
    effective: bool = False,
    policy: str = "the policy",
) -> MatrixResult:
    """The endpoint-level matrix: which (cell or range) pairs are permitted on ``services``."""
    t0 = time.perf_counter()
    m = space.permitted(touched(space.atoms, services), effective)
    seconds = time.perf_counter() - t0
    edges = tuple((int(a), int(b)) for a, b in zip(*np.nonzero(m), strict=True))
    cells = m[: space.k, : space.k]
    sizes = space.sizes[: space.k].astype(np.float64)
    wp = float(sizes @ cells.astype(np.float64) @ sizes)
    wp -= float((np.diag(cells) * sizes).sum())  # a workload does not pair with itself
    return MatrixResult(
        policy,
        effective,
        tuple(space.name(e) for e in range(space.n)),
        tuple(int(s) for s in space.sizes),
        edges,
        round(wp),
        round(seconds, 4),
    )
