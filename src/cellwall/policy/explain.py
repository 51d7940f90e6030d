"""Explain one conversation: every rule that matches it, in precedence order, and why each
one does or does not decide; the verdict itself comes from the same evaluator as replay.

An end is an IP address, a workload name (``workload:NAME`` or just ``NAME``), or labels
(``app=payments,role=web``), which stand for a workload that carries exactly those labels.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from cellwall.errors import UsageError
from cellwall.model.inventory import Workload
from cellwall.model.labels import Labels
from cellwall.model.policy import ICMP_PROTOS, PORT_PROTOS, PolicySet, Service, parse_service
from cellwall.policy.evaluate import _endpoints, _status, evaluate
from cellwall.policy.ir import MANAGEMENT_IDS, LoweredRule
from cellwall.policy.judge import Judge

__all__ = ["Explanation", "RuleMatch", "explain"]

_SYNTH = {"client": "explain:client", "server": "explain:server"}
TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class RuleMatch:
    rule_id: str
    policy: str
    action: str
    decides: bool
    why: str
    unverified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "policy": self.policy,
            "action": self.action,
            "decides": self.decides,
            "why": self.why,
            "unverified": self.unverified,
        }


@dataclass
class Explanation:
    client: str
    server: str
    service: str
    at: datetime
    verdict: str
    rule_id: str | None
    unverified: bool
    blocked: bool
    matches: list[RuleMatch] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "server": self.server,
            "service": self.service,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "verdict": self.verdict,
            "rule": self.rule_id,
            "unverified": self.unverified,
            "blocked": self.blocked,
            "matches": [m.to_dict() for m in self.matches],
        }

    def __str__(self) -> str:
        head = f"{self.client} → {self.server} on {self.service} at {self.at.isoformat()}"
        verdict = self.verdict + (f" by {self.rule_id}" if self.rule_id else "")
        if self.unverified:
            verdict += " (unverified)"
        if self.blocked:
            verdict += "; enforcement would block it"
        lines = [head, f"verdict: {verdict}"]
        if not self.matches:
            lines.append("no rule matches")
        for i, m in enumerate(self.matches, 1):
            mark = "decides" if m.decides else "does not decide"
            lines.append(f"  {i}. {m.rule_id} [{m.policy}, {m.action}] {mark}: {m.why}")
        return "\n".join(lines)


def _end(
    text: str, side: str, workloads: list[Workload], at: datetime
) -> tuple[str, str, str | None, Workload | None]:
    """(description, ip, the workload whose class stands for the end (None: by its
    address), a stand-in workload to add or None) for one end."""
    try:
        return text, str(ipaddress.ip_address(text)), None, None
    except ValueError:
        pass
    name = text.removeprefix("workload:")
    found = next((w for w in workloads if w.name == name), None)
    if found is not None:
        ip = next((a.ip for a in found.addresses if a.covers(at)), None)
        if ip is not None:
            return f"workload:{name} ({ip})", ip, None, None
        return f"workload:{name}", "", name, None
    if "=" in text:
        try:
            pairs = dict(p.split("=", 1) for p in text.split(",") if p)
            labels = Labels.of({k.strip(): v.strip() for k, v in pairs.items()})
        except ValueError as exc:
            raise UsageError(f"{side} {text!r}: {exc}") from None
        stand_in = Workload(_SYNTH[side], labels=labels)
        return f"labels {labels}", "", stand_in.name, stand_in
    raise UsageError(
        f"{side} {text!r} is not an IP address, a workload or labels",
        hint="write 10.1.2.3, pay-web-1 (or workload:pay-web-1), or app=payments,role=web",
    )


def _service(text: str) -> tuple[Service, int, int]:
    try:
        s = parse_service(text)
    except ValueError as exc:
        raise UsageError(f"service {text!r}: {exc}") from None
    one = "explain judges one conversation: give one protocol and port, such as tcp/443"
    if s.proto is None or s.narrowed:
        raise UsageError(f"service {text!r}: {one}")
    if s.lo != s.hi:
        raise UsageError(f"service {text!r} is a range: {one}")
    if s.proto in PORT_PROTOS and s.lo is None:
        raise UsageError(f"service {text!r} has no port: {one}")
    if s.proto in ICMP_PROTOS:
        return s, -1, s.lo if s.lo is not None else -1
    return s, s.lo if s.lo is not None else -1, 0


def _why(
    j: Judge, lr: LoweredRule, row: dict[str, Any], facts: dict[str, list[Any]]
) -> tuple[bool, bool, str]:
    """(matches, unverified, reason) of one rule for the conversation in ``row``."""
    g = j.ir.groups
    gs, gd = int(g.ep_src[row["cep"]]), int(g.ep_dst[row["sep"]])
    if not g.src.match[gs][lr.index]:
        return False, False, f"from {lr.rule.from_} does not match the client"
    if not g.dst.match[gd][lr.index]:
        return False, False, f"to {lr.rule.to} does not match the server"
    if not g._matched(gs, gd)[lr.index]:
        return False, False, f"the ends differ on same: {list(lr.same)}"
    atom = row["atom"]
    if lr.plain[atom]:
        return True, False, "from, to and service match"
    status = max((_status(s, facts, 0) for s, m in lr.narrowed if m[atom]), default=0)
    if status == 0:
        return False, False, "the service does not match"
    if status == 1:
        return True, True, "matches at L4; the narrowing's facts are missing (unverified)"
    return True, False, "from, to, service and its narrowing match"


def explain(
    policy: PolicySet,
    workloads: Sequence[Workload],
    src: str,
    dst: str,
    service: str,
    at: datetime,
    *,
    facts: dict[str, Any] | None = None,
    dns: pa.Table | None = None,
) -> Explanation:
    """Explain the conversation ``src`` → ``dst`` on ``service`` at ``at``."""
    wl = list(workloads)
    cdesc, cip, cname, cextra = _end(src, "client", wl, at)
    sdesc, sip, sname, sextra = _end(dst, "server", wl, at)
    wl += [w for w in (cextra, sextra) if w is not None]
    svc, server_port, client_port = _service(service)
    port = client_port if svc.proto in ICMP_PROTOS else server_port
    f = {
        k: (facts or {}).get(k) for k in ("server_process", "http_method", "http_path", "icmp_code")
    }
    t = pa.table(
        {
            "client_ip": [cip],
            "server_ip": [sip],
            "proto": pa.array([svc.proto], pa.uint8()),
            "server_port": pa.array([server_port], pa.int32()),
            "client_port": pa.array([client_port], pa.int32()),
            "start": pa.array([at], TS),
            "server_process": pa.array([f["server_process"]], pa.string()),
            "http_method": pa.array([f["http_method"]], pa.string()),
            "http_path": pa.array([f["http_path"]], pa.string()),
            "icmp_code": pa.array([f["icmp_code"]], pa.int32()),
        }
    )
    with Judge(policy, wl, dns) as j:
        ident = j.identify(t)
        cls = {}
        for side, name in (("client", cname), ("server", sname)):
            c = int(ident[f"{side}_class"][0].as_py())
            cls[side] = j.ir.classes.workload_class[name] if name is not None else c
        ident = ident.set_column(
            ident.column_names.index("client_class"),
            "client_class",
            pa.array([cls["client"]], pa.int32()),
        ).set_column(
            ident.column_names.index("server_class"),
            "server_class",
            pa.array([cls["server"]], pa.int32()),
        )
        v = evaluate(ident, j.ir, dns).to_pylist()[0]
        row = {
            "cep": int(
                _endpoints(j.ir, ident, "client", np.asarray([cls["client"]], np.int32), dns)[0]
            ),
            "sep": int(
                _endpoints(j.ir, ident, "server", np.asarray([cls["server"]], np.int32), dns)[0]
            ),
            "atom": int(j.ir.atoms.atoms_of(np.asarray([svc.proto]), np.asarray([port]))[0]),
        }
        fl = {k: [val] for k, val in f.items()}
        matches: list[RuleMatch] = []
        if v["rule_id"] in MANAGEMENT_IDS:
            matches.append(
                RuleMatch(v["rule_id"], "management", "allow", True, "the management tier")
            )
        decided = v["rule_id"] in MANAGEMENT_IDS
        for r in j.ir.order.tolist():
            lr = j.ir.rules[r]
            ok, unverified, why = _why(j, lr, row, fl)
            if not ok:
                continue
            decides = not decided and lr.id == v["rule_id"]
            if not decides:
                why += f"; {v['rule_id']} comes first" if v["rule_id"] else ""
            decided |= decides
            matches.append(RuleMatch(lr.id, lr.policy, lr.action, decides, why, unverified))
    return Explanation(
        cdesc,
        sdesc,
        str(svc),
        at,
        v["verdict"],
        v["rule_id"],
        v["unverified"],
        v["blocked"],
        matches,
    )
