"""Lowering: a policy set and an inventory become the label-class IR.

The IR sees a conversation as (client endpoint, server endpoint, service atom). Endpoints are
label classes (:mod:`cellwall.policy.classes`) and *address signatures*, the sets of address
terms an unmanaged address satisfies (:mod:`cellwall.policy.addresses`); services are atoms
(:mod:`cellwall.policy.service_atoms`).

Each rule is lowered to a :class:`LoweredRule`: the classes its ``from`` and ``to`` match
(with the scope applied), the address terms an unmanaged end needs, its ``same`` keys, and
the atoms of its services (plain ones, and narrowed ones apart). Endpoints that match the
same rules on a side (and hold the same ``same`` values) fall in one *group*; the decision
for a (client group, server group) pair is a *profile*: the deciding rule per atom. Profiles
are computed when a pair is first seen and kept, so judging a conversation is a few array
lookups (:mod:`cellwall.policy.evaluate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from cellwall.inventory.classify import Net
from cellwall.model.inventory import Workload
from cellwall.model.policy import MODES, Policy, PolicySet, Rule, Selector, Service
from cellwall.policy.addresses import AddressTerms
from cellwall.policy.classes import ClassTable, pinned_names
from cellwall.policy.service_atoms import ServiceAtoms

__all__ = [
    "MANAGEMENT_IDS",
    "TIERS",
    "VERDICTS",
    "LoweredRule",
    "PolicyIR",
    "Side",
    "lower",
]

Mask = npt.NDArray[np.bool_]
I32 = npt.NDArray[np.int32]
VERDICTS = ("allowed", "denied", "not-allowed")
ALLOWED, DENIED, NOT_ALLOWED = 0, 1, 2
TIERS = {"management": 0, "override-deny": 1, "allow": 2, "deny": 3}
MANAGEMENT_IDS = ("management:admin", "management:control")
_VERDICT_OF = {"allow": ALLOWED, "override-deny": DENIED, "deny": DENIED}


@dataclass(frozen=True)
class Side:
    """What one side of a rule matches: classes, and the address terms an unmanaged end
    needs (None: no unmanaged address matches; (): every one does)."""

    classes: Mask
    unmanaged: tuple[int, ...] | None


@dataclass(frozen=True)
class LoweredRule:
    index: int
    id: str
    policy: str
    action: str
    tier: int
    verdict: int
    rule: Rule
    src: Side
    dst: Side
    same: tuple[str, ...]
    plain: Mask  # atoms covered by services without narrowing
    narrowed: tuple[tuple[Service, Mask], ...]


@dataclass(frozen=True)
class Management:
    """The management tier: admin networks → workloads, and workloads → controllers, each on
    services given with their atoms."""

    admin: tuple[Net, ...]
    admin_services: tuple[tuple[Service, Mask], ...]
    controllers: tuple[Net, ...]
    control_services: tuple[tuple[Service, Mask], ...]

    @property
    def empty(self) -> bool:
        return not (
            (self.admin and self.admin_services) or (self.controllers and self.control_services)
        )


def _all_services(ps: PolicySet) -> list[Service]:
    m = ps.settings.management
    return [*m.services, *m.control_services, *(s for _, r in ps.rules() for s in r.services)]


def _all_selectors(ps: PolicySet) -> list[Selector]:
    out = [s for p in ps.policies if p.scope is not None for s in (p.scope,)]
    out += [s for _, r in ps.rules() for s in (r.from_, r.to)]
    return out


class PolicyIR:
    """A lowered policy set; see the module docstring."""

    def __init__(self, ps: PolicySet, workloads: Sequence[Workload]) -> None:
        self.policy_set = ps
        self.classes = ClassTable(workloads, pinned_names(_all_selectors(ps)))
        self.atoms = ServiceAtoms(_all_services(ps))
        self.terms = AddressTerms(ps.iplists)
        self.rules = [self._lower(i, p, r) for i, (p, r) in enumerate(ps.rules())]
        self.management = self._management()
        n = len(self.rules)
        # decision codes: -1 no rule, 0..n-1 rules, n and n+1 the management rules
        self.ids = [r.id for r in self.rules] + list(MANAGEMENT_IDS)
        self.verdict_of = np.asarray(
            [NOT_ALLOWED] + [r.verdict for r in self.rules] + [ALLOWED, ALLOWED], np.int8
        )  # indexed by code + 1
        self.order = np.asarray(sorted(range(n), key=lambda i: (self.rules[i].tier, i)), np.int32)
        self.plain = np.asarray([r.plain for r in self.rules], bool).reshape(n, self.atoms.count)
        self.is_narrowed = np.asarray([bool(r.narrowed) for r in self.rules], bool)
        self.any_narrowed = bool(self.is_narrowed.any())
        self.rank = np.empty(n + 1, np.int64)  # precedence position; rank[-1] (no rule) last
        self.rank[self.order] = np.arange(n)
        self.rank[n] = n
        self.all_atoms = self.plain.copy()
        for r in self.rules:
            for _, m in r.narrowed:
                self.all_atoms[r.index] |= m
        self.class_mode = self._class_modes()
        self.address_endpoints: dict[str, int] = {}  # unmanaged address → endpoint (no DNS)
        from cellwall.policy.groups import Groups

        self.groups = Groups(self)

    # -- lowering -----------------------------------------------------------------------

    def _side(self, policy: Policy, sel: Selector, scoped: bool) -> Side:
        classes = self.classes.selector(sel)
        if scoped and policy.scope is not None and sel.label_based:
            classes = classes & self.classes.selector(policy.scope)
        unmanaged: tuple[int, ...] | None = None
        if sel.any:
            unmanaged = None if (scoped and policy.scope is not None) else ()
        elif sel.address_terms and not sel.workload_terms:
            unmanaged = self.terms.require(sel)
        return Side(classes, unmanaged)

    def _lower(self, index: int, policy: Policy, rule: Rule) -> LoweredRule:
        plain = np.zeros(self.atoms.count, bool)
        narrowed: list[tuple[Service, Mask]] = []
        for s in rule.services:
            if s.narrowed:
                narrowed.append((s, self.atoms.mask(s.l4())))
            else:
                plain |= self.atoms.mask(s)
        return LoweredRule(
            index=index,
            id=rule.id,
            policy=policy.name,
            action=rule.action,
            tier=TIERS[rule.action],
            verdict=_VERDICT_OF[rule.action],
            rule=rule,
            src=self._side(policy, rule.from_, not rule.from_outside_scope),
            dst=self._side(policy, rule.to, True),
            same=rule.same,
            plain=plain,
            narrowed=tuple(narrowed),
        )

    def _management(self) -> Management:
        m = self.policy_set.settings.management
        return Management(
            tuple(Net.parse(c) for c in m.admin_networks),
            tuple((s, self.atoms.mask(s.l4())) for s in m.services),
            tuple(Net.parse(c) for c in m.controllers),
            tuple((s, self.atoms.mask(s.l4())) for s in m.control_services),
        )

    def _class_modes(self) -> npt.NDArray[np.int8]:
        default = MODES.index(self.policy_set.settings.default_mode)
        mode = np.full(self.classes.count, -1, np.int8)
        for p in self.policy_set.policies:
            if p.scope is None:
                continue
            level = MODES.index(p.mode) if p.mode is not None else default
            covered = self.classes.selector(p.scope)
            mode = np.where(covered, np.maximum(mode, level), mode).astype(np.int8)
        mode[mode < 0] = default
        return mode

    # -- reading ------------------------------------------------------------------------

    def rule_id(self, code: int) -> str | None:
        return None if code < 0 else self.ids[code]

    def verdict_name(self, code: int) -> str:
        return VERDICTS[int(self.verdict_of[code + 1])]


def lower(ps: PolicySet, workloads: Sequence[Workload]) -> PolicyIR:
    """The IR of ``ps`` over ``workloads``."""
    return PolicyIR(ps, workloads)
