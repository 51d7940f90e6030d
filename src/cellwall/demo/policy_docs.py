"""The written policy of the demo estate: what its owners would check in.

Unlike the derived ground-truth rules (:mod:`cellwall.demo.truth`), this is a policy as
people write it, at role granularity: one scoped policy per application (its own tiers, and
the other apps it lets in with ``from_outside_scope``), a global policy for the shared
infrastructure (DNS, NTP, monitoring, logs, LDAP, bastion, backups, package updates, each
within one env by ``same: [env]``), an ``override-deny`` from dev to prod, ``deny`` rules on
the ports that ransomware spreads through, the IP lists of the estate's external ends, role
bindings, settings and invariants. It allows every intended dependency of
:mod:`cellwall.demo.dependencies`; services come from the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cellwall.demo.dependencies import APP_SERVICE, CACHE_SERVICE, DB_SERVICE, SERVICES
from cellwall.demo.documents import flow
from cellwall.demo.estate import APPS, EXTERNAL_ENDS, PRIVATE

__all__ = ["demo_policy_yaml"]

Rule = dict[str, Any]
HEAD = "apiVersion: cellwall/v1\n"
# app -> (mode, the roles that serve the internet in prod and staff in staging and dev)
MODES = {
    "payments": "full",
    "identity": "full",
    "orders": "full",
    "catalog": "selective",
    "shipping": "selective",
    "notifications": "visibility",
    "reporting": "visibility",
}
SAME_ENV = ["env"]


def _svc(name: str) -> str:
    return SERVICES[name].text


def _rule(rid: str, src: Mapping[str, Any], dst: Mapping[str, Any], *svcs: str, **kw: Any) -> Rule:
    rule: Rule = {"id": rid, "from": dict(src), "to": dict(dst), "services": list(svcs)}
    rule.update(kw)
    return rule


def _rules_yaml(rules: Sequence[Rule]) -> list[str]:
    lines = ["  rules:"]
    for rule in rules:
        lead = "    - "
        for key, value in rule.items():
            text = str(value) if key == "review_by" else flow(value)
            lines.append(f"{lead}{key}: {text}")
            lead = "      "
    return lines


def _policy(
    name: str,
    owner: str,
    rules: Sequence[Rule],
    scope: Mapping[str, str] | None = None,
    mode: str | None = None,
) -> str:
    lines = [HEAD + "kind: Policy", "metadata: " + flow({"name": name, "owner": owner}), "spec:"]
    if scope is not None:
        lines.append("  scope: " + flow(dict(scope)))
    if mode is not None:
        lines.append(f"  mode: {mode}")
    return "\n".join(lines + _rules_yaml(rules)) + "\n"


def _tier_rules(app: str, roles: set[str]) -> list[Rule]:
    """The app's own tiers: web to api, api to db and cache, database replication."""
    s = app[:3]
    db = _svc(DB_SERVICE.get(app, "postgres"))
    out = []
    if {"web", "api"} <= roles:
        web = _svc(APP_SERVICE.get(app, "api"))
        out.append(_rule(f"{s}-web-to-api", {"role": "web"}, {"role": "api"}, web, same=SAME_ENV))
    if {"api", "db"} <= roles:
        out.append(_rule(f"{s}-api-to-db", {"role": "api"}, {"role": "db"}, db, same=SAME_ENV))
        out.append(_rule(f"{s}-db-replication", {"role": "db"}, {"role": "db"}, db, same=SAME_ENV))
    if {"api", "cache"} <= roles:
        cache = _svc(CACHE_SERVICE.get(app, "redis"))
        out.append(
            _rule(f"{s}-api-to-cache", {"role": "api"}, {"role": "cache"}, cache, same=SAME_ENV)
        )
    if "web" in roles and app != "reporting":
        https = _svc("https")
        out.append(
            _rule(f"{s}-web-from-internet", {"iplist": "internet"}, {"role": "web", "env": "prod"},
                  https, justification=f"customers use the {app} site", review_by="2027-05-01")
        )  # fmt: skip
        out.append(
            _rule(f"{s}-web-from-staff", {"iplist": "corp-vpn"},
                  {"role": "web", "env": ["staging", "dev"]}, https)
        )  # fmt: skip
    return out


def _outside(
    rid: str, app: str | list[str], role: str | list[str], dst: str, svc: str, **kw: Any
) -> Rule:
    """Another app let in (``from_outside_scope``), within one env."""
    src = {"app": app, "role": role}
    return _rule(rid, src, {"role": dst}, svc, from_outside_scope=True, same=SAME_ENV, **kw)


def _etl(app: str) -> Rule:
    return _outside(
        f"{app[:3]}-reporting-etl",
        "reporting",
        "etl",
        "db",
        _svc(DB_SERVICE.get(app, "postgres")),
        justification=f"weekly reporting ETL extracts {app} data",
        review_by="2027-03-31",
        ticket="DATA-1432",
    )


def _app_extras() -> dict[str, list[Rule]]:
    kafka, live = _svc("kafka"), {"env": ["prod", "staging"]}
    api, https, pg = _svc("api"), _svc("https"), _svc("postgres")
    return {
        "payments": [
            _rule("pay-api-to-gateway", {"role": "api", **live}, {"iplist": "payment-gateway"},
                  https, justification="card authorisation"),
            _outside("pay-orders-charge", "orders", "api", "api", api),
            _etl("payments"),
        ],
        "orders": [
            _rule("ord-api-to-queue", {"role": "api"}, {"role": "queue"}, kafka, same=SAME_ENV),
            _rule("ord-worker-to-queue", {"role": "worker"}, {"role": "queue"}, kafka,
                  same=SAME_ENV),
            _rule("ord-worker-to-db", {"role": "worker"}, {"role": "db"}, pg, same=SAME_ENV),
            _rule("ord-queue-replication", {"role": "queue"}, {"role": "queue"}, kafka,
                  same=SAME_ENV),
            _outside("ord-consumers", ["shipping", "notifications"], "worker", "queue", kafka),
            _etl("orders"),
        ],
        "catalog": [
            _rule("cat-api-to-search", {"role": "api"}, {"role": "search"},
                  _svc("elasticsearch"), same=SAME_ENV),
            _rule("cat-search-cluster", {"role": "search"}, {"role": "search"},
                  _svc("es-transport"), same=SAME_ENV),
            _outside("cat-orders-prices", "orders", "api", "api", _svc("api-http")),
            _etl("catalog"),
        ],
        "identity": [
            _outside("idn-sessions", ["catalog", "orders", "payments", "reporting"], "web",
                     "api", api),
        ],
        "shipping": [
            _rule("shp-worker-to-db", {"role": "worker"}, {"role": "db"}, pg, same=SAME_ENV),
            _rule("shp-api-to-carrier", {"role": "api", **live}, {"iplist": "carrier-api"},
                  https),
            _outside("shp-orders-book", "orders", "worker", "api", api),
        ],
        "notifications": [
            _rule("ntf-worker-to-email", {"role": "worker"}, {"iplist": "email-api"}, https),
        ],
        "reporting": [
            _rule("rpt-web-to-db", {"role": "web"}, {"role": "db"}, pg, same=SAME_ENV),
            _rule("rpt-etl-load", {"role": "etl"}, {"role": "db"}, pg, same=SAME_ENV),
            _rule("rpt-web-from-staff", {"iplist": "corp-vpn"}, {"role": "web"}, https),
        ],
    }  # fmt: skip


def _infra(role: str) -> dict[str, str]:
    return {"app": "infra", "role": role}


def _global_rules() -> list[Rule]:
    anyone, ssh = {"any": True}, _svc("ssh")
    deny = "ransomware spreads through these ports; nothing here needs them"
    return [
        _rule("dev-never-prod", {"env": "dev"}, {"env": "prod"}, "any", action="override-deny",
              justification="dev must never reach prod"),
        _rule("dns", anyone, _infra("dns"), "udp/53", "tcp/53", same=SAME_ENV),
        _rule("dns-upstream", _infra("dns"), {"iplist": "upstream-dns"}, "udp/53", "tcp/53"),
        _rule("ntp", anyone, _infra("ntp"), _svc("ntp"), same=SAME_ENV),
        _rule("ntp-upstream", _infra("ntp"), {"iplist": "ntp-pool"}, _svc("ntp")),
        _rule("monitoring-scrapes", _infra("monitor"), anyone, _svc("node-exporter"),
              same=SAME_ENV),
        _rule("log-shipping", anyone, _infra("logs"), _svc("syslog-tls"), same=SAME_ENV),
        _rule("ldap", anyone, _infra("ldap"), _svc("ldaps"), same=SAME_ENV),
        _rule("bastion-from-vpn", {"iplist": "corp-vpn"}, _infra("bastion"), ssh),
        _rule("bastion-ssh", _infra("bastion"), {"not": {"data": "pci"}}, ssh, same=SAME_ENV),
        _rule("bastion-pci-keys", _infra("bastion"), {"data": "pci"}, ssh, same=SAME_ENV,
              owner="team-payments", justification="PCI key rotation every nine days",
              review_by="2027-01-31", ticket="SEC-2207"),
        _rule("db-backups", _infra("backup"), {"role": "db"}, _svc("backup-agent"),
              same=SAME_ENV),
        _rule("backup-to-nas", _infra("backup"), {"iplist": "legacy-nas"}, _svc("nfs"),
              justification="the NAS is not in the inventory yet", review_by="2027-06-30"),
        _rule("package-updates", {"not": {"role": ["api", "worker"]}},
              {"iplist": "package-mirror"}, _svc("apt")),
        _rule("deny-smb", anyone, anyone, "tcp/445", "tcp/139", action="deny",
              justification=deny),
        _rule("deny-rdp", anyone, anyone, "tcp/3389", action="deny", justification=deny),
        _rule("deny-rpc-winrm", anyone, anyone, "tcp/135", "tcp/5985", "tcp/5986",
              action="deny", justification=deny),
    ]  # fmt: skip


def _iplists() -> str:
    docs = []
    for name, cidrs, _, _, in_policy, purpose in EXTERNAL_ENDS:
        if not in_policy:
            continue
        spec: dict[str, Any] = {"cidrs": list(cidrs)}
        if name == "internet":
            spec["except"] = list(PRIVATE)
        meta = flow({"name": name, "description": purpose})
        docs.append(f"{HEAD}kind: IPList\nmetadata: {meta}\nspec: {flow(spec)}\n")
    return "---\n".join(docs)


def _settings() -> str:
    docs = [
        HEAD + "kind: PolicySettings\nmetadata: {name: settings}\nspec:\n"
        "  default_mode: selective     # infrastructure: block what is denied, log the rest\n"
        "  management:\n"
        "    admin_networks: [10.255.1.0/24]\n"
        "    services: [tcp/22]\n"
        "    controllers: [10.255.0.10]\n"
        "    control_services: [tcp/7443]\n"
    ]
    bindings = [
        ("platform-admins", {"role": "admin", "subjects": ["olga"]}),
        ("security-architects", {"role": "security-architect", "subjects": ["sam", "priya"]}),
        ("auditors", {"role": "auditor", "subjects": ["audrey"]}),
    ]
    people = {"payments": ["alice", "bob"], "orders": ["oscar"], "catalog": ["carla"]}
    people |= {"identity": ["ida"], "shipping": ["sean"], "notifications": ["nina"]}
    people |= {"reporting": ["rita"]}
    for app, subjects in people.items():
        spec = {"role": "app-owner", "subjects": subjects, "apps": [app]}
        bindings.append((f"{app}-owners", spec))
    for name, spec in bindings:
        docs.append(f"{HEAD}kind: RoleBinding\nmetadata: {{name: {name}}}\nspec: {flow(spec)}\n")
    return "---\n".join(docs)


def _invariants() -> str:
    items = [
        {"id": "dev-not-prod", "forbid": {"from": {"env": "dev"}, "to": {"env": "prod"}}},
        {"id": "staging-not-prod", "forbid": {"from": {"env": "staging"}, "to": {"env": "prod"}}},
        {"id": "no-internet-to-cde", "forbid": {"from": {"iplist": "internet"},
                                                "to": {"data": "pci"}}},
        {"id": "checkout-works", "require": {"from": {"iplist": "internet"},
         "to": {"app": "payments", "role": "web", "env": "prod"}, "services": ["tcp/443"]}},
    ]  # fmt: skip
    lines = [HEAD + "kind: Invariant", "metadata: {name: estate-guards}", "spec:"]
    lines += [f"  - {flow(item)}" for item in items]
    return "\n".join(lines) + "\n"


def demo_policy_yaml() -> dict[str, str]:
    """The demo's policy directory: file name (relative) -> YAML text."""
    files = {
        "settings.yaml": _settings(),
        "iplists.yaml": _iplists(),
        "global.yaml": _policy("global", "team-security", _global_rules()),
        "invariants.yaml": _invariants(),
    }
    extras = _app_extras()
    for app in APPS:
        roles = {t.role for t in app.tiers}
        rules = _tier_rules(app.name, roles) + extras.get(app.name, [])
        text = _policy(app.name, app.owner, rules, {"app": app.name}, MODES[app.name])
        files[f"apps/{app.name}.yaml"] = text
    return files
