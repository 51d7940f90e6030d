"""Selector keys that contradict their policy's scope (error ``scope-conflict``).

In a scoped policy, a side whose selector is label-based is ANDed with the scope (``from``
only when the rule does not say ``from_outside_scope: true``). A label term whose values
share none with the scope's values for that key, or a ``not`` that leaves out every workload
of the scope, makes the side match nothing: that is written by mistake, so it is an error.
"""

from __future__ import annotations

from cellwall.inventory.nodes import N
from cellwall.model.policy import Selector
from cellwall.policy.fields import Ctx

__all__ = ["check_scope"]

_HINT = (
    "write the rule in the policy whose scope holds it, or in an unscoped policy; "
    "to let another app in, set from_outside_scope: true"
)


def _implied(inner: Selector, scope: Selector) -> bool:
    """True when every workload in scope matches ``inner`` (so ``not: inner`` matches none)."""
    if inner.negations or inner.workload is not None or not inner.labels:
        return False
    for t in inner.labels:
        allowed = scope.value_of(t.key)
        if allowed is None or not set(allowed) <= set(t.values):
            return False
    return True


def check_scope(ctx: Ctx, scope: Selector, sel: Selector, node: N, what: str) -> None:
    """Record a ``scope-conflict`` for each term of ``sel`` (read at ``node``) that the
    scope rules out; ``what`` names the side, such as "`to` of rule `web-to-api`"."""
    if not sel.label_based:
        return
    scope_text = ", ".join(f"{t.key}={'|'.join(t.values)}" for t in scope.labels)
    for t in sel.labels:
        allowed = scope.value_of(t.key)
        if allowed is not None and not set(allowed) & set(t.values):
            msg = (
                f"{what} asks for {t.key}={'|'.join(t.values)}, outside the policy's scope "
                f"{{{scope_text}}}: it can never match"
            )
            ctx.error(node.key(t.key), "scope-conflict", msg, _HINT)
    for inner in sel.negations:
        if _implied(inner, scope):
            msg = (
                f"{what} leaves out every workload of the policy's scope {{{scope_text}}}: "
                "it can never match"
            )
            ctx.error(node.key("not"), "scope-conflict", msg, _HINT)
