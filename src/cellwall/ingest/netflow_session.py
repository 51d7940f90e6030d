"""Datagrams in, flow chunks out: the NetFlow v5/v9/IPFIX message and set parser.

:class:`NetflowDecoder` is fed datagrams (from a file or from a socket) and collects the
data sets of each template; :meth:`NetflowDecoder.take` decodes all collected records of a
template at once (:mod:`cellwall.ingest.netflow_decode`) and returns a chunk.

What cannot become flows is rejected with a reason, at the byte offset of the datagram or
the set, and parsing goes on with the next set or datagram:

==================  ===========================================================================
``truncated``       a datagram shorter than its header, or than its own length field says
``bad-length``      a set whose length is under 4 bytes or runs past its message; a record that
                    runs past its set; the rest of that message is lost
``bad-version``     a version other than 5, 9 and 10 (the rest of the datagram is lost)
``bad-template``    a template with a field of length zero, or a reserved template id
``no-template``     a data set whose template did not arrive within the hold (one reject per
                    set: without the template, its records cannot be counted)
``bad-time``        a record whose end is before its start, or a time outside 1970..9999
``missing-field``   a data template without source or destination address, or protocol
==================  ===========================================================================
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from cellwall.ingest.base import Chunk, Rejects
from cellwall.ingest.netflow_decode import decode, options_values, split_variable
from cellwall.ingest.netflow_templates import (
    VARIABLE,
    Field,
    Pending,
    Segment,
    Segments,
    Template,
    TemplateCache,
    TemplateKey,
)
from cellwall.ingest.netflow_v5 import RECORD_LENGTH, V5_TEMPLATE
from cellwall.ingest.netflow_v5 import parse_header as v5_header
from cellwall.model.flow_schema import conform, empty_flows

__all__ = ["EXPORT_TIME", "DecoderStats", "NetflowDecoder", "export_seconds"]

V9_HEADER = struct.Struct(">HHIIII")
IPFIX_HEADER = struct.Struct(">HHIII")
SET_HEADER = struct.Struct(">HH")
#: A v9 or IPFIX header and the header of the message's first set, in one unpack.
_V9_FIRST = struct.Struct(">HHIIIIHH")
_IPFIX_FIRST = struct.Struct(">HHIIIHH")
#: ``feed``'s clock for files: each datagram's own export time, not the time of arrival.
EXPORT_TIME = -1.0
_MESSAGES = {
    "bad-time": "start or end outside 1970..9999, or end before start",
}


@dataclass
class DecoderStats:
    """Counters for the collector's view: what came in, what became flows, what did not."""

    datagrams: int = 0
    #: records of data sets whose template was known (decoded or rejected later)
    records: int = 0
    decoded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    options_records: int = 0

    def to_dict(self, waiting: int) -> dict[str, Any]:
        return {
            "datagrams": self.datagrams,
            "records_received": self.records,
            "records_decoded": self.decoded,
            "sets_waiting_for_template": waiting,
            "rejected": dict(sorted(self.rejected.items())),
            "options_records": self.options_records,
        }


class NetflowDecoder:
    """Parse datagrams, keep templates, and hand out decoded chunks of flows."""

    def __init__(
        self,
        file: str,
        *,
        fmt: str = "netflow",
        cache: TemplateCache | None = None,
        chunk_records: int = 1 << 18,
    ) -> None:
        self.file = file
        self.fmt = fmt
        self.cache = cache or TemplateCache()
        self.chunk_records = chunk_records
        self.stats = DecoderStats()
        self._rejects = Rejects(file, unit="offset")
        self._ignored: Counter[str] = Counter()
        self._batches: dict[tuple[int, str, bool], tuple[Template, str, Segments]] = {}
        self._collected = 0
        self._memo: dict[tuple[bytes, bool, bool], list[Template]] = {}

    # -- feeding ---------------------------------------------------------------------------

    def feed(self, data: bytes, exporter: str, pos: int, stamp: float | None = None) -> None:
        """Parse one datagram (or several concatenated messages) that starts at ``pos``.

        ``stamp`` is the clock of the hold for data that waits for its template: when the
        datagram arrived (the collector), :data:`EXPORT_TIME` (its export time: files), or
        None (no clock: nothing expires before the end).
        """
        self.stats.datagrams += 1
        if self._one_data_set(data, exporter, pos, stamp):
            return
        if stamp == EXPORT_TIME:
            stamp = export_seconds(data)
        off = 0
        while off < len(data):
            if len(data) - off < 4:
                self._reject(
                    pos + off, "truncated", f"{len(data) - off} bytes after the last message"
                )
                return
            version = (data[off] << 8) | data[off + 1]
            if version == 5:
                used = self._v5(data, off, exporter, pos)
            elif version == 9:
                used = self._v9(data, off, exporter, pos, stamp)
            elif version == 10:
                used = self._ipfix(data, off, exporter, pos, stamp)
            else:
                self._reject(
                    pos + off,
                    "bad-version",
                    f"NetFlow version {version} is not read (5, 9 and 10/IPFIX are)",
                    data[off : off + 64],
                )
                return
            if used is None:
                return
            off += used
        if stamp is not None and self.cache.waiting:
            self.expire(stamp)

    def _one_data_set(self, data: bytes, exporter: str, pos: int, stamp: float | None) -> bool:
        """The usual datagram, done short: one v9 or IPFIX message holding one data set of a
        known fixed-length template (what :meth:`_v9`/:meth:`_ipfix` and :meth:`_sets`
        would do with it). False, having done nothing, for anything else."""
        size = len(data)
        if size >= 24 and data[0] == 0 and data[1] == 9:
            _, _, uptime_ms, secs, _, domain, set_id, length = _V9_FIRST.unpack_from(data)
            head, ipfix = 20, False
        elif size >= 20 and data[0] == 0 and data[1] == 10:
            _, total, secs, _, domain, set_id, length = _IPFIX_FIRST.unpack_from(data)
            if total != size:
                return False
            head, ipfix, uptime_ms = 16, True, None
        else:
            return False
        if set_id < 256 or length < 4 or head + length != size:
            return False
        template = self.cache.templates.get((exporter, domain, set_id))
        if template is None or not template.plain:
            return False
        where = (exporter, domain)
        self._plain(template, exporter, ipfix, data[head + 4 :], secs * 1000, uptime_ms,
                    pos + head + 4, where)  # fmt: skip
        if stamp is not None and self.cache.waiting:
            self.expire(float(secs) if stamp == EXPORT_TIME else stamp)
        return True

    def _plain(
        self,
        template: Template,
        exporter: str,
        ipfix: bool,
        body: bytes,
        export_ms: int,
        uptime_ms: int | None,
        at: int,
        where: tuple[str, int],
    ) -> None:
        """Collect a data set of a fixed-length template, column by column."""
        batch = self._batches.get((id(template), exporter, ipfix))
        got = batch[2] if batch else self._batch(template, exporter, ipfix)
        got.bodies.append(body)
        got.export_ms.append(export_ms)
        got.uptime_ms.append(uptime_ms)
        got.pos.append(at)
        got.rate.append(self.cache.sampling.get(where, 0))
        got.init_ms.append(self.cache.init_ms.get(where))
        count = len(body) // template.record_length
        self._collected += count
        self.stats.records += count

    @property
    def collected(self) -> int:
        """Records collected and not yet taken."""
        return self._collected

    @property
    def ready(self) -> bool:
        return self._collected >= self.chunk_records

    def expire(self, now: float) -> None:
        """Give up (reject ``no-template``) data held since before ``now`` less the hold."""
        self._give_up(self.cache.expire(now), "its template did not arrive in time")

    def skip(self, pos: int, reason: str, message: str | None = None) -> None:
        """Count a capture frame that is no export datagram: ignored, or rejected."""
        if message is None:
            self._ignored[reason] += 1
        else:
            self._reject(pos, reason, message)

    def _reject(self, pos: int, reason: str, message: str, raw: bytes = b"") -> None:
        self._rejects.add(pos, reason, message, raw.hex() if raw else "")
        self.stats.rejected[reason] += 1

    def _batch(self, template: Template, exporter: str, ipfix: bool) -> Segments:
        # v9 and IPFIX times differ: their records are decoded apart even with one template.
        key = (id(template), exporter, ipfix)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = (template, exporter, Segments())
        return batch[2]

    def _collect(self, template: Template, exporter: str, segment: Segment) -> None:
        self._batch(template, exporter, segment.uptime_ms is None).add(segment)
        count = len(segment.body) // max(template.record_length, 1)
        self._collected += count
        self.stats.records += count

    def _v5(self, data: bytes, off: int, exporter: str, pos: int) -> int | None:
        if len(data) - off < 24:
            self._reject(
                pos + off, "truncated", f"v5 header needs 24 bytes, {len(data) - off} left"
            )
            return None
        h = v5_header(data[off : off + 24])
        need = 24 + h.count * RECORD_LENGTH
        if len(data) - off < need:
            self._reject(
                pos + off,
                "truncated",
                f"v5 header counts {h.count} records ({need} bytes), {len(data) - off} are there",
            )
            return None
        segment = Segment(
            data[off + 24 : off + need],
            h.export_ms,
            h.uptime_ms,
            pos + off + 24,
            h.sampling,
            (exporter, h.engine),
        )
        self._collect(V5_TEMPLATE, exporter, segment)
        return need

    def _v9(
        self, data: bytes, off: int, exporter: str, pos: int, stamp: float | None
    ) -> int | None:
        if len(data) - off < 20:
            self._reject(
                pos + off, "truncated", f"v9 header needs 20 bytes, {len(data) - off} left"
            )
            return None
        _, _, uptime, secs, _, domain = V9_HEADER.unpack_from(data, off)
        ctx = _Ctx(exporter, domain, secs * 1000, uptime, pos, stamp, ipfix=False)
        self._sets(data, off + 20, len(data), ctx)
        return len(data) - off

    def _ipfix(
        self, data: bytes, off: int, exporter: str, pos: int, stamp: float | None
    ) -> int | None:
        if len(data) - off < 16:
            self._reject(
                pos + off, "truncated", f"IPFIX header needs 16 bytes, {len(data) - off} left"
            )
            return None
        _, length, secs, _, domain = IPFIX_HEADER.unpack_from(data, off)
        if length < 16:
            self._reject(pos + off, "bad-length", f"IPFIX message length {length} is under 16")
            return None
        if length > len(data) - off:
            self._reject(
                pos + off,
                "truncated",
                f"IPFIX message says {length} bytes, {len(data) - off} are there",
            )
            return None
        ctx = _Ctx(exporter, domain, secs * 1000, None, pos, stamp, ipfix=True)
        self._sets(data, off + 16, off + length, ctx)
        return int(length)

    def _sets(self, data: bytes, off: int, end: int, ctx: _Ctx) -> None:
        """Every set of a message. A data set of a known fixed-length template is collected
        here, column by column (what :meth:`_data` would do, made short).
        """
        template_sets = (2, 3) if ctx.ipfix else (0, 1)
        templates = self.cache.templates
        exporter, domain, export_ms, uptime_ms, pos, _, ipfix = ctx
        where = (exporter, domain)
        while end - off >= 4:
            set_id, length = SET_HEADER.unpack_from(data, off)
            if length < 4 or off + length > end:
                if any(data[off:end]):
                    self._reject(
                        pos + off,
                        "bad-length",
                        f"set {set_id} says {length} bytes, {end - off} are left in the message",
                    )
                return  # else trailing zeros: padding
            body = data[off + 4 : off + length]
            if set_id >= 256:
                template = templates.get((exporter, domain, set_id))
                if template is not None and template.plain:
                    self._plain(template, exporter, ipfix, body, export_ms, uptime_ms,
                                pos + off + 4, where)  # fmt: skip
                else:
                    self._data(set_id, body, ctx, at=off + 4)
            elif set_id in template_sets:
                self._templates(body, ctx, options=set_id == template_sets[1], at=off + 4)
            else:
                self._ignored["reserved-set"] += 1
            off += length

    # -- templates -------------------------------------------------------------------------

    def _templates(self, body: bytes, ctx: _Ctx, *, options: bool, at: int) -> None:
        memo_key = (body, ctx.ipfix, options)
        known = self._memo.get(memo_key)
        if known is not None:  # a template set seen before (exporters resend them often)
            for seen in known:
                self._learn(seen, ctx)
            return
        off, clean, learned = 0, True, []
        while len(body) - off >= 4 and any(body[off:]):  # what is left may be padding
            parsed = self._one_template(body, off, ctx, options)
            if parsed is None:
                return
            used, template, problem = parsed
            where = ctx.pos + at + off
            off += used
            if template is None:
                clean = False
                if problem:
                    self._reject(where, "bad-template", problem)
                continue
            learned.append(self._learn(template, ctx))
        if clean:
            if len(self._memo) >= 1024:
                self._memo.clear()
            self._memo[memo_key] = learned

    def _learn(self, template: Template, ctx: _Ctx) -> Template:
        key = (ctx.exporter, ctx.domain, template.tid)
        kept = self.cache.learn(key, template)
        if self.cache.waiting:
            for segment in self.cache.claim(key):
                self._use(kept, key, segment)
        return kept

    def _one_template(
        self, body: bytes, off: int, ctx: _Ctx, options: bool
    ) -> tuple[int, Template | None, str | None] | None:
        """Parse one template record at ``off``: (bytes used, template, problem)."""
        tid, count = SET_HEADER.unpack_from(body, off)
        start = off
        off += 4
        scope = 0
        if options and ctx.ipfix:
            if count == 0:  # withdrawal: no scope count follows
                return self._withdraw(tid, ctx, options), None, None
            if len(body) - off < 2:
                return None
            scope = int.from_bytes(body[off : off + 2], "big")
            off += 2
        elif options:  # v9: template id, scope length and option length, in bytes
            if len(body) - off < 2:
                return None
            scope_len, option_len = count, int.from_bytes(body[off : off + 2], "big")
            off += 2
            scope, count = scope_len // 4, (scope_len + option_len) // 4
        elif count == 0:
            if ctx.ipfix:
                return self._withdraw(tid, ctx, options), None, None
            return None  # v9 padding
        fields = []
        for _ in range(count):
            if len(body) - off < 4:
                self._reject(ctx.pos, "bad-length", f"template {tid} runs past the end of its set")
                return None
            ie, length = SET_HEADER.unpack_from(body, off)
            off += 4
            enterprise = 0
            if ctx.ipfix and ie & 0x8000:
                if len(body) - off < 4:
                    self._reject(ctx.pos, "bad-length", f"template {tid} runs past its set")
                    return None
                enterprise = int.from_bytes(body[off : off + 4], "big")
                ie &= 0x7FFF
                off += 4
            fields.append(Field(ie, length, enterprise))
        used = off - start
        if tid < 256:
            return used, None, f"template id {tid} is reserved (data templates start at 256)"
        zero = [f.ie for f in fields if f.length == 0]
        if zero:
            return used, None, f"template {tid} has fields of length zero: types {zero}"
        if not ctx.ipfix and any(f.length == VARIABLE for f in fields):
            return used, None, f"template {tid}: v9 has no variable-length fields"
        return used, Template(tid, tuple(fields), options=options, scope=scope), None

    def _withdraw(self, tid: int, ctx: _Ctx, options: bool) -> int:
        if tid in (2, 3):
            self.cache.withdraw_all(ctx.exporter, ctx.domain, options=tid == 3)
        else:
            self.cache.withdraw((ctx.exporter, ctx.domain, tid))
        self._ignored["template-withdrawal"] += 1
        return 4

    # -- data ------------------------------------------------------------------------------

    def _data(self, set_id: int, body: bytes, ctx: _Ctx, at: int) -> None:
        key = (ctx.exporter, ctx.domain, set_id)
        domain = (ctx.exporter, ctx.domain)
        segment = Segment(
            body,
            ctx.export_ms,
            ctx.uptime_ms,
            ctx.pos + at,
            self.cache.sampling.get(domain, 0),
            domain,
            self.cache.init_ms.get(domain),
        )
        template = self.cache.get(key)
        if template is None:
            pushed = self.cache.hold(key, segment, ctx.stamp if ctx.stamp is not None else 0.0)
            self._give_up(pushed, "the hold for data without a template is full")
            return
        self._use(template, key, segment)

    def _use(self, template: Template, key: TemplateKey, segment: Segment) -> None:
        if template.variable:
            fixed, _, problem = split_variable(template, segment.body)
            if problem:
                self._reject(segment.pos, "bad-length", f"template {key[2]}: {problem}")
            segment.body = fixed
        if template.options:
            self._options(template, segment)
            return
        if template.record_length == 0:
            self._reject(
                segment.pos, "missing-field", f"template {key[2]} has only variable-length fields"
            )
            return
        self._collect(template, key[0], segment)

    def _options(self, template: Template, segment: Segment) -> None:
        rows = options_values(template, segment.body)
        self.stats.options_records += len(rows)
        self._ignored["options-record"] += len(rows)
        for row in rows:
            rate = next((row[ie] for ie in (34, 305, 50) if row.get(ie)), None)
            if rate:
                self.cache.sampling[segment.domain] = rate
            if row.get(160):
                self.cache.init_ms[segment.domain] = row[160]

    def _give_up(self, pending: list[Pending], why: str) -> None:
        for p in pending:
            exporter, domain, tid = p.key
            self._reject(
                p.segment.pos,
                "no-template",
                f"data set of {len(p.segment.body)} bytes for template {tid} of exporter "
                f"{exporter or '-'} domain {domain}: {why}",
            )

    # -- output ----------------------------------------------------------------------------

    def take(self, final: bool = False) -> Chunk:
        """Decode what was collected; with ``final``, give up on every held data set."""
        if final:
            self._give_up(self.cache.expire(None), "its template never arrived")
        tables = []
        for template, exporter, segments in self._batches.values():
            tables.append(self._decode(template, exporter, segments))
        self._batches.clear()
        self._collected = 0
        flows = pa.concat_tables(tables) if tables else empty_flows()
        chunk = Chunk(flows, self._rejects, self._ignored)
        self._rejects = Rejects(self.file, unit="offset")
        self._ignored = Counter()
        return chunk

    def _decode(self, template: Template, exporter: str, segments: Segments) -> pa.Table:
        out = decode(template, segments, exporter or None, self.fmt, self.file)
        table = conform(out.columns, out.length)
        if not out.bad:
            self.stats.decoded += out.length
            return table
        bad = np.zeros(out.length, bool)
        pos = table["lineage_pos"].to_numpy()
        for reason, mask in out.bad.items():
            for i in np.flatnonzero(mask & ~bad):
                message = _MESSAGES.get(
                    reason,
                    f"template {template.tid} of exporter {exporter or '-'} has no "
                    "source address, destination address or protocol",
                )
                self._reject(int(pos[i]), reason, message)
            bad |= mask
        self.stats.decoded += int((~bad).sum())
        return table.filter(pa.array(~bad))


class _Ctx(NamedTuple):
    exporter: str
    domain: int
    export_ms: int
    uptime_ms: int | None
    pos: int
    stamp: float | None
    ipfix: bool


_HEAD = struct.Struct(">HHII")


def export_seconds(data: bytes) -> float | None:
    """The export time of a v9 or IPFIX datagram in seconds (v5 data never waits)."""
    if len(data) < 16:
        return None
    version, _, ipfix_s, v9_s = _HEAD.unpack_from(data)
    if version == 9:
        return float(v9_s) if len(data) >= 20 else None
    return float(ipfix_s) if version == 10 else None
