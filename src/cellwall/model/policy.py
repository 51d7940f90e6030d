"""The policy language as canonical, immutable values (CONTRACTS.md, Policy).

A :class:`PolicySet` is what a policy directory holds: :class:`Policy` documents with their
:class:`Rule` s, :class:`IPList` s, :class:`InvariantSet` s, :class:`RoleBinding` s and the
workspace :class:`Settings` (default mode, management tier). Values are frozen and their
equality follows the canonical form (sorted label values, sorted CIDRs); where a value was
read from (:class:`~cellwall.model.inventory.Origin`) never takes part in equality.

A :class:`Selector` is an AND of terms. Workload terms (labels, ``not``, ``workload``) match
workloads only; address terms (``iplist``, ``cidrs``, ``fqdn``) match unmanaged addresses
only; ``any`` matches both. Mixing the two kinds is refused by the loader.

A :class:`Service` is a protocol (``None`` = any) with an inclusive port range (TCP, UDP,
SCTP) or an ICMP type, and optional *narrowing* facts: process name, HTTP methods and path
patterns, and the ICMP code. A flow that lacks a narrowing's fact is judged at L4 and its
verdict is marked ``unverified``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from cellwall.model.inventory import Origin

__all__ = [
    "ACTIONS",
    "ICMP_PROTOS",
    "MODES",
    "PORT_PROTOS",
    "PROTO_NAMES",
    "RULE_ACTIONS",
    "IPList",
    "Invariant",
    "InvariantSet",
    "LabelTerm",
    "Management",
    "Policy",
    "PolicySet",
    "RoleBinding",
    "Rule",
    "Selector",
    "Service",
    "Settings",
    "parse_service",
]

ACTIONS = ("allow", "deny", "override-deny")
RULE_ACTIONS = ACTIONS
MODES = ("visibility", "selective", "full")  # weakest first
ROLES = ("admin", "security-architect", "app-owner", "auditor")
INVARIANT_KINDS = ("forbid", "only", "require", "forbid_path")
PROTO_NAMES = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
PORT_PROTOS = (6, 17, 132)
ICMP_PROTOS = (1, 58)
_NO_ORIGIN = Origin("<memory>")


@dataclass(frozen=True, slots=True)
class Service:
    """A protocol and port range (or ICMP type), with optional narrowing facts.

    ``proto`` None means every protocol; ``lo``/``hi`` None means every port (or type).
    """

    proto: int | None = None
    lo: int | None = None
    hi: int | None = None
    icmp_code: int | None = None
    process: str | None = None
    http_methods: tuple[str, ...] = ()
    http_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.proto is not None and not 0 <= self.proto <= 255:
            raise ValueError(f"protocol {self.proto} is not 0-255")
        if (self.lo is None) != (self.hi is None):
            raise ValueError("a port range needs both ends")
        if self.lo is not None and self.hi is not None:
            if self.proto not in PORT_PROTOS + ICMP_PROTOS:
                raise ValueError(f"protocol {self.proto} has no ports")
            top = 255 if self.proto in ICMP_PROTOS else 65535
            if not 0 <= self.lo <= self.hi <= top:
                raise ValueError(f"port range {self.lo}-{self.hi} is not within 0-{top}")
        if self.icmp_code is not None and (self.proto not in ICMP_PROTOS or self.lo is None):
            raise ValueError("an ICMP code needs an ICMP type")
        object.__setattr__(
            self, "http_methods", tuple(sorted({m.upper() for m in self.http_methods}))
        )
        object.__setattr__(self, "http_paths", tuple(sorted(set(self.http_paths))))
        for p in self.http_paths:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(
                    f"HTTP path pattern {p!r} is not a regular expression: {exc}"
                ) from None

    @property
    def narrowed(self) -> bool:
        """True when the service asks for facts beyond L4 (process, HTTP, ICMP code)."""
        return bool(self.process or self.http_methods or self.http_paths) or (
            self.icmp_code is not None
        )

    def l4(self) -> Service:
        """The service without its narrowing."""
        return Service(self.proto, self.lo, self.hi)

    def __str__(self) -> str:
        if self.proto is None:
            base = "any"
        else:
            name = next((k for k, v in PROTO_NAMES.items() if v == self.proto), None)
            base = name if name is not None else f"proto/{self.proto}"
            if self.lo is not None:
                base += f"/{self.lo}" if self.lo == self.hi else f"/{self.lo}-{self.hi}"
            if self.icmp_code is not None:
                base += f"/{self.icmp_code}"
        extra = []
        if self.process:
            extra.append(f"process={self.process}")
        if self.http_methods:
            extra.append("methods=" + "|".join(self.http_methods))
        if self.http_paths:
            extra.append("paths=" + "|".join(self.http_paths))
        return base + (f"[{','.join(extra)}]" if extra else "")


def _int(text: str, what: str, top: int) -> int:
    if not text.isdigit():
        raise ValueError(f"{what} {text!r} is not a number")
    value = int(text)
    if value > top:
        raise ValueError(f"{what} {value} is above {top}")
    return value


def parse_service(text: str) -> Service:
    """``tcp/443``, ``udp/1000-2000``, ``icmp/8/0``, ``proto/47``, ``any`` (ValueError if bad)."""
    parts = text.strip().lower().split("/")
    head = parts[0]
    if head == "any" and len(parts) == 1:
        return Service()
    if head == "proto":
        if len(parts) != 2:
            raise ValueError(f"{text!r}: write proto/N with N the IP protocol number")
        return Service(_int(parts[1], "protocol", 255))
    if head not in PROTO_NAMES:
        raise ValueError(
            f"unknown protocol {head!r} in {text!r}: use tcp, udp, sctp, icmp, icmpv6, proto/N "
            "or any"
        )
    proto = PROTO_NAMES[head]
    if proto in ICMP_PROTOS:
        if len(parts) > 3:
            raise ValueError(f"{text!r}: write {head}, {head}/TYPE or {head}/TYPE/CODE")
        if len(parts) == 1:
            return Service(proto)
        kind = _int(parts[1], "ICMP type", 255)
        code = _int(parts[2], "ICMP code", 255) if len(parts) == 3 else None
        return Service(proto, kind, kind, icmp_code=code)
    if len(parts) == 1:
        return Service(proto)
    if len(parts) != 2:
        raise ValueError(f"{text!r}: write {head}/PORT or {head}/LOW-HIGH")
    lo_text, _, hi_text = parts[1].partition("-")
    lo = _int(lo_text, "port", 65535)
    hi = _int(hi_text, "port", 65535) if hi_text else lo
    if lo > hi:
        raise ValueError(f"{text!r}: the range {lo}-{hi} runs backwards")
    return Service(proto, lo, hi)


@dataclass(frozen=True, slots=True)
class LabelTerm:
    """``key`` has one of ``values`` (sorted, distinct)."""

    key: str
    values: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(set(self.values))))


@dataclass(frozen=True, slots=True)
class Selector:
    """An AND of terms; see the module docstring for which terms match what."""

    labels: tuple[LabelTerm, ...] = ()
    negations: tuple[Selector, ...] = ()
    workload: str | None = None
    iplist: str | None = None
    cidrs: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    fqdn: str | None = None
    any: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", tuple(sorted(self.labels, key=lambda t: t.key)))
        object.__setattr__(self, "negations", tuple(sorted(set(self.negations), key=repr)))
        object.__setattr__(self, "cidrs", tuple(sorted(set(self.cidrs))))
        object.__setattr__(self, "except_", tuple(sorted(set(self.except_))))
        if self.fqdn is not None:
            object.__setattr__(self, "fqdn", self.fqdn.lower().rstrip("."))

    @classmethod
    def of(cls, **labels: str | list[str] | tuple[str, ...]) -> Selector:
        """A label selector: ``Selector.of(role="web", env=["prod", "staging"])``."""
        terms = [LabelTerm(k, (v,) if isinstance(v, str) else tuple(v)) for k, v in labels.items()]
        return cls(labels=tuple(terms))

    @property
    def workload_terms(self) -> bool:
        return bool(self.labels or self.negations or self.workload is not None)

    @property
    def address_terms(self) -> bool:
        return self.iplist is not None or bool(self.cidrs) or self.fqdn is not None

    @property
    def label_based(self) -> bool:
        """True when scope applies: label terms, ``not`` or ``any``."""
        return bool(self.labels or self.negations or self.any)

    def value_of(self, key: str) -> tuple[str, ...] | None:
        for t in self.labels:
            if t.key == key:
                return t.values
        return None

    def __str__(self) -> str:
        parts = [f"{t.key}={'|'.join(t.values)}" for t in self.labels]
        parts += [f"not({n})" for n in self.negations]
        if self.workload is not None:
            parts.append(f"workload={self.workload}")
        if self.iplist is not None:
            parts.append(f"iplist={self.iplist}")
        if self.cidrs:
            parts.append("cidrs=" + ",".join(self.cidrs))
        if self.except_:
            parts.append("except=" + ",".join(self.except_))
        if self.fqdn is not None:
            parts.append(f"fqdn={self.fqdn}")
        if self.any:
            parts.append("any")
        return "{" + ", ".join(parts) + "}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``from`` → ``to`` on ``services`` with an action and its metadata."""

    id: str
    from_: Selector
    to: Selector
    services: tuple[Service, ...]
    action: str = "allow"
    from_outside_scope: bool = False
    same: tuple[str, ...] = ()
    owner: str | None = None
    justification: str | None = None
    review_by: date | None = None
    ticket: str | None = None
    origin: Origin = field(default=_NO_ORIGIN, compare=False)
    #: The last day the rule is valid; after it, compilers refuse the rule unless told.
    expires: date | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"rule {self.id}: action {self.action!r} is not one of {ACTIONS}")
        object.__setattr__(self, "same", tuple(sorted(set(self.same))))


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy document: an optional label scope, a mode and rules (in written order)."""

    name: str
    rules: tuple[Rule, ...] = ()
    scope: Selector | None = None
    mode: str | None = None
    owner: str | None = None
    origin: Origin = field(default=_NO_ORIGIN, compare=False)

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(f"policy {self.name}: mode {self.mode!r} is not one of {MODES}")


@dataclass(frozen=True, slots=True)
class IPList:
    """A named set of CIDRs less ``except``, and optionally FQDNs."""

    name: str
    cidrs: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    fqdns: tuple[str, ...] = ()
    origin: Origin = field(default=_NO_ORIGIN, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cidrs", tuple(sorted(set(self.cidrs))))
        object.__setattr__(self, "except_", tuple(sorted(set(self.except_))))
        object.__setattr__(
            self, "fqdns", tuple(sorted({f.lower().rstrip(".") for f in self.fqdns}))
        )


@dataclass(frozen=True, slots=True)
class Invariant:
    """One invariant (CONTRACTS.md, Invariants); checked by ``cellwall analyze``."""

    id: str
    kind: str
    from_: Selector
    to: Selector
    services: tuple[Service, ...] = ()
    max_hops: int | None = None
    origin: Origin = field(default=_NO_ORIGIN, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in INVARIANT_KINDS:
            raise ValueError(
                f"invariant {self.id}: kind {self.kind!r} is not one of {INVARIANT_KINDS}"
            )


@dataclass(frozen=True, slots=True)
class InvariantSet:
    name: str
    invariants: tuple[Invariant, ...] = ()
    origin: Origin = field(default=_NO_ORIGIN, compare=False)


@dataclass(frozen=True, slots=True)
class RoleBinding:
    """People (``subjects``) who hold ``role``; an app-owner only for ``apps``."""

    name: str
    role: str
    subjects: tuple[str, ...]
    apps: tuple[str, ...] = ()
    origin: Origin = field(default=_NO_ORIGIN, compare=False)

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role binding {self.name}: role {self.role!r} is not one of {ROLES}")
        object.__setattr__(self, "subjects", tuple(sorted(set(self.subjects))))
        object.__setattr__(self, "apps", tuple(sorted(set(self.apps))))


@dataclass(frozen=True, slots=True)
class Management:
    """The management tier, above ``override-deny``: admin networks reach every workload on
    ``services``; every workload reaches the ``controllers`` on ``control_services``."""

    admin_networks: tuple[str, ...] = ()
    services: tuple[Service, ...] = ()
    controllers: tuple[str, ...] = ()
    control_services: tuple[Service, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "admin_networks", tuple(sorted(set(self.admin_networks))))
        object.__setattr__(self, "controllers", tuple(sorted(set(self.controllers))))

    @property
    def empty(self) -> bool:
        return not (
            (self.admin_networks and self.services) or (self.controllers and self.control_services)
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """Workspace-wide policy settings: the default mode and the management tier."""

    default_mode: str = "full"
    management: Management = field(default_factory=Management)
    origin: Origin = field(default=_NO_ORIGIN, compare=False)

    def __post_init__(self) -> None:
        if self.default_mode not in MODES:
            raise ValueError(f"default mode {self.default_mode!r} is not one of {MODES}")


@dataclass(frozen=True, slots=True)
class PolicySet:
    """Everything a policy directory holds. Policies are kept sorted by name: rule order
    (for reporting which rule decided) is policy name, then written order."""

    policies: tuple[Policy, ...] = ()
    iplists: tuple[IPList, ...] = ()
    invariants: tuple[InvariantSet, ...] = ()
    bindings: tuple[RoleBinding, ...] = ()
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies", tuple(sorted(self.policies, key=lambda p: p.name)))
        object.__setattr__(self, "iplists", tuple(sorted(self.iplists, key=lambda i: i.name)))
        object.__setattr__(self, "invariants", tuple(sorted(self.invariants, key=lambda i: i.name)))
        object.__setattr__(self, "bindings", tuple(sorted(self.bindings, key=lambda b: b.name)))

    def iplist(self, name: str) -> IPList | None:
        return next((i for i in self.iplists if i.name == name), None)

    def rules(self) -> list[tuple[Policy, Rule]]:
        """Every rule with its policy, in rule order."""
        return [(p, r) for p in self.policies for r in p.rules]
