r"""The review workflow's states, transitions, roles and errors.

```
draft ──submit──▶ proposed ──approve──▶ approved ──activate──▶ active ──retire──▶ retired
                     │  ▲                                         │
                  reject│  └─────────────── submit ◀── rejected   └─revert─▶ approved
                     ▼
                  rejected
```

Who may do what (roles come from ``kind: RoleBinding`` documents):

| action | admin | security-architect | app-owner | auditor |
|---|---|---|---|---|
| list, export | yes | yes | yes | yes |
| submit, approve, reject | yes | yes | only intra-app rules of its apps | no |
| retire, activate, revert, import | yes | yes | no | no |
| `policy load` (store a version) | yes | yes | yes | no |
| `policy activate`, `policy load --activate` (`policy.activate`) | yes | yes | no | no |
| `inventory load` (`inventory.load`) | yes | yes | no | no |
| `dbproxy review approve\|reject` (`dbfw.review`) | yes | yes | no | no |

While no RoleBinding is in force (a workspace being set up), the actions outside the review
workflow are allowed to anyone (:func:`cellwall.services.authz.authorize`).

Cross-app, external and shared rules need the security-architect role (or admin).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cellwall.errors import CellwallError
from cellwall.model.policy import RoleBinding

__all__ = [
    "STATES",
    "TRANSITIONS",
    "Actor",
    "ConflictError",
    "PermissionDeniedError",
    "actor_roles",
    "check_may",
]

STATES = ("draft", "proposed", "approved", "active", "retired", "rejected")
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "submit": (("draft", "rejected"), "proposed"),
    "approve": (("proposed",), "approved"),
    "reject": (("proposed", "approved"), "rejected"),
    "retire": (("active", "approved"), "retired"),
}
STEWARD = ("admin", "security-architect")


class PermissionDeniedError(CellwallError):
    """The acting person's roles do not allow the action (exit code 2)."""


class ConflictError(CellwallError):
    """Someone else changed the rule first; reload and try again (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    roles: frozenset[str]
    apps: frozenset[str]  # the apps of its app-owner bindings

    @property
    def steward(self) -> bool:
        return bool(self.roles & set(STEWARD))


def actor_roles(name: str, bindings: Iterable[RoleBinding]) -> Actor:
    roles: set[str] = set()
    apps: set[str] = set()
    for b in bindings:
        if name in b.subjects:
            roles.add(b.role)
            if b.role == "app-owner":
                apps |= set(b.apps)
    return Actor(name, frozenset(roles), frozenset(apps))


def check_may(actor: Actor, action: str, kind: str = "", apps: Sequence[str] = ()) -> None:
    """Raise PermissionDeniedError unless ``actor`` may do ``action`` on such a rule."""
    if action in ("list", "export"):
        if actor.roles:
            return
        raise PermissionDeniedError(
            f"{actor.name} has no role in any RoleBinding",
            hint="ask an admin to bind you (kind: RoleBinding)",
        )
    if actor.steward:
        return
    if action == "policy.load" and actor.roles - {"auditor"}:
        return
    if action in ("submit", "approve", "reject") and "app-owner" in actor.roles:
        if kind != "intra-app":
            raise PermissionDeniedError(
                f"{actor.name} may not {action} a {kind} rule",
                hint="cross-app, external and shared rules need the security-architect role",
            )
        if apps and set(apps) <= actor.apps:
            return
        raise PermissionDeniedError(
            f"{actor.name} owns {', '.join(sorted(actor.apps)) or 'no app'}, not {', '.join(apps)}",
            hint="the owners of the rule's app approve it",
        )
    roles = ", ".join(sorted(actor.roles)) or "no role"
    raise PermissionDeniedError(
        f"{actor.name} ({roles}) may not {action}",
        hint="this needs the admin or security-architect role",
    )
