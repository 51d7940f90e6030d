"""Verdicts for a batch of identified conversations: the one function that replay, explain,
the agent and the live monitor all call.

:func:`evaluate` takes an Arrow table (or record batch) of conversations whose ends are
already identified (``client_class``/``server_class``: the IR's class index, -1 for an
unmanaged address) and returns, row for row, the verdict, the deciding rule, whether the
verdict is unverified, and whether enforcement would block it under the modes. Nothing here
loops over conversations in Python: the work is array lookups through the IR's caches
(:mod:`cellwall.policy.groups`); only rows whose decision hangs on narrowing facts are looked
at again, per distinct (profile, atom).

Input columns: ``client_class``, ``server_class`` (int32), ``client_ip``, ``server_ip``
(string; read for unmanaged ends and the management tier), ``proto`` (uint8),
``server_port``, ``client_port`` (int32, -1 for none; for ICMP the client's port is its
type), ``start`` (timestamp, for DNS names), and optionally ``server_process``,
``http_method``, ``http_path`` (string) and ``icmp_code`` (int32).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from cellwall.inventory.classify import to_numbers
from cellwall.model.policy import ICMP_PROTOS, Service
from cellwall.policy.ir import ALLOWED, DENIED, VERDICTS, PolicyIR

__all__ = ["RESULT_SCHEMA", "evaluate"]

I32 = npt.NDArray[np.int32]
Mask = npt.NDArray[np.bool_]
RESULT_SCHEMA = pa.schema(
    [
        ("verdict", pa.dictionary(pa.int8(), pa.string())),
        ("rule_id", pa.dictionary(pa.int32(), pa.string())),
        ("rule_code", pa.int32()),
        ("unverified", pa.bool_()),
        ("blocked", pa.bool_()),
    ]
)
_VERDICTS = pa.array(VERDICTS, pa.string())
_NO_MATCH, _UNVERIFIED, _MATCH = 0, 1, 2


def _np(col: Any, dtype: Any, fill: int = -1) -> npt.NDArray[Any]:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if col.null_count:
        col = col.fill_null(fill)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=dtype)


def _strings(col: Any) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.cast(pa.string()) if col.type != pa.string() else col


def _ts_us(col: Any) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    return col.cast(pa.timestamp("us", tz="UTC")).view(pa.int64())


def _unmanaged(
    ir: PolicyIR, t: Any, side: str, rows: npt.NDArray[np.intp], dns: pa.Table | None
) -> I32:
    """Endpoint ids for the unmanaged ends ``rows`` of ``side``."""
    ips = _strings(t[f"{side}_ip"].take(pa.array(rows)))
    enc = pc.dictionary_encode(ips)
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
    if not ir.terms.patterns:  # no DNS names: an address's endpoint never changes
        return _by_address(ir, enc.dictionary)[codes]
    members = ir.terms.cidr_members(enc.dictionary)
    ts = _ts_us(t["start"]).take(pa.array(rows))
    words = ir.terms.dns_words(ips, ts, dns)
    keys = np.ascontiguousarray(np.column_stack([codes, words]))
    flat = keys.view(np.dtype((np.void, keys.dtype.itemsize * keys.shape[1]))).ravel()
    _, first, inv = np.unique(flat, return_index=True, return_inverse=True)
    uniq = keys[first]
    with ir.groups.lock:
        eps = np.asarray(
            [
                ir.groups.signature_endpoint(ir.terms.signature(members[int(k[0])], k[1:]))
                for k in uniq
            ],
            np.int32,
        )
    return eps[inv.reshape(-1)]


def _by_address(ir: PolicyIR, addresses: pa.Array) -> I32:
    """The endpoint of each distinct address, through the IR's address cache."""
    cache = ir.address_endpoints
    texts = addresses.to_pylist()
    found = np.asarray([cache.get(a, -1) for a in texts], np.int32)
    new = np.flatnonzero(found < 0)
    if len(new):
        members = ir.terms.cidr_members(addresses.take(pa.array(new)))
        none = np.zeros(1, np.int64)
        with ir.groups.lock:
            for j, i in enumerate(new.tolist()):
                ep = ir.groups.signature_endpoint(ir.terms.signature(members[j], none))
                cache[texts[i]] = found[i] = ep
    return found


def _endpoints(ir: PolicyIR, t: Any, side: str, cls: I32, dns: pa.Table | None) -> I32:
    rows = np.flatnonzero(cls < 0)
    if not len(rows):
        return cls
    ep = cls.copy()
    ep[rows] = _unmanaged(ir, t, side, rows, dns)
    return ep


def _in_nets(ir_nets: tuple[Any, ...], ips: Any) -> Mask:
    if isinstance(ips, pa.ChunkedArray):
        ips = ips.unify_dictionaries() if pa.types.is_dictionary(ips.type) else ips
        ips = ips.combine_chunks()
    enc = ips if pa.types.is_dictionary(ips.type) else pc.dictionary_encode(ips)
    fam, hi, lo = to_numbers(enc.dictionary.cast(pa.string()), mapped_as_ipv4=False)
    inside = np.zeros(len(enc.dictionary), bool)
    for net in ir_nets:
        inside |= net.contains(fam, hi, lo)
    idx = np.asarray(enc.indices.fill_null(0).to_numpy(zero_copy_only=False), np.intp)
    return np.asarray(inside[idx] & np.asarray(enc.is_valid()), bool)


def _tier_status(
    t: Any, services: tuple[tuple[Service, Mask], ...], rows: npt.NDArray[np.intp], atom: I32
) -> npt.NDArray[np.int8]:
    """Per row of ``rows``: how the management services match (no, unverified, yes)."""
    covered = np.zeros(len(rows), bool)
    for _, m in services:
        covered |= m[atom[rows]]
    status = np.where(covered, _MATCH, _NO_MATCH).astype(np.int8)
    if not any(s.narrowed for s, _ in services):
        return status
    names = ("server_process", "http_method", "http_path", "icmp_code")
    facts = {k: _fact(t, k, rows) for k in names}
    for j in np.flatnonzero(covered).tolist():
        a = int(atom[rows[j]])
        status[j] = max((_status(s, facts, j) for s, m in services if m[a]), default=_NO_MATCH)
    return status


def _management(
    ir: PolicyIR, t: Any, cc: I32, sc: I32, atom: I32, dec: I32, unverified: Mask
) -> None:
    """Apply the management tier in place (it comes before every rule)."""
    m = ir.management
    n = len(ir.rules)
    decided = np.zeros(len(dec), bool)
    tiers = (
        (m.admin, m.admin_services, "client_ip", sc, n),
        (m.controllers, m.control_services, "server_ip", cc, n + 1),
    )
    for nets, services, column, other, code in tiers:
        if not nets or not services:
            continue
        cand = _in_nets(nets, t[column]) & (other >= 0) & ~decided
        rows = np.flatnonzero(cand)
        if not len(rows):
            continue
        status = _tier_status(t, services, rows, atom)
        hit = rows[status != _NO_MATCH]
        dec[hit] = code
        unverified[hit] = status[status != _NO_MATCH] == _UNVERIFIED
        decided[hit] = True


def _fact(t: Any, name: str, rows: npt.NDArray[np.intp]) -> list[Any]:
    if name not in t.column_names:
        return [None] * len(rows)
    return t[name].take(pa.array(rows)).to_pylist()  # type: ignore[no-any-return]


def _status(s: Service, facts: dict[str, list[Any]], i: int) -> int:
    """Does row ``i`` meet the narrowing of ``s``: no, only because facts are missing, yes."""
    checks: list[bool | None] = []
    if s.process:
        v = facts["server_process"][i]
        checks.append(None if v is None else v == s.process)
    if s.http_methods:
        v = facts["http_method"][i]
        checks.append(None if v is None else v.upper() in s.http_methods)
    if s.http_paths:
        v = facts["http_path"][i]
        checks.append(None if v is None else any(re.fullmatch(p, v) for p in s.http_paths))
    if s.icmp_code is not None:
        v = facts["icmp_code"][i]
        checks.append(None if v is None else v == s.icmp_code)
    if any(c is False for c in checks):
        return _NO_MATCH
    return _UNVERIFIED if any(c is None for c in checks) else _MATCH


def _narrow(ir: PolicyIR, t: Any, prof: I32, atom: I32, dec: I32, unverified: Mask) -> None:
    """Decide the rows whose verdict hangs on narrowing facts (in place)."""
    need = ir.groups.need[prof, atom]
    rows = np.flatnonzero(need)
    if not len(rows):
        return
    names = ("server_process", "http_method", "http_path", "icmp_code")
    facts = {k: _fact(t, k, rows) for k in names}
    for j, i in enumerate(rows.tolist()):
        p, a, base = int(prof[i]), int(atom[i]), int(dec[i])
        for r in ir.groups.narrowed[p].tolist():
            if ir.rank[r] >= ir.rank[base]:
                break
            lr = ir.rules[r]
            status = max((_status(s, facts, j) for s, m in lr.narrowed if m[a]), default=_NO_MATCH)
            if status != _NO_MATCH:
                dec[i] = r
                unverified[i] = status == _UNVERIFIED
                break


def _blocked(ir: PolicyIR, cc: I32, sc: I32, verdict: npt.NDArray[np.int8]) -> Mask:
    """Blocked when either managed end's mode blocks the verdict: one table lookup on
    (client mode, server mode, verdict)."""
    out = np.zeros(len(verdict), bool)
    rows = np.flatnonzero(verdict != ALLOWED)  # an allowed conversation is never blocked
    if not len(rows):
        return out
    modes = np.append(ir.class_mode, np.int8(-1)) + 1  # 0: unmanaged, no mode
    table = np.zeros((4, 4, 3), bool)
    for m in range(4):
        for v in range(3):
            one = bool(_blocks(np.asarray([m - 1], np.int8), np.asarray([v], np.int8))[0])
            table[m, :, v] |= one
            table[:, m, v] |= one
    key = (modes[cc[rows]].astype(np.int32) * 4 + modes[sc[rows]]) * 3 + verdict[rows]
    out[rows] = table.ravel()[key]
    return out


def _blocks(mode: npt.NDArray[np.int8], verdict: npt.NDArray[np.int8]) -> Mask:
    full = (mode == 2) & (verdict != ALLOWED)
    selective = (mode == 1) & (verdict == DENIED)
    return full | selective  # type: ignore[no-any-return]


def evaluate(
    batch: pa.Table | pa.RecordBatch, ir: PolicyIR, dns: pa.Table | None = None
) -> pa.Table:
    """Verdict, deciding rule, ``unverified`` and ``blocked`` for each conversation."""
    t = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    cc = _np(t["client_class"], np.int32)
    sc = _np(t["server_class"], np.int32)
    proto = _np(t["proto"], np.uint8, 0)
    icmp = (proto == ICMP_PROTOS[0]) | (proto == ICMP_PROTOS[1])
    port = _np(t["server_port"], np.int32)
    if icmp.any():
        port = np.where(icmp, _np(t["client_port"], np.int32), port)
    cep = _endpoints(ir, t, "client", cc, dns)
    sep = _endpoints(ir, t, "server", sc, dns)
    g = ir.groups
    prof = g.pair_profiles(g.ep_src[cep], g.ep_dst[sep])
    atom = ir.atoms.atoms_of(proto, port)
    plain = g.plain
    dec = plain.ravel()[prof.astype(np.int64) * plain.shape[1] + atom]
    unverified = np.zeros(len(dec), bool)
    if ir.any_narrowed:
        _narrow(ir, t, prof, atom, dec, unverified)
    if not ir.management.empty:
        _management(ir, t, cc, sc, atom, dec, unverified)
    verdict = ir.verdict_of[dec + 1]
    blocked = _blocked(ir, cc, sc, verdict)
    ids = pa.array(ir.ids, pa.string())
    return pa.table(
        [
            pa.DictionaryArray.from_arrays(pa.array(verdict, pa.int8()), _VERDICTS),
            pa.DictionaryArray.from_arrays(pa.array(dec, pa.int32(), mask=dec < 0), ids),
            pa.array(dec, pa.int32()),
            pa.array(unverified),
            pa.array(blocked),
        ],
        schema=RESULT_SCHEMA,
    )
