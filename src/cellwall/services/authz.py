"""Who may change what: the acting person's roles, from the RoleBindings in force.

The acting person is ``--as NAME``, else ``CELLWALL_USER``, else the operating-system user
(CONTRACTS.md). The bindings in force are those of the active policy and of the review
state. While there are none, a workspace is being set up and every action is allowed; once
someone is bound, an action that the actor's roles do not allow is refused (exit 2) and the
refusal is audited. The table of who may do what is :func:`cellwall.review.model.check_may`.
"""

from __future__ import annotations

from cellwall.model.policy import RoleBinding
from cellwall.review.model import Actor, PermissionDeniedError, actor_roles, check_may
from cellwall.state.audit import AuditLog, current_actor
from cellwall.workspace import Workspace

__all__ = ["authorize", "bindings_in_force"]


def bindings_in_force(ws: Workspace) -> list[RoleBinding]:
    """The active policy's bindings, overridden by name by the review state's, by name."""
    from cellwall.review.store import ReviewStore
    from cellwall.services.policy import active_policy

    active = active_policy(ws)
    found = {b.name: b for b in (active.bindings if active is not None else ())}
    found.update({b.name: b for b in ReviewStore(ws.engine).bindings()})
    return [found[k] for k in sorted(found)]


def authorize(ws: Workspace, actor: str | None, action: str, target: str) -> Actor:
    """The actor, when its roles allow ``action`` (or nobody is bound yet); else the refusal
    is audited as ``ACTION`` with outcome ``denied`` and PermissionDeniedError raised."""
    bindings = bindings_in_force(ws)
    who = actor_roles(current_actor(actor), bindings)
    if not bindings:
        return who
    try:
        check_may(who, action)
    except PermissionDeniedError as exc:
        AuditLog(ws.engine).record(who.name, action, target, "denied", {"error": str(exc)})
        raise
    return who
