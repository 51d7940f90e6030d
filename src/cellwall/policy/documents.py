"""One policy document of each kind: ``Policy``, ``IPList``, ``Invariant``, ``RoleBinding``
and ``PolicySettings`` (docs/policy.md, Document reference).

Each reader returns a :class:`Parsed`: the value (built from the parts that read well, so
that the loader's checks across documents still see them), the document's findings and
references, and where each rule or invariant is written. The loader keeps a document only
when it has no error.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import partial

from cellwall.inventory.nodes import N
from cellwall.model.inventory import Origin
from cellwall.model.labels import check_label_key
from cellwall.model.policy import (
    ACTIONS,
    INVARIANT_KINDS,
    MODES,
    ROLES,
    Invariant,
    InvariantSet,
    IPList,
    Management,
    Policy,
    RoleBinding,
    Rule,
    Selector,
    Service,
    Settings,
)
from cellwall.policy.fields import Ctx, LabelRef
from cellwall.policy.scope import check_scope
from cellwall.policy.selectors import read_cidrs, read_fqdn, read_selector, read_services

__all__ = ["KINDS", "Parsed", "read_document"]

Value = Policy | IPList | InvariantSet | RoleBinding | Settings
TOP_FIELDS = ("apiVersion", "kind", "metadata", "spec")
RULE_FIELDS = (
    "id",
    "action",
    "from",
    "to",
    "services",
    "from_outside_scope",
    "same",
    "owner",
    "justification",
    "review_by",
    "expires",
    "ticket",
)


@dataclass
class Parsed:
    """One document as read: its value (None when it could not be built) and findings."""

    kind: str
    ctx: Ctx
    doc: N
    name: str | None = None
    name_node: N | None = None
    owner: str | None = None
    value: Value | None = None
    ids: list[tuple[str, N]] = field(default_factory=list)  # rule or invariant ids
    sites: list[tuple[Rule | Invariant, N]] = field(default_factory=list)  # value, its node

    @property
    def ok(self) -> bool:
        return self.ctx.ok

    @property
    def origin(self) -> Origin:
        return Origin(self.ctx.file, self.doc.line, self.doc.col)


def _header(p: Parsed, meta_fields: tuple[str, ...], need_name: bool = True) -> N | None:
    """Read apiVersion/kind/metadata; set the name; return the spec node."""
    ctx, doc = p.ctx, p.doc
    top = ctx.fields(doc, "the document", TOP_FIELDS) or {}
    meta = top.get("metadata")
    m: dict[str, N] = {}
    if meta is not None and meta.value is not None:
        m = ctx.fields(meta, "metadata", meta_fields) or {}
    if need_name:
        hint = "add metadata: {name: NAME}"
        where = meta if meta is not None else doc
        p.name_node = ctx.require(m, "name", where, f"a {p.kind}", hint)
    else:
        p.name_node = m.get("name")
    p.name = ctx.name(p.name_node, "the name")
    p.owner = ctx.text(m.get("owner"), "owner")
    return ctx.require(top, "spec", doc, f"a {p.kind}", "add spec: {...}")


def _one_of(ctx: Ctx, node: N | None, allowed: tuple[str, ...], code: str, what: str) -> str | None:
    text = ctx.text(node, what)
    if text is None or node is None or text in allowed:
        return text
    close = difflib.get_close_matches(text, allowed, n=1)
    hint = f"did you mean {close[0]}?" if close else f"use one of {', '.join(allowed)}"
    ctx.error(node, code, f"{what} {text!r} is not one of {', '.join(allowed)}", hint)
    return None


def _same(ctx: Ctx, node: N | None) -> tuple[str, ...]:
    out = []
    for key, item in ctx.texts(node, "same"):
        hint = "`same` lists label keys, such as [env]"
        if ctx.guard(item, "bad-label", partial(check_label_key, key), hint) is not None:
            ctx.labels.append(LabelRef(key, item))
            out.append(key)
    return tuple(out)


def _ends(ctx: Ctx, f: dict[str, N], node: N, what: str) -> tuple[Selector | None, ...]:
    """``from`` and ``to`` of a rule or an invariant (each required)."""
    out: list[Selector | None] = []
    for side in ("from", "to"):
        hint = f"add {side}: {{...}}, such as {{role: web}} or {{any: true}}"
        sel_node = ctx.require(f, side, node, what, hint)
        out.append(read_selector(ctx, sel_node, f"`{side}`") if sel_node is not None else None)
    return tuple(out)


def _rule(p: Parsed, node: N, scope: Selector | None) -> Rule | None:
    ctx = p.ctx
    start = len(ctx.diags)
    f = ctx.fields(node, "a rule", RULE_FIELDS)
    if f is None:
        return None
    id_node = ctx.require(f, "id", node, "a rule", "give the rule an id such as web-to-api")
    rid = ctx.name(id_node, "the rule id")
    if rid is not None and id_node is not None:
        p.ids.append((rid, id_node))
    action = _one_of(ctx, f.get("action"), ACTIONS, "bad-action", "action") or "allow"
    src, dst = _ends(ctx, f, node, "a rule")
    outside = ctx.flag(f.get("from_outside_scope"), "from_outside_scope")
    if scope is not None:
        what = f"rule `{rid}`" if rid is not None else "the rule"
        if dst is not None and (to_node := f.get("to")) is not None:
            check_scope(ctx, scope, dst, to_node, f"`to` of {what}")
        if src is not None and not outside and (from_node := f.get("from")) is not None:
            check_scope(ctx, scope, src, from_node, f"`from` of {what}")
    svc_node = ctx.require(f, "services", node, "a rule", "add services: [tcp/443]")
    services = read_services(ctx, svc_node, "services") if svc_node is not None else None
    same = _same(ctx, f.get("same"))
    owner = ctx.text(f.get("owner"), "owner")
    justification = ctx.text(f.get("justification"), "justification")
    ticket = ctx.text(f.get("ticket"), "ticket")
    review_by = ctx.when(f.get("review_by"), "review_by")
    expires = ctx.when(f.get("expires"), "expires")
    if same and src is not None and dst is not None and (src.address_terms or dst.address_terms):
        hint = "remove `same`, or select workloads on both sides"
        ctx.error(f.get("same"), "bad-same", "`same` needs workloads on both sides", hint)
    if ctx.errors_since(start) or rid is None or src is None or dst is None or not services:
        return None
    rule = Rule(
        rid,
        src,
        dst,
        services,
        action,
        outside,
        same,
        owner,
        justification,
        review_by,
        ticket,
        Origin(ctx.file, node.line, node.col),
        expires,
    )
    p.sites.append((rule, node))
    return rule


def _scope(ctx: Ctx, node: N | None) -> Selector | None:
    if node is None or node.value is None:
        return None
    scope = read_selector(ctx, node, "the scope")
    if scope is not None and (not scope.labels or scope != Selector(labels=scope.labels)):
        hint = "a scope holds label keys only, such as {app: payments, env: prod}"
        ctx.error(node, "bad-scope", "the scope may only hold label keys", hint)
        return None
    return scope


def read_policy(p: Parsed) -> None:
    ctx = p.ctx
    spec = _header(p, ("name", "owner", "description"))
    s = (ctx.fields(spec, "spec", ("scope", "mode", "rules")) or {}) if spec else {}
    scope = _scope(ctx, s.get("scope"))
    mode = _one_of(ctx, s.get("mode"), MODES, "bad-mode", "mode")
    rules = []
    if (rules_node := s.get("rules")) is not None and rules_node.value is not None:
        for item in ctx.guard(rules_node, "bad-type", lambda: rules_node.seq("rules")) or []:
            rule = _rule(p, item, scope)
            if rule is not None:
                rules.append(rule)
    if p.name is not None:
        p.value = Policy(p.name, tuple(rules), scope, mode, p.owner, p.origin)


def read_iplist(p: Parsed) -> None:
    ctx = p.ctx
    spec = _header(p, ("name", "description"))
    if spec is None:
        return
    s = ctx.fields(spec, "spec", ("cidrs", "except", "fqdns")) or {}
    cidrs = read_cidrs(ctx, s.get("cidrs"), "cidrs")
    except_ = read_cidrs(ctx, s.get("except"), "except")
    fqdns = [read_fqdn(ctx, item) for _, item in ctx.texts(s.get("fqdns"), "fqdns")]
    if not s.get("cidrs") and not s.get("fqdns") and ctx.ok:
        hint = "add cidrs: [...] or fqdns: [...]"
        ctx.error(spec, "missing-field", "an IPList needs `cidrs` or `fqdns`", hint)
    if p.name is not None:
        good = tuple(f for f in fqdns if f is not None)
        p.value = IPList(p.name, cidrs, except_, good, p.origin)


def _invariant_body(p: Parsed, kind: str, node: N) -> tuple[Selector | None, ...] | None:
    ctx = p.ctx
    allowed = ("from", "to", "services") + (("max_hops",) if kind == "forbid_path" else ())
    f = ctx.fields(node, f"`{kind}`", allowed)
    if f is None:
        return None
    return _ends(ctx, f, node, f"`{kind}`")


def _invariant(p: Parsed, node: N) -> Invariant | None:
    ctx = p.ctx
    start = len(ctx.diags)
    f = ctx.fields(node, "an invariant", ("id", *INVARIANT_KINDS))
    if f is None:
        return None
    id_node = ctx.require(f, "id", node, "an invariant", "give it an id such as dev-not-prod")
    iid = ctx.name(id_node, "the invariant id")
    if iid is not None and id_node is not None:
        p.ids.append((iid, id_node))
    kinds = [k for k in INVARIANT_KINDS if k in f]
    if len(kinds) != 1:
        hint = f"give exactly one of {', '.join(INVARIANT_KINDS)}"
        ctx.error(node, "bad-invariant", f"an invariant has {len(kinds)} kinds", hint)
        return None
    kind, body = kinds[0], f[kinds[0]]
    ends = _invariant_body(p, kind, body)
    inner = body.value if isinstance(body.value, dict) else {}
    services: tuple[Service, ...] | None = ()
    if (svc := inner.get("services")) is not None:
        services = read_services(ctx, svc, "services")
    elif kind == "require":
        ctx.error(body, "missing-field", "`require` needs `services`", "add services: [tcp/443]")
    max_hops = ctx.count(inner.get("max_hops"), "max_hops")
    if ends is None or ctx.errors_since(start) or iid is None or services is None:
        return None
    src, dst = ends
    if src is None or dst is None:
        return None
    origin = Origin(ctx.file, node.line, node.col)
    inv = Invariant(iid, kind, src, dst, services, max_hops, origin)
    p.sites.append((inv, node))
    return inv


def read_invariants(p: Parsed) -> None:
    ctx = p.ctx
    spec = _header(p, ("name", "description"))
    if spec is None:
        return
    out = []
    for item in ctx.guard(spec, "bad-type", lambda: spec.seq("spec")) or []:
        inv = _invariant(p, item)
        if inv is not None:
            out.append(inv)
    if p.name is not None:
        p.value = InvariantSet(p.name, tuple(out), p.origin)


def read_binding(p: Parsed) -> None:
    ctx = p.ctx
    spec = _header(p, ("name", "description"))
    if spec is None:
        return
    s = ctx.fields(spec, "spec", ("role", "subjects", "apps")) or {}
    role_node = ctx.require(s, "role", spec, "a RoleBinding", f"role is one of {', '.join(ROLES)}")
    role = _one_of(ctx, role_node, ROLES, "bad-role", "role")
    subjects = [t for t, _ in ctx.texts(s.get("subjects"), "subjects")]
    if not subjects and ctx.ok:
        ctx.error(spec, "missing-field", "a RoleBinding needs `subjects`", "add subjects: [NAME]")
    apps = ctx.texts(s.get("apps"), "apps")
    if role == "app-owner" and not apps:
        hint = "add apps: [APP]: an app-owner owns the policies of those apps"
        ctx.error(spec, "bad-role", "an app-owner binding needs `apps`", hint)
    elif role is not None and role != "app-owner" and apps:
        hint = "remove `apps`, or make the role app-owner"
        ctx.error(s["apps"], "bad-role", f"`apps` only applies to app-owner, not {role}", hint)
    if apps:
        ctx.labels.append(LabelRef("app", None, tuple(apps)))
    if p.name is not None and role is not None and ctx.ok:
        app_names = tuple(a for a, _ in apps)
        p.value = RoleBinding(p.name, role, tuple(subjects), app_names, p.origin)


def _management(ctx: Ctx, node: N | None) -> Management:
    if node is None or node.value is None:
        return Management()
    parts = ("admin_networks", "services", "controllers", "control_services")
    f = ctx.fields(node, "management", parts) or {}

    def services(key: str) -> tuple[Service, ...]:
        svc = f.get(key)
        return (read_services(ctx, svc, key) or ()) if svc is not None else ()

    return Management(
        read_cidrs(ctx, f.get("admin_networks"), "admin_networks"),
        services("services"),
        read_cidrs(ctx, f.get("controllers"), "controllers"),
        services("control_services"),
    )


def read_settings(p: Parsed) -> None:
    ctx = p.ctx
    spec = _header(p, ("name", "description"), need_name=False)
    if spec is None:
        return
    s = ctx.fields(spec, "spec", ("default_mode", "management")) or {}
    mode = _one_of(ctx, s.get("default_mode"), MODES, "bad-mode", "default_mode")
    management = _management(ctx, s.get("management"))
    p.value = Settings(mode or "full", management, p.origin)


KINDS = {
    "Policy": read_policy,
    "IPList": read_iplist,
    "Invariant": read_invariants,
    "RoleBinding": read_binding,
    "PolicySettings": read_settings,
}


def read_document(kind: str, doc: N, file: str) -> Parsed:
    """Read one document of a known kind (a key of :data:`KINDS`)."""
    p = Parsed(kind, Ctx(file), doc)
    KINDS[kind](p)
    return p
