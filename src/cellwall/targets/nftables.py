"""nftables, per host: one ``inet`` table ``cellwall`` that a single ``nft -f`` replaces.

Layout (see ``docs/targets.md``):

- ``input`` and ``output`` base chains (policy accept; the last rule carries the mode):
  established/related first, loopback, IPv6 neighbour discovery, then the management tier,
  then one verdict-map lookup per key kind, then the not-allowed default.
- Verdict maps keyed by concatenations, with intervals, per direction and family:
  ``(peer address . protocol . port)`` for TCP/UDP/SCTP, ``(peer . ICMP type)`` for ICMP and
  ICMPv6, ``(peer . protocol)`` for the rest. A lookup costs the same for 10 or 100k
  entries. An entry jumps to the deciding rule's chain.
- One chain and one named counter per rule: ``allow_ID`` (count, accept) or ``deny_ID``
  (log ``cw:drop:ID``, count, drop; in visibility mode log ``cw:would:ID``, count, accept).
- Drop logs go to NFLOG group :data:`LOG_GROUP` (the agent's drop collector reads them) with
  the rule id in the prefix, headers only (``snaplen``), through one named limit
  (``log_rate``) that the whole table shares: a flood cannot overwhelm the host, and the
  verdict never depends on the limit (the log is a rule of its own, before the verdict).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import ClassVar

from cellwall.model.policy import Service
from cellwall.targets.base import Artefact, Artefacts, Target, register
from cellwall.targets.plan import Entry, Estate, HostPlan, MgmtRule

__all__ = [
    "LOG_GROUP",
    "LOG_RATE",
    "NftablesTarget",
    "counter_name",
    "counter_rule_id",
    "host_file",
    "log_prefix",
    "render_host",
]

TABLE = "cellwall"
_PROTO_WORD = {6: "tcp", 17: "udp", 132: "sctp"}
_ICMP_WORD = {1: "icmp", 58: "icmpv6"}
_MGMT_NAMES = {"management:admin": "mgmt_admin", "management:control": "mgmt_control"}
_ND = "nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert"
_LOG_MAX = 120
#: The NFLOG group of drop (and would-drop) logs.
LOG_GROUP = 7
#: The table-wide budget of log records: ``rate/second`` with a burst of ``burst``.
LOG_RATE = (50, 100)
_SNAPLEN = 128  # IPv6 + TCP headers with options; no payload leaves the kernel


def log_prefix(verdict: str, rule_id: str) -> str:
    """The log prefix of a rule's drop (``drop``) or would-drop (``would``): ``cw:V:ID ``."""
    return f"cw:{verdict}:{rule_id[:_LOG_MAX]} "


def _log(verdict: str, rule_id: str) -> str:
    return (
        f'limit name log_rate log prefix "{log_prefix(verdict, rule_id)}" '
        f"group {LOG_GROUP} snaplen {_SNAPLEN}"
    )


def host_file(host: str, ext: str) -> str:
    """A file name for a host: characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", host) + ext


def counter_name(rule_id: str) -> str:
    """The named counter of a rule (``r_ID``) or a management rule (``mgmt_admin``)."""
    return _MGMT_NAMES.get(rule_id, f"r_{rule_id}")


def counter_rule_id(name: str) -> str | None:
    """The rule id behind a counter name (None for ``na_in``/``na_out``/``infra_nd``)."""
    for rid, n in _MGMT_NAMES.items():
        if n == name:
            return rid
    return name[2:] if name.startswith("r_") else None


def _addr(e: Entry) -> str:
    return e.first if e.first == e.last else f"{e.first}-{e.last}"


def _span(lo: int | None, hi: int | None) -> str:
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _element(e: Entry, chain: str) -> str:
    proto = _span(e.proto_lo, e.proto_hi)
    if e.kind == "ports":
        return f"{_addr(e)} . {proto} . {_span(e.lo, e.hi)} : goto {chain}"
    if e.kind == "icmp":
        return f"{_addr(e)} . {_span(e.lo, e.hi)} : goto {chain}"
    return f"{_addr(e)} . {proto} : goto {chain}"


def _map_key(e: Entry) -> tuple[str, int, str]:
    kind = e.kind if e.kind != "icmp" else _ICMP_WORD[e.proto_lo]
    return kind, e.family, kind


_ORDER = ("ports", "icmp", "icmpv6", "proto")


def _map_parts(direction: str, family: int, kind: str) -> tuple[str, str, str]:
    """(map name, typeof expression, lookup rule) for one verdict map."""
    name = f"{direction}{family}_{kind}"
    side = "saddr" if direction == "in" else "daddr"
    addr = f"{'ip' if family == 4 else 'ip6'} {side}"
    if kind == "ports":
        key = f"{addr} . meta l4proto . th dport"
        rule = f"meta l4proto {{ tcp, udp, sctp }} {key} vmap @{name}"
    elif kind == "proto":
        key = f"{addr} . meta l4proto"
        rule = f"{key} vmap @{name}"
    else:
        key = f"{addr} . {kind} type"
        rule = f"meta l4proto {'icmp' if kind == 'icmp' else 'ipv6-icmp'} {key} vmap @{name}"
    return name, key, rule


def _service_match(s: Service) -> str:
    if s.proto is None:
        return ""
    if s.proto in _PROTO_WORD:
        word = _PROTO_WORD[s.proto]
        return f"{word} dport {_span(s.lo, s.hi)}" if s.lo is not None else f"meta l4proto {word}"
    if s.proto in _ICMP_WORD:
        word = _ICMP_WORD[s.proto]
        if s.lo is not None:
            return f"{word} type {s.lo}"
        return f"meta l4proto {'icmp' if s.proto == 1 else 'ipv6-icmp'}"
    return f"meta l4proto {s.proto}"


def _split_family(cidrs: Iterable[str]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {4: [], 6: []}
    for c in cidrs:
        out[6 if ":" in c else 4].append(c)
    return out


class _Renderer:
    """Renders one :class:`HostPlan` as nftables text."""

    def __init__(self, estate: Estate, plan: HostPlan) -> None:
        self.estate = estate
        self.plan = plan
        self.lines: list[str] = []
        ir = estate.ir
        self.chains: dict[int, str] = {}
        for code in plan.codes():
            r = ir.rules[code]
            self.chains[code] = f"{'allow' if r.verdict == 0 else 'deny'}_{r.id}"

    def emit(self, text: str, indent: int = 1) -> None:
        self.lines.append("\t" * indent + text)

    def counters(self) -> None:
        names = [counter_name(m.rule_id) for m in self.plan.management]
        names += [counter_name(self.estate.ir.rules[c].id) for c in self.chains]
        for n in sorted({*names, "na_in", "na_out", "infra_nd"}):
            self.emit(f"counter {n} {{")
            self.emit("}")
        self.emit("limit log_rate {")
        self.emit(f"rate {LOG_RATE[0]}/second burst {LOG_RATE[1]} packets", 2)
        self.emit("}")

    def rule_chains(self) -> None:
        ir = self.estate.ir
        for code, chain in sorted(self.chains.items(), key=lambda kv: kv[1]):
            r = ir.rules[code]
            cn = counter_name(r.id)
            self.emit(f"chain {chain} {{")
            if r.verdict == 0:
                self.emit(f"counter name {cn} accept", 2)
            elif self.plan.mode == "visibility":
                self.emit(_log("would", r.id), 2)
                self.emit(f"counter name {cn} accept", 2)
            else:
                self.emit(_log("drop", r.id), 2)
                self.emit(f"counter name {cn} drop", 2)
            self.emit("}")

    def mgmt_sets(self) -> list[tuple[MgmtRule, int, str]]:
        """Declare the management peer sets; (rule, family, set name) per non-empty set."""
        out = []
        for i, m in enumerate(self.plan.management):
            if m.peers is None:
                fams = {f: list(v) for f, v in self.estate.workload_addresses.items()}
            else:
                fams = _split_family(m.peers)
            for fam in (4, 6):
                if not fams[fam]:
                    continue
                name = f"mgmt{i}_{m.direction}{fam}"
                self.emit(f"set {name} {{")
                self.emit(f"type {'ipv4_addr' if fam == 4 else 'ipv6_addr'}", 2)
                self.emit("flags interval", 2)
                self.elements(fams[fam])
                self.emit("}")
                out.append((m, fam, name))
        return out

    def elements(self, items: list[str]) -> None:
        self.emit("elements = {", 2)
        for j, item in enumerate(items):
            self.emit(item + ("," if j + 1 < len(items) else ""), 3)
        self.emit("}", 2)

    def maps(self, direction: str, entries: tuple[Entry, ...]) -> list[str]:
        """Declare the verdict maps of one direction; return their lookup rules."""
        by_map: dict[tuple[int, str], list[str]] = {}
        for e in entries:
            kind, fam, _ = _map_key(e)
            by_map.setdefault((fam, kind), []).append(_element(e, self.chains[e.code]))
        rules = []
        for fam in (4, 6):
            for kind in _ORDER:
                items = by_map.get((fam, kind))
                if not items:
                    continue
                name, key, rule = _map_parts(direction, fam, kind)
                self.emit(f"map {name} {{")
                self.emit(f"typeof {key} : verdict", 2)
                self.emit("flags interval", 2)
                self.elements(items)
                self.emit("}")
                rules.append(rule)
        return rules

    def base_chain(
        self, direction: str, lookups: list[str], mgmt: list[tuple[MgmtRule, int, str]]
    ) -> None:
        hook, lo = ("input", 'iif "lo"') if direction == "in" else ("output", 'oif "lo"')
        self.emit(f"chain {hook} {{")
        self.emit(f"type filter hook {hook} priority filter; policy accept;", 2)
        self.emit("ct state established,related accept", 2)
        self.emit(f"{lo} accept", 2)
        self.emit(f"icmpv6 type {{ {_ND} }} counter name infra_nd accept", 2)
        side = "saddr" if direction == "in" else "daddr"
        for m, fam, set_name in mgmt:
            if m.direction != direction:
                continue
            addr = f"{'ip' if fam == 4 else 'ip6'} {side} @{set_name}"
            for s in m.services:
                match = " ".join(x for x in (addr, _service_match(s)) if x)
                self.emit(f"{match} counter name {counter_name(m.rule_id)} accept", 2)
        for rule in lookups:
            self.emit(rule, 2)
        na = f"na_{direction}"
        if self.plan.mode == "full":
            self.emit(_log("drop", "not-allowed"), 2)
            self.emit(f"counter name {na} drop", 2)
        else:
            self.emit(_log("would", "not-allowed"), 2)
            self.emit(f"counter name {na} accept", 2)
        self.emit("}")

    def render(self) -> str:
        self.lines = [
            f"table inet {TABLE}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
        ]
        self.counters()
        mgmt = self.mgmt_sets()
        lookups = {"in": self.maps("in", self.plan.inbound)}
        lookups["out"] = self.maps("out", self.plan.outbound)
        self.rule_chains()
        self.base_chain("in", lookups["in"], mgmt)
        self.base_chain("out", lookups["out"], mgmt)
        self.lines.append("}")
        return "\n".join(self.lines) + "\n"


def render_host(estate: Estate, host: str) -> str:
    """The nftables ruleset of one host, as text for ``nft -f``."""
    plan = estate.plan(host)
    key = ("nftables", id(plan))
    body = estate.memo.get(key)
    if not isinstance(body, str):
        body = estate.memo[key] = _Renderer(estate, plan).render()
    return (
        f"# cellwall nftables ruleset for host {host} (mode {plan.mode}).\n"
        "# Generated by `cellwall compile --target nftables`; apply with `nft -f`.\n" + body
    )


@register
class NftablesTarget(Target):
    name: ClassVar[str] = "nftables"
    per_host: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[str]] = frozenset({"deny", "workload", "icmp", "other-proto"})
    description: ClassVar[str] = "one inet table per host, verdict maps keyed by (address, port)"

    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        out = Artefacts(self.name, unsupported=self.gaps(estate.ir))
        for name in [host] if host is not None else sorted(estate.hosts):
            out.files.append(Artefact(host_file(name, ".nft"), render_host(estate, name), name))
        return out
