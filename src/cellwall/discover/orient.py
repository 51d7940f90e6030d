"""Orientation: flow records become conversations with a client, a server and a service.

Every later stage (the map, verdicts, hit counts) counts conversations, so this pass comes
first. It is a pure function of an Ibis table in the lake's flow schema; nothing here runs a
Python loop over flows, and the same expressions run on any Ibis backend.

How a record is grouped (docs/map.md, "Conversations", is the reference):

1. **Unordered key.** Each record's two ends are put in a canonical order, ``a`` and ``b``
   (the smaller ``(ip, port)`` is ``a``), so a request ``api:41234 → db:5432`` and its reply
   ``db:5432 → api:41234`` share the key ``(proto, a_ip, a_port, b_ip, b_port)``. Ports are
   ``-1`` where the protocol has none.
2. **Gap rule.** Records of one key, ordered by ``start``, belong to one conversation until a
   record starts more than ``gap`` (default 120 s) after every earlier record of that key
   has ended (records with the same start always fall in one conversation).
   Which exporter wrote a record plays no part, so the same conversation seen by two
   exporters is one conversation.
3. **Orientation.** Each record gives a verdict on which end is the client, with the strength
   of its evidence, best first:

   ``initiator``  the exporter saw who opened it (``src_initiated``: Zeek history, IPFIX
                  biflow direction, Hubble ``is_reply``);
   ``syn``        a TCP record whose flags hold SYN without ACK, or a record the exporter
                  rejected (a stateful firewall never rejects a reply): its source is the
                  client;
   ``listening``  exactly one end is a *listening endpoint*: an ``(ip, proto, port)`` that is
                  seen with two or more different peer ports, all unprivileged (1024 and
                  up: clients connect from there), or that exporter evidence shows
                  answering. An ephemeral client port sees one peer port, and a scanner
                  that reuses its source port sees the low ports it probes;
   ``port``       the last resort, port numbers: the end with the more "server-like" port is
                  the server (below 1024, then 1024–32767, then ephemeral 32768+); on a tie
                  the lower port is the server, and on equal ports the source is the client.
                  ICMP echo replies (types 0, 129) come from the server.

   The conversation takes the verdict of its best-evidenced record (on equal evidence, the
   smaller ``a`` end is the client), and every record of it, replies included, carries that
   verdict.
4. **Conversation id**: ``PROTO:CLIENT_IP:CLIENT_PORT>SERVER_IP:SERVER_PORT@FIRST_START``,
   the first start in ISO form with microseconds. It is stable for a given window start.
"""

from __future__ import annotations

from typing import Any

import ibis

__all__ = [
    "DEFAULT_GAP_SECONDS",
    "EPHEMERAL_FLOOR",
    "EVIDENCE",
    "conversations",
    "listening_endpoints",
    "orient",
]

DEFAULT_GAP_SECONDS = 120
EPHEMERAL_FLOOR = 32768
EVIDENCE = ("initiator", "syn", "listening", "port")  # best first; rank = index + 1
_KEY = ("proto", "a_ip", "a_port", "b_ip", "b_port")
_SYN, _ACK = 2, 16
_ICMP = (1, 58)


def _ends(t: Any) -> Any:
    """Adds integer ports (-1 for none), the canonical ends a/b and ``a_is_src``."""
    sp = t.src_port.cast("int32").fill_null(-1)
    dp = t.dst_port.cast("int32").fill_null(-1)
    a_is_src = (t.src_ip < t.dst_ip) | ((t.src_ip == t.dst_ip) & (sp <= dp))
    return t.mutate(
        sp=sp,
        dp=dp,
        a_is_src=a_is_src,
        a_ip=ibis.ifelse(a_is_src, t.src_ip, t.dst_ip),
        a_port=ibis.ifelse(a_is_src, sp, dp),
        b_ip=ibis.ifelse(a_is_src, t.dst_ip, t.src_ip),
        b_port=ibis.ifelse(a_is_src, dp, sp),
        end_=t.end.fill_null(t.start),
    )


def _exporter_verdict(t: Any) -> tuple[Any, Any]:
    """(rank or null, src is client) from the exporter's own evidence."""
    syn_only = (
        (t.proto == 6)
        & t.tcp_flags.notnull()
        & ((t.tcp_flags.cast("int32") & _SYN) != 0)
        & ((t.tcp_flags.cast("int32") & _ACK) == 0)
    )
    rejected = t.action.notnull() & (t.action == "REJECT")
    rank = ibis.cases(
        (t.src_initiated.notnull(), 1), (syn_only | rejected, 2), else_=ibis.null("int8")
    )
    src_client = ibis.ifelse(t.src_initiated.notnull(), t.src_initiated, True)
    return rank, src_client


def _listening_by_peers(one_end: Any, other_end: Any) -> Any:
    """``(ip, proto, port)`` seen with two or more peer ports, all of them 1024 or higher
    (a scanner that reuses its source port must not look like a server)."""
    both = one_end.union(other_end, distinct=False).filter(lambda x: x.port >= 0)
    return (
        both.group_by(["ip", "proto", "port"])
        .aggregate(lo=both.peer.min(), hi=both.peer.max())
        .filter(lambda x: (x.lo < x.hi) & (x.lo >= 1024))
        .select("ip", "proto", "port")
    )


def listening_endpoints(t: Any) -> Any:
    """``(ip, proto, port)`` that listen: seen with two or more peer ports, or seen answering
    in a record with exporter evidence. ``t`` is a table after :func:`_ends`."""
    src = t.select(ip=t.src_ip, proto=t.proto, port=t.sp, peer=t.dp)
    dst = t.select(ip=t.dst_ip, proto=t.proto, port=t.dp, peer=t.sp)
    return _listening_by_peers(src, dst).union(_answered(t), distinct=True)


def _answered(t: Any) -> Any:
    """``(ip, proto, port)`` that a record with exporter evidence shows answering."""
    rank, src_client = _exporter_verdict(t)
    ev = t.mutate(rank_=rank, src_client_=src_client).filter(lambda x: x.rank_.notnull())
    return ev.select(
        ip=ibis.ifelse(ev.src_client_, ev.dst_ip, ev.src_ip),
        proto=ev.proto,
        port=ibis.ifelse(ev.src_client_, ev.dp, ev.sp),
    ).filter(lambda x: x.port >= 0)


def _port_class(p: Any) -> Any:
    return ibis.cases((p < 1024, 0), (p < EPHEMERAL_FLOOR, 1), else_=2)


def _verdicts(t: Any, listen: Any) -> Any:
    """Adds ``code`` = evidence rank * 2 + (0 when ``a`` is the client, else 1)."""
    ls = listen.select(l_ip=listen.ip, l_proto=listen.proto, l_port=listen.port, l_src=True)
    ld = listen.select(d_ip=listen.ip, d_proto=listen.proto, d_port=listen.port, l_dst=True)
    j = t.left_join(ls, [t.src_ip == ls.l_ip, t.proto == ls.l_proto, t.sp == ls.l_port])
    j = j.left_join(ld, [j.dst_ip == ld.d_ip, j.proto == ld.d_proto, j.dp == ld.d_port])
    j = j.drop("l_ip", "l_proto", "l_port", "d_ip", "d_proto", "d_port")
    src_l, dst_l = j.l_src.notnull(), j.l_dst.notnull()
    ex_rank, ex_src_client = _exporter_verdict(j)
    port_src_client = _port_src_client(j)
    rank = ibis.cases((ex_rank.notnull(), ex_rank), (src_l != dst_l, 3), else_=4)
    src_client = ibis.cases(
        (ex_rank.notnull(), ex_src_client), (src_l != dst_l, dst_l), else_=port_src_client
    )
    a_client = src_client == j.a_is_src
    code = rank.cast("int32") * 2 + ibis.ifelse(a_client, 0, 1)
    return j.mutate(code=code).drop("l_src", "l_dst")


def _sessions(t: Any, gap_seconds: int) -> Any:
    """Adds ``seq``: the conversation's number within its key (the gap rule)."""
    # The latest end of all earlier records (running max, so ties in ``start`` cannot
    # matter: a tied record never starts after another tied record ends), then a running
    # count over a RANGE frame, so that records with one start share one number.
    before = ibis.window(group_by=list(_KEY), order_by="start", rows=(None, -1))
    prev = t.end_.max().over(before)
    new = (prev.isnull() | (t.start > prev + ibis.interval(seconds=gap_seconds))).cast("int64")
    t = t.mutate(new_=new)
    cw = ibis.window(group_by=list(_KEY), order_by="start", range=(None, 0))
    return t.mutate(seq=t.new_.sum().over(cw)).drop("new_")


def _prepared(t: Any, gap_seconds: int) -> Any:
    e = _ends(t)
    return _sessions(_verdicts(e, listening_endpoints(e)), gap_seconds)


def _oriented_names(t: Any, client_is_a: Any) -> dict[str, Any]:
    return {
        "client_ip": ibis.ifelse(client_is_a, t.a_ip, t.b_ip),
        "client_port": ibis.ifelse(client_is_a, t.a_port, t.b_port),
        "server_ip": ibis.ifelse(client_is_a, t.b_ip, t.a_ip),
        "server_port": ibis.ifelse(client_is_a, t.b_port, t.a_port),
    }


def _evidence(best: Any) -> Any:
    rank = (best // 2).cast("int32")
    return ibis.cases(*((rank == i + 1, name) for i, name in enumerate(EVIDENCE)))


def service_name(proto: Any, port: Any) -> Any:
    """``tcp/5432``, ``udp/53``, ``icmp``, ``proto-N/PORT``."""
    names = ibis.cases((proto == 6, "tcp"), (proto == 17, "udp"), (proto == 132, "sctp"),
                       else_="proto-" + proto.cast("string"))  # fmt: skip
    return ibis.cases(
        (proto == 1, "icmp"),
        (proto == 58, "icmpv6"),
        (port < 0, names),
        else_=names + "/" + port.cast("string"),
    )


def orient(t: Any, *, gap_seconds: int = DEFAULT_GAP_SECONDS) -> Any:
    """Each record of ``t`` with its conversation's orientation.

    Adds ``client_ip``, ``client_port``, ``server_ip``, ``server_port`` (``-1`` where the
    protocol has no ports), ``service``, ``conversation_id``, ``orientation_evidence`` and
    ``is_reply`` (the record runs server → client).
    """
    s = _prepared(t, gap_seconds)
    cw = ibis.window(group_by=[*_KEY, "seq"])
    s = s.mutate(best_=s.code.min().over(cw), first_=s.start.min().over(cw))
    client_is_a = (s.best_ % 2) == 0
    names = _oriented_names(s, client_is_a)
    s = s.mutate(**names, orientation_evidence=_evidence(s.best_))
    cid = (
        s.proto.cast("string") + ":" + s.client_ip + ":" + s.client_port.cast("string") + ">"
        + s.server_ip + ":" + s.server_port.cast("string") + "@"
        + s.first_.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    )  # fmt: skip
    is_reply = (s.src_ip == s.server_ip) & (s.sp == s.server_port) & (s.src_ip != s.dst_ip)
    s = s.mutate(
        service=service_name(s.proto, s.server_port), conversation_id=cid, is_reply=is_reply
    )
    helpers = ["sp", "dp", "a_is_src", "a_ip", "a_port", "b_ip", "b_port", "end_", "code"]
    return s.drop(*helpers, "seq", "best_", "first_")


def _port_src_client(t: Any) -> Any:
    """The last resort: is the source the client, judged by port numbers?"""
    sc, dc = _port_class(t.sp), _port_class(t.dp)
    return ibis.cases(
        (t.proto.isin(_ICMP), ~t.sp.isin((0, 129))),
        (sc != dc, sc > dc),
        else_=t.sp >= t.dp,  # equal ports: the source sent first
    )


def _merged_records(e: Any) -> Any:
    """Records with one key, exporter, start and end (a VPC request and its reply) merged,
    with bytes and packets per direction (a → b, b → a) and the best exporter and port
    codes (rank * 2 + 0 when ``a`` is the client, else 1)."""
    zero = ibis.literal(0, "int64")
    rb = e.rev_bytes.cast("int64").fill_null(zero)
    rp = e.rev_packets.cast("int64").fill_null(zero)
    by, pk = e.bytes.cast("int64").fill_null(zero), e.packets.cast("int64").fill_null(zero)
    ex_rank, ex_src_client = _exporter_verdict(e)
    a_side = ibis.ifelse(ex_src_client == e.a_is_src, 0, 1)
    port_side = ibis.ifelse(_port_src_client(e) == e.a_is_src, 0, 1)
    e = e.mutate(
        ab_b=ibis.ifelse(e.a_is_src, by, rb),
        ba_b=ibis.ifelse(e.a_is_src, rb, by),
        ab_p=ibis.ifelse(e.a_is_src, pk, rp),
        ba_p=ibis.ifelse(e.a_is_src, rp, pk),
        exporter_=e.exporter.fill_null(""),
        code_ex=ex_rank.cast("int32") * 2 + a_side,
        code_port=8 + port_side,
    )
    return e.group_by([*_KEY, "exporter_", "start", "end_"]).aggregate(
        **_directional(e), records=e.count()
    )


def _directional(x: Any) -> dict[str, Any]:
    """The per-direction counters and the strongest evidence codes of a group of records."""
    return {
        "ab_b": x.ab_b.sum(),
        "ba_b": x.ba_b.sum(),
        "ab_p": x.ab_p.sum(),
        "ba_p": x.ba_p.sum(),
        "code_ex": x.code_ex.min(),
        "code_port": x.code_port.min(),
    }


def _listening_from_keys(span: Any, e: Any) -> Any:
    """:func:`listening_endpoints` from the distinct keys (each key holds both ends and
    their ports) and the records (``e``, after :func:`_ends`) with exporter evidence."""
    a = span.select(ip=span.a_ip, proto=span.proto, port=span.a_port, peer=span.b_port)
    b = span.select(ip=span.b_ip, proto=span.proto, port=span.b_port, peer=span.a_port)
    by_peers = _listening_by_peers(a, b)
    return by_peers.union(_answered(e), distinct=True)


def conversations(t: Any, *, gap_seconds: int = DEFAULT_GAP_SECONDS) -> Any:
    """One row per conversation: ``client_ip``, ``server_ip``, ``server_port``, ``proto``,
    ``service``, ``start``, ``end``, ``bytes``, ``packets`` (both directions), ``records``,
    ``exporters`` and ``orientation_evidence``.

    The same rules as :func:`orient`, arranged for speed: records are merged first, the
    listening endpoints come from the distinct keys, and only keys whose records span more
    than ``gap`` (a key whose records all start within ``gap`` of its first start is one
    conversation) go through the window functions. A test keeps the two equal.

    Bytes and packets of a conversation that several exporters saw are those of the exporter
    that saw the most in each direction, never the sum.
    """
    e = _ends(t)
    r = _merged_records(e)
    gap = ibis.interval(seconds=gap_seconds)
    span = r.group_by(list(_KEY)).aggregate(lo_=r.start.min(), hi_=r.start.max())
    multi = span.filter(span.hi_ > span.lo_ + gap).select(*_KEY)
    single = r.anti_join(multi, list(_KEY)).mutate(seq=ibis.literal(0, "int64"))
    s = single.union(_sessions(r.semi_join(multi, list(_KEY)), gap_seconds), distinct=False)
    per_exp = s.group_by([*_KEY, "seq", "exporter_"]).aggregate(
        **_directional(s),
        start=s.start.min(),
        end=s.end_.max(),
        records=s.records.sum(),
    )
    c = per_exp.group_by([*_KEY, "seq"]).aggregate(
        bytes=per_exp.ab_b.max() + per_exp.ba_b.max(),
        packets=per_exp.ab_p.max() + per_exp.ba_p.max(),
        code_ex=per_exp.code_ex.min(),
        code_port=per_exp.code_port.min(),
        start=per_exp.start.min(),
        end=per_exp.end.max(),
        records=per_exp.records.sum(),
        exporters=per_exp.count(),
    )
    listen = _listening_from_keys(span, e)
    la = listen.select(la_ip=listen.ip, la_proto=listen.proto, la_port=listen.port, a_l=True)
    lb = listen.select(lb_ip=listen.ip, lb_proto=listen.proto, lb_port=listen.port, b_l=True)
    c = c.left_join(la, [c.a_ip == la.la_ip, c.proto == la.la_proto, c.a_port == la.la_port])
    c = c.left_join(lb, [c.b_ip == lb.lb_ip, c.proto == lb.lb_proto, c.b_port == lb.lb_port])
    a_l, b_l = c.a_l.notnull(), c.b_l.notnull()
    best = ibis.cases(
        (c.code_ex.notnull(), c.code_ex),
        (a_l != b_l, ibis.ifelse(b_l, 6, 7)),
        else_=c.code_port,
    )
    c = c.mutate(best_=best)
    names = _oriented_names(c, (c.best_ % 2) == 0)
    return c.select(
        client_ip=names["client_ip"],
        server_ip=names["server_ip"],
        server_port=names["server_port"],
        proto=c.proto,
        service=service_name(c.proto, names["server_port"]),
        start=c.start,
        end=c.end,
        bytes=c.bytes,
        packets=c.packets,
        records=c.records,
        exporters=c.exporters,
        orientation_evidence=_evidence(c.best_),
    )
