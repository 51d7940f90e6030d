"""The one interface every enforcement target implements, its results, and the registry.

A :class:`Target` declares a :attr:`~Target.name`, whether it compiles per host
(:attr:`~Target.per_host`) and what it can express (:attr:`~Target.capabilities`). What a
rule asks for beyond that is reported by :func:`feature_gaps` as :class:`Unsupported`
entries naming the rule: a target never drops or loosens a rule silently. Core code never
branches on a target's name; it looks targets up in the registry (:func:`get_target`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from cellwall.errors import UsageError
from cellwall.model.policy import Rule, Selector

if TYPE_CHECKING:
    from cellwall.policy.ir import PolicyIR
    from cellwall.targets.plan import Estate

__all__ = [
    "FEATURES",
    "Artefact",
    "Artefacts",
    "Target",
    "Unsupported",
    "feature_gaps",
    "get_target",
    "register",
    "rule_features",
    "target_names",
]

# What a rule may ask of a target, and the sentence used when the target cannot do it.
FEATURES: dict[str, str] = {
    "fqdn": "matches addresses by DNS name (fqdn, or an IP list with fqdns); the compiled "
    "artefact matches no address for that term",
    "http": "narrows a service by HTTP method or path; enforced at L4 only",
    "process": "narrows a service by server process; enforced at L4 only",
    "icmp-code": "narrows ICMP by code; enforced on the ICMP type only",
    "deny": "is a deny rule; the target only allows, so it is enforced by leaving the "
    "traffic out of the allow lists",
    "workload": "names one workload (`workload:`), which the target cannot select by labels",
    "icmp": "has ICMP services, which the target cannot express",
    "other-proto": "has services on IP protocols other than TCP, UDP and SCTP, or `any`",
}


@dataclass(frozen=True, slots=True, order=True)
class Unsupported:
    """A rule (or a management rule id) that the target cannot express exactly, and why."""

    rule_id: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rule_id": self.rule_id, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Artefact:
    """One output file: a path relative to the output directory, its text, and the host it
    is for (None for estate-wide objects)."""

    path: str
    text: str
    host: str | None = None


@dataclass(slots=True)
class Artefacts:
    """What one compile produced: files, the rules it could not express, and notes (limits
    that bind, such as a security group's rule quota)."""

    target: str
    files: list[Artefact] = field(default_factory=list)
    unsupported: list[Unsupported] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Artefacts) -> None:
        self.files.extend(other.files)
        self.unsupported.extend(other.unsupported)
        self.notes.extend(other.notes)

    def report(self) -> dict[str, Any]:
        """The unsupported report, deduplicated and sorted (``unsupported.json``)."""
        return {
            "target": self.target,
            "files": len(self.files),
            "unsupported": [u.to_dict() for u in sorted(set(self.unsupported))],
            "notes": sorted(set(self.notes)),
        }

    def report_json(self) -> str:
        return json.dumps(self.report(), indent=2, sort_keys=True) + "\n"


class Target(ABC):
    """An enforcement target. Subclasses set the class variables and implement
    :meth:`compile`; :func:`register` makes them known by name."""

    name: ClassVar[str]
    per_host: ClassVar[bool]
    capabilities: ClassVar[frozenset[str]]
    description: ClassVar[str] = ""

    @abstractmethod
    def compile(self, estate: Estate, host: str | None) -> Artefacts:
        """Artefacts for one host (per-host targets) or for the estate (``host`` None)."""

    def gaps(self, ir: PolicyIR) -> list[Unsupported]:
        """The rules that ask for what this target cannot express."""
        return feature_gaps(ir, self.capabilities)


_REGISTRY: dict[str, type[Target]] = {}
_MODULES = ("nftables", "iptables", "k8s", "cilium", "calico", "aws_sg")


_T = TypeVar("_T", bound=type[Target])


def register(cls: _T) -> _T:
    """Class decorator: make a target known by its name."""
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    for m in _MODULES:
        import_module(f"cellwall.targets.{m}")


def target_names() -> list[str]:
    _load_all()
    return sorted(_REGISTRY)


def get_target(name: str) -> Target:
    """A new instance of the target called ``name`` (UsageError when unknown)."""
    _load_all()
    cls = _REGISTRY.get(name)
    if cls is None:
        raise UsageError(
            f"unknown target {name!r}", hint="use one of " + ", ".join(sorted(_REGISTRY))
        )
    return cls()


def _selectors(rule: Rule) -> Iterable[Selector]:
    stack = [rule.from_, rule.to]
    while stack:
        s = stack.pop()
        yield s
        stack.extend(s.negations)


def rule_features(ir: PolicyIR) -> dict[str, set[str]]:
    """Per rule id, the features (keys of :data:`FEATURES`) that it uses."""
    ps = ir.policy_set
    fqdn_lists = {i.name for i in ps.iplists if i.fqdns}
    checks: tuple[tuple[str, Callable[[Rule], bool]], ...] = (
        ("fqdn", lambda r: any(s.fqdn or s.iplist in fqdn_lists for s in _selectors(r))),
        ("http", lambda r: any(s.http_methods or s.http_paths for s in r.services)),
        ("process", lambda r: any(s.process for s in r.services)),
        ("icmp-code", lambda r: any(s.icmp_code is not None for s in r.services)),
        ("deny", lambda r: r.action != "allow"),
        ("workload", lambda r: any(s.workload for s in _selectors(r))),
        ("icmp", lambda r: any(s.proto in (1, 58) for s in r.services)),
        ("other-proto", lambda r: any(s.proto not in (1, 6, 17, 58, 132) for s in r.services)),
    )
    return {lr.id: {name for name, test in checks if test(lr.rule)} for lr in ir.rules}


def feature_gaps(ir: PolicyIR, capabilities: frozenset[str]) -> list[Unsupported]:
    """An :class:`Unsupported` for each (rule, feature) the capabilities lack."""
    out = []
    for rule_id, feats in rule_features(ir).items():
        for f in sorted(feats - capabilities):
            out.append(Unsupported(rule_id, f"{f}: the rule {FEATURES[f]}"))
    return out
