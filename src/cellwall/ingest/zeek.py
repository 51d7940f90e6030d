"""Zeek ``conn.log`` flows, from Zeek's ASCII (TSV) logs and from its JSON logs.

Two formats are registered: ``zeek`` (:mod:`cellwall.ingest.zeek_tsv`) and ``zeek-json``
(:mod:`cellwall.ingest.zeek_json`, ``LogAscii::use_json=T``). Both map a conn.log record the
same way:

=================  ==========================================================================
flow column        from the conn.log record
=================  ==========================================================================
start              ``ts``: epoch seconds or ISO 8601 (no zone means UTC); in JSON also epoch
                   milliseconds (``JSON::TS_MILLIS``: a number of 1e11 or more)
end                ``ts + duration``; null when duration is unset
src_ip, src_port   ``id.orig_h``, ``id.orig_p`` (addresses in canonical text form)
dst_ip, dst_port   ``id.resp_h``, ``id.resp_p``
proto              ``ip_proto`` when the log has it and it is set; else ``proto``: tcp 6,
                   udp 17, icmp 1 (58 when the addresses are IPv6)
bytes, packets     ``orig_ip_bytes`` (or ``orig_bytes``, payload only, when the log lacks
                   ip bytes), ``orig_pkts``
rev_bytes, ...     ``resp_ip_bytes`` (or ``resp_bytes``), ``resp_pkts``
tcp_flags          TCP only: the OR of the bits that ``history`` letters prove, in either
                   direction: S/s SYN, H/h SYN+ACK, A/a ACK, F/f FIN, R/r RST, Q/q SYN.
                   Other letters (D data, T retransmission, ...) add nothing, so a TCP
                   history of only such letters gives 0; an unset history gives null.
src_initiated      TCP only: true when ``history`` holds ``S`` (the originator's SYN, so
                   Zeek's orientation is the real one); null otherwise, never false
source_id          ``uid``
exporter           the ``sensor`` option, if given; Zeek's log names no sensor
action, direction  null: Zeek observes and does not enforce
lineage_pos        the physical line, 1-based, header lines included
=================  ==========================================================================

ICMP: Zeek keeps ICMP in its port fields. ``id.orig_p`` is the ICMP type of the first
message; ``id.resp_p`` is the type of the answering message for request/reply pairs (echo
request 8 pairs with echo reply 0, so a ping is ``8 → 0``) and the ICMP code for messages
without a reply. They are stored as src_port and dst_port exactly as Zeek wrote them.

A row that cannot be a flow is rejected with its line and one reason: ``no-timestamp``
(``ts`` unset, masked as ``XXXXXXXXXX.XXXXXX`` in Zeek's test baselines, or absent from a
cut log), ``bad-ip``, ``missing-field``, ``bad-proto``, ``bad-field`` (a value of the wrong
type), ``field-count``, ``truncated`` (the input ends inside the line), ``too-long`` (a
line over 1 MiB), ``not-text``, ``bad-json``, ``no-header`` and ``bad-header`` (data under
no usable ``#fields`` header).
A header of another log (``#path dns``) is a :class:`~cellwall.errors.FormatError`.
``#close`` lines and blank lines are counted as ignored.

Headers (TSV): ``#separator`` (``\\x09`` escapes) starts a new log and resets the others;
``#unset_field`` and ``#empty_field`` are honoured, ``#fields`` may come back mid-file with
another column order, ``#types`` must match ``#fields`` in length. A ``#path`` of ``conn``
(or ``conn_*``/``conn-*``, conn logs split by a filter) is a flow log; without ``#path``, a
``#fields`` with ``id.orig_h`` and ``id.resp_h`` is. A bare first line of field names
(``zeek-cut -m`` output) serves as ``#fields``. Other ``#`` lines are comments; in JSON
every ``#`` line is. A JSON file whose first record has a ``_path`` other than conn, or
none of conn.log's own fields, is a FormatError.

Modules: :mod:`~cellwall.ingest.zeek_tsv` and :mod:`~cellwall.ingest.zeek_json` read,
:mod:`~cellwall.ingest.zeek_mapping` maps rows to flows, and
:mod:`~cellwall.ingest.zeek_blocks` cuts input into whole lines and runs the blocks on
threads.

Options (``--option KEY=VALUE``): ``sensor`` (the exporter name), ``workers`` (threads that
parse blocks; default one per CPU, at most 4) and ``block_size`` (bytes per block,
default 8 MiB).
"""

from __future__ import annotations

from cellwall.ingest.zeek_json import ZeekJsonSource
from cellwall.ingest.zeek_tsv import ZeekTsvSource

__all__ = ["ZeekJsonSource", "ZeekTsvSource"]
