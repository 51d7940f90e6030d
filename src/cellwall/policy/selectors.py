"""Reading selectors, services, CIDRs and DNS names from policy documents.

Each reader records its findings on the document's :class:`~cellwall.policy.fields.Ctx` and
returns None when the value has an error. Label keys and IP list names are recorded as
references and checked by the loader once every document is read.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import partial

from cellwall.inventory.nodes import N
from cellwall.model.labels import check_label_key, check_label_value
from cellwall.model.policy import LabelTerm, Selector, Service, parse_service
from cellwall.policy.fields import Ctx, IPListRef, LabelRef

__all__ = [
    "SELECTOR_KEYS",
    "parse_cidr",
    "read_cidrs",
    "read_fqdn",
    "read_selector",
    "read_service",
    "read_services",
]

MAX_NOT_DEPTH = 8
SELECTOR_KEYS = ("not", "workload", "iplist", "cidrs", "except", "fqdn", "any")
_FQDN = re.compile(
    r"(\*\.)?([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?",
    re.IGNORECASE,
)
_CIDR_HINT = "write a network such as 10.0.0.0/8, or a single address"
_VALUE_HINT = "a label value is text without surrounding spaces or control characters"
_KEY_HINT = "a label key is letters and digits, with '.', '_', ':', '/' or '-' inside"
_METHOD = re.compile(r"[A-Za-z]{1,20}")
_SERVICE_HINTS = {
    "bad-port": "write tcp/443 or tcp/8000-8999; ports are 0-65535",
    "bad-icmp": "write icmp, icmp/TYPE or icmp/TYPE/CODE; type and code are 0-255",
    "bad-protocol": "use tcp, udp, sctp, icmp, icmpv6 (with a port or type), proto/N or any",
}


def parse_cidr(text: str) -> str:
    """The canonical form of a CIDR (an address alone is a /32 or /128); ValueError if bad."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=True))
    except ValueError:
        pass
    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or a CIDR such as 10.0.0.0/8") from None
    raise ValueError(f"{text!r} has host bits set; the network is {net}")


def read_cidrs(ctx: Ctx, node: N | None, what: str) -> tuple[str, ...]:
    """The CIDRs of a list (bad entries are reported and left out)."""
    out = []
    for text, item in ctx.texts(node, what):
        cidr = ctx.guard(item, "bad-cidr", partial(parse_cidr, text), _CIDR_HINT)
        if cidr is not None:
            out.append(cidr)
    return tuple(out)


def read_fqdn(ctx: Ctx, node: N) -> str | None:
    text = ctx.text(node, "an fqdn")
    if text is None:
        return None
    if not _FQDN.fullmatch(text) or len(text) > 253:
        hint = "write a DNS name such as api.example.com, or *.example.com for every name below"
        ctx.error(node, "bad-fqdn", f"{text!r} is not a DNS name", hint)
        return None
    return text


@dataclass
class _Terms:
    labels: list[LabelTerm] = field(default_factory=list)
    negations: list[Selector] = field(default_factory=list)
    workload: str | None = None
    iplist: str | None = None
    cidrs: tuple[str, ...] = ()
    except_: tuple[str, ...] = ()
    fqdn: str | None = None
    any: bool = False

    def selector(self) -> Selector:
        return Selector(
            tuple(self.labels),
            tuple(self.negations),
            self.workload,
            self.iplist,
            self.cidrs,
            self.except_,
            self.fqdn,
            self.any,
        )


def _label_values(ctx: Ctx, key: str, node: N) -> tuple[tuple[str, N], ...] | None:
    items = ctx.texts(node, f"label `{key}`")
    if node.value is None or (isinstance(node.value, list) and not node.value):
        ctx.error(node, "bad-label", f"label `{key}` has no value", f"write {key}: VALUE")
        return None
    good = []
    for text, item in items:
        checked = ctx.guard(item, "bad-label", partial(check_label_value, key, text), _VALUE_HINT)
        if checked is not None:
            good.append((text, item))
    return tuple(good) if len(good) == len(items) else None


def _label(ctx: Ctx, key: str, node: N, value: N, t: _Terms) -> None:
    if ctx.guard(node.key(key), "bad-label", partial(check_label_key, key), _KEY_HINT) is None:
        return
    values = _label_values(ctx, key, value)
    ctx.labels.append(LabelRef(key, node.key(key), values or ()))
    if values is not None:
        t.labels.append(LabelTerm(key, tuple(v for v, _ in values)))


def _term(ctx: Ctx, key: str, node: N, value: N, t: _Terms, what: str, depth: int) -> None:
    if key == "not":
        inner = read_selector(ctx, value, f"`not` in {what}", depth=depth + 1)
        if inner is not None:
            t.negations.append(inner)
    elif key == "workload":
        t.workload = ctx.text(value, "workload")
    elif key == "iplist":
        t.iplist = ctx.name(value, "iplist")
        if t.iplist is not None:
            ctx.iplists.append(IPListRef(t.iplist, value))
    elif key == "cidrs":
        t.cidrs = read_cidrs(ctx, value, "cidrs")
    elif key == "except":
        t.except_ = read_cidrs(ctx, value, "except")
    elif key == "fqdn":
        t.fqdn = read_fqdn(ctx, value)
    elif key == "any":
        start = len(ctx.diags)
        t.any = ctx.flag(value, "any")
        if not t.any and not ctx.errors_since(start):
            hint = "remove `any`, or write any: true"
            ctx.error(value, "selector-any", "`any` only takes true", hint)
    else:
        _label(ctx, key, node, value, t)


def _check_shape(ctx: Ctx, node: N, m: dict[str, N], what: str, inner: bool) -> None:
    workload_keys = [k for k in m if k in ("not", "workload") or k not in SELECTOR_KEYS]
    address_keys = [k for k in m if k in ("iplist", "cidrs", "except", "fqdn")]
    if "any" in m and len(m) > 1:
        other = next(k for k in m if k != "any")
        msg = f"`any` in {what} stands alone, but `{other}` is also given"
        ctx.error(node.key("any"), "selector-any", msg, "remove `any` or the other keys")
    elif "any" in m and inner:
        hint = "remove the `not`: it matches no workload"
        ctx.error(node.key("any"), "selector-any", f"{what} holds `any`", hint)
    if workload_keys and address_keys:
        msg = (
            f"{what} mixes workload terms (`{workload_keys[0]}`) and address terms "
            f"(`{address_keys[0]}`); nothing can match both"
        )
        hint = "split it into two rules: one for workloads, one for addresses"
        ctx.error(node, "selector-mixed", msg, hint)
    elif inner and address_keys:
        msg = f"{what} holds an address term (`{address_keys[0]}`); `not` judges workloads only"
        ctx.error(node, "selector-mixed", msg, "use `except` with `cidrs` to leave addresses out")
    if "except" in m and "cidrs" not in m:
        hint = "write cidrs: [...] with except: [...]; an IPList has its own except"
        ctx.error(node.key("except"), "bad-selector", f"`except` in {what} needs `cidrs`", hint)


def read_selector(ctx: Ctx, node: N, what: str, *, depth: int = 0) -> Selector | None:
    """A selector mapping (label keys, ``not``, ``workload``, ``iplist``, ``cidrs`` and
    ``except``, ``fqdn``, ``any``); None when it has an error. ``depth`` counts ``not``."""
    start = len(ctx.diags)
    m = ctx.guard(node, "bad-type", lambda: node.map(what))
    if m is None:
        return None
    if depth > MAX_NOT_DEPTH:
        hint = "a `not` inside a `not` cancels out; simplify the selector"
        ctx.error(node, "bad-selector", f"`not` nests deeper than {MAX_NOT_DEPTH}", hint)
        return None
    if not m:
        hint = "write labels such as {role: web}, an {iplist: NAME} or {any: true}"
        ctx.error(node, "selector-empty", f"{what} is empty", hint)
        return None
    t = _Terms()
    for key, value in m.items():
        _term(ctx, key, node, value, t, what, depth)
    _check_shape(ctx, node, m, what, depth > 0)
    return None if ctx.errors_since(start) else t.selector()


def _service_code(text: str) -> str:
    head = text.strip().lower().split("/")[0]
    if head in ("icmp", "icmpv6"):
        return "bad-icmp"
    return "bad-port" if head in ("tcp", "udp", "sctp") else "bad-protocol"


def _base_service(ctx: Ctx, node: N) -> Service | None:
    if node.value is None or node.value == "":
        ctx.error(node, "bad-service", "a service is empty", "write tcp/443, udp/53, any ...")
        return None
    text = ctx.text(node, "a service")
    if text is None:
        return None
    code = _service_code(text)
    return ctx.guard(node, code, lambda: parse_service(text), _SERVICE_HINTS[code])


def _http(ctx: Ctx, node: N) -> tuple[list[str], list[str]]:
    start = len(ctx.diags)
    f = ctx.fields(node, "http", ("methods", "paths")) or {}
    methods = []
    for text, item in ctx.texts(f.get("methods"), "http.methods"):
        if _METHOD.fullmatch(text):
            methods.append(text)
        else:
            ctx.error(item, "bad-service", f"{text!r} is not an HTTP method", "write GET, POST ...")
    paths = [text for text, _ in ctx.texts(f.get("paths"), "http.paths")]
    if not methods and not paths and not ctx.errors_since(start):
        ctx.error(node, "bad-service", "http narrows nothing", "give methods, paths or both")
    return methods, paths


def read_service(ctx: Ctx, node: N) -> Service | None:
    """``tcp/443`` or ``{service: tcp/8080, process: nginx, http: {methods, paths}}``."""
    if not isinstance(node.value, dict):
        return _base_service(ctx, node)
    start = len(ctx.diags)
    f = ctx.fields(node, "a service", ("service", "process", "http")) or {}
    hint = "write {service: tcp/8080, process: nginx}"
    base_node = ctx.require(f, "service", node, "a narrowed service", hint)
    base = _base_service(ctx, base_node) if base_node is not None else None
    process = ctx.text(f.get("process"), "process")
    methods: list[str] = []
    paths: list[str] = []
    if (http := f.get("http")) is not None:
        methods, paths = _http(ctx, http)
        if base is not None and base.proto != 6:
            hint = "use tcp/PORT, or drop `http`"
            ctx.error(node.key("http"), "bad-service", "HTTP narrowing needs a TCP service", hint)
    if base is None or ctx.errors_since(start):
        return None
    return ctx.guard(
        node,
        "bad-service",
        lambda: Service(
            base.proto, base.lo, base.hi, base.icmp_code, process, tuple(methods), tuple(paths)
        ),
        "HTTP paths are regular expressions that must match the whole path",
    )


def read_services(ctx: Ctx, node: N, what: str) -> tuple[Service, ...] | None:
    """A list of services (one service alone counts); None when one of them is bad."""
    items = [node] if not isinstance(node.value, list) else node.value
    if not items:
        ctx.error(node, "bad-service", f"{what} is empty", "list services such as [tcp/443]")
        return None
    out = [read_service(ctx, item) for item in items]
    good = [s for s in out if s is not None]
    return tuple(good) if len(good) == len(out) else None
