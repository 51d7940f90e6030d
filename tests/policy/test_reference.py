"""The reference evaluator, checked by hand against CONTRACTS.md and docs/policy.md.

Each expected answer below is read off the contract, not computed: these tests are what lets
the property tests trust the reference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings

from cellwall.model.inventory import AddressLease, Workload
from cellwall.model.policy import (
    IPList,
    LabelTerm,
    Management,
    Policy,
    PolicySet,
    Rule,
    Selector,
    Service,
    Settings,
    parse_service,
)
from tests.policy.reference import owner_at, reference_judge
from tests.policy.strategies import Scenario, scenarios

T = datetime(2026, 11, 2, tzinfo=UTC)
US = timedelta(microseconds=1)


def conv(
    client: str,
    server: str,
    service: str = "tcp/443",
    *,
    at: datetime = T,
    process: str | None = None,
    method: str | None = None,
    path: str | None = None,
    icmp_code: int | None = None,
) -> dict[str, Any]:
    """A conversation on ``service`` written like a rule's service: ``tcp/443``, ``icmp/8``,
    ``proto/47``; for ICMP the number is the type that the client sent."""
    parts = service.split("/")
    protos = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmpv6": 58}
    proto = int(parts[1]) if parts[0] == "proto" else protos[parts[0]]
    number = int(parts[1]) if parts[0] != "proto" and len(parts) > 1 else -1
    icmp = proto in (1, 58)
    return {
        "client_ip": client,
        "server_ip": server,
        "proto": proto,
        "server_port": -1 if icmp else number,
        "client_port": number if icmp else 40000,
        "start": at,
        "server_process": process,
        "http_method": method,
        "http_path": path,
        "icmp_code": icmp_code,
    }


def svc(*texts: str) -> tuple[Service, ...]:
    return tuple(parse_service(t) for t in texts)


def wl(name: str, *addresses: str | AddressLease, **labels: str) -> Workload:
    return Workload.of(name, labels=labels, addresses=addresses)


# ---------------------------------------------------------------------------------------------
# The example policy of CONTRACTS.md, built with the model types

INTERNET = IPList(
    "internet",
    cidrs=("0.0.0.0/0", "::/0"),
    except_=("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
)
PAYMENTS = Policy(
    "payments",
    scope=Selector.of(app="payments", env="prod"),
    mode="full",
    rules=(
        Rule(
            "web-from-internet",
            Selector(iplist="internet"),
            Selector.of(role="web"),
            svc("tcp/443"),
        ),
        Rule("web-to-api", Selector.of(role="web"), Selector.of(role="api"), svc("tcp/8443")),
        Rule("api-to-db", Selector.of(role="api"), Selector.of(role="db"), svc("tcp/5432")),
        Rule(
            "reporting-reads-db",
            Selector.of(app="reporting", role="etl"),
            Selector.of(role="db"),
            svc("tcp/5432"),
            from_outside_scope=True,
        ),
    ),
)
GLOBAL = Policy(
    "global",
    rules=(
        Rule(
            "dev-never-prod",
            Selector.of(env="dev"),
            Selector.of(env="prod"),
            svc("any"),
            action="override-deny",
        ),
        Rule(
            "dns",
            Selector(any=True),
            Selector.of(app="infra", role="dns"),
            svc("udp/53", "tcp/53"),
            same=("env",),
        ),
        Rule(
            "monitoring-scrapes",
            Selector.of(app="infra", role="monitor"),
            Selector(negations=(Selector.of(app="infra"),)),
            svc("tcp/9100"),
            same=("env",),
        ),
    ),
)
CONTRACT = PolicySet(policies=(PAYMENTS, GLOBAL), iplists=(INTERNET,))

NOV1, NOV3_NOON = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 3, 12, tzinfo=UTC)
ESTATE = [
    wl("pay-web-1", "10.1.1.1", "fd00:1::1", app="payments", role="web", env="prod"),
    wl("pay-api-1", "10.1.2.2", app="payments", role="api", env="prod"),
    wl(
        "pay-db-1",
        "10.1.3.3",
        AddressLease("10.1.9.7", NOV1, NOV3_NOON),
        app="payments",
        role="db",
        env="prod",
        data="pci",
    ),
    wl("pay-web-dev", "10.1.1.50", app="payments", role="web", env="dev"),
    wl("rep-etl-1", "10.2.0.5", app="reporting", role="etl", env="prod"),
    wl("shop-web-dev", "10.3.0.1", app="shop", role="web", env="dev"),
    wl("dns-prod", "10.4.0.53", app="infra", role="dns", env="prod"),
    wl("dns-dev", "10.4.1.53", app="infra", role="dns", env="dev"),
    wl("mon-prod", "10.4.0.9", app="infra", role="monitor", env="prod"),
    wl("unlabelled", "10.5.0.1"),
]


def contract(c: dict[str, Any]) -> tuple[str, str | None, bool, bool]:
    return reference_judge(c, CONTRACT, ESTATE)


@pytest.mark.parametrize(
    ("client", "server", "service", "expected"),
    [
        # An internet address reaches the payments web tier on 443 only.
        ("203.0.113.7", "10.1.1.1", "tcp/443", ("allowed", "web-from-internet", False, False)),
        ("2001:db8::7", "fd00:1::1", "tcp/443", ("allowed", "web-from-internet", False, False)),
        # Not on 80: nothing matches, and pay-web-1 is in a full-mode scope.
        ("203.0.113.7", "10.1.1.1", "tcp/80", ("not-allowed", None, False, True)),
        # 192.168/16 and fc00::/7 are carved out of `internet`.
        ("192.168.1.5", "10.1.1.1", "tcp/443", ("not-allowed", None, False, True)),
        ("fd00::5", "10.1.1.1", "tcp/443", ("not-allowed", None, False, True)),
        # A workload is never an `iplist` address, even one whose address is in the list.
        ("10.1.2.2", "10.1.1.1", "tcp/443", ("not-allowed", None, False, True)),
        # Tiers inside the payments scope.
        ("10.1.1.1", "10.1.2.2", "tcp/8443", ("allowed", "web-to-api", False, False)),
        ("10.1.2.2", "10.1.3.3", "tcp/5432", ("allowed", "api-to-db", False, False)),
        ("10.1.1.1", "10.1.3.3", "tcp/5432", ("not-allowed", None, False, True)),
        # pay-web-dev is outside the scope (env dev): web-to-api does not see it, and the
        # global override-deny stops dev reaching prod.
        ("10.1.1.50", "10.1.2.2", "tcp/8443", ("denied", "dev-never-prod", False, True)),
        # from_outside_scope lets reporting in, to the db only.
        ("10.2.0.5", "10.1.3.3", "tcp/5432", ("allowed", "reporting-reads-db", False, False)),
        ("10.2.0.5", "10.1.2.2", "tcp/5432", ("not-allowed", None, False, True)),
        # `same: [env]`: DNS within an env only; any unmanaged client fails `same`.
        ("10.1.1.1", "10.4.0.53", "udp/53", ("allowed", "dns", False, False)),
        ("10.3.0.1", "10.4.1.53", "tcp/53", ("allowed", "dns", False, False)),
        ("10.1.1.1", "10.4.1.53", "udp/53", ("not-allowed", None, False, True)),
        ("8.8.8.8", "10.4.0.53", "udp/53", ("not-allowed", None, False, True)),
        # A workload without env fails `same: [env]`.
        ("10.5.0.1", "10.4.0.53", "udp/53", ("not-allowed", None, False, True)),
        # dev to prod is denied on every service, even where `dns` would allow... it cannot
        # here (env differs), so the override-deny decides.
        ("10.3.0.1", "10.4.0.53", "udp/53", ("denied", "dev-never-prod", False, True)),
        # Monitoring reaches what is not infra, in its own env.
        ("10.4.0.9", "10.1.3.3", "tcp/9100", ("allowed", "monitoring-scrapes", False, False)),
        ("10.4.0.9", "10.4.0.53", "tcp/9100", ("not-allowed", None, False, True)),
        ("10.4.0.9", "10.5.0.1", "tcp/9100", ("not-allowed", None, False, True)),  # no env
    ],
)
def test_contract_example(
    client: str, server: str, service: str, expected: tuple[str, str | None, bool, bool]
) -> None:
    assert contract(conv(client, server, service)) == expected


def test_contract_example_address_validity() -> None:
    c = conv("10.1.2.2", "10.1.9.7", "tcp/5432", at=NOV3_NOON - US)
    assert contract(c) == ("allowed", "api-to-db", False, False)
    # At `until` the lease has ended: 10.1.9.7 is unmanaged; pay-api-1's full mode blocks.
    c = conv("10.1.2.2", "10.1.9.7", "tcp/5432", at=NOV3_NOON)
    assert contract(c) == ("not-allowed", None, False, True)
    c = conv("10.1.2.2", "10.1.9.7", "tcp/5432", at=NOV1)
    assert contract(c) == ("allowed", "api-to-db", False, False)
    c = conv("10.1.2.2", "10.1.9.7", "tcp/5432", at=NOV1 - US)
    assert contract(c) == ("not-allowed", None, False, True)


def test_contract_example_between_unmanaged_addresses_is_never_blocked() -> None:
    assert contract(conv("8.8.8.8", "1.1.1.1")) == ("not-allowed", None, False, False)


# ---------------------------------------------------------------------------------------------
# Precedence and tiers


def one_policy(*rules: Rule, scope: Selector | None = None, **kw: Any) -> PolicySet:
    return PolicySet(policies=(Policy("p", tuple(rules), scope),), **kw)


A, B = wl("a", "10.0.0.1", role="web", env="prod"), wl("b", "10.0.0.2", role="db", env="prod")
AB = [A, B]
WEB, DB = Selector.of(role="web"), Selector.of(role="db")


def test_override_deny_beats_an_earlier_allow_and_deny_loses_to_a_later_allow() -> None:
    ps = one_policy(
        Rule("deny-first", WEB, DB, svc("tcp"), action="deny"),
        Rule("allow", WEB, DB, svc("tcp/443")),
        Rule("override", WEB, DB, svc("tcp/443"), action="override-deny"),
    )
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, AB) == (
        "denied",
        "override",
        False,
        True,
    )
    assert reference_judge(conv("10.0.0.1", "10.0.0.2", "tcp/80"), ps, AB) == (
        "denied",
        "deny-first",
        False,
        True,
    )


def test_allow_beats_deny_whatever_the_order() -> None:
    ps = one_policy(
        Rule("deny", WEB, DB, svc("tcp/443"), action="deny"),
        Rule("allow", WEB, DB, svc("tcp/443")),
    )
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, AB)[:2] == ("allowed", "allow")


def test_rule_order_is_policy_name_then_written_order() -> None:
    later = Policy("zeta", (Rule("z1", WEB, DB, svc("tcp/443")),))
    earlier = Policy("alpha", (Rule("a2", WEB, DB, svc("tcp")), Rule("a1", WEB, DB, svc("tcp"))))
    ps = PolicySet(policies=(later, earlier))
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, AB)[:2] == ("allowed", "a2")


def test_the_management_tier_is_above_override_deny() -> None:
    admin = wl("admin-box", "10.255.0.5", role="web", env="prod")
    mgmt = Management(
        admin_networks=("10.255.0.0/24",),
        services=svc("tcp/22"),
        controllers=("10.255.1.10",),
        control_services=svc("tcp/7443"),
    )
    ps = one_policy(
        Rule("no", Selector(any=True), Selector(any=True), svc("any"), action="override-deny"),
        settings=Settings(management=mgmt),
    )
    wls = [*AB, admin]
    # From an admin address (unmanaged, or a workload's) to any workload on tcp/22.
    assert reference_judge(conv("10.255.0.9", "10.0.0.2", "tcp/22"), ps, wls) == (
        "allowed",
        "management:admin",
        False,
        False,
    )
    assert reference_judge(conv("10.255.0.5", "10.0.0.2", "tcp/22"), ps, wls)[1] == (
        "management:admin"
    )
    # Not to an unmanaged address, not on another service.
    assert reference_judge(conv("10.255.0.9", "10.9.9.9", "tcp/22"), ps, wls)[1] == "no"
    assert reference_judge(conv("10.255.0.9", "10.0.0.2", "tcp/23"), ps, wls)[1] == "no"
    # Every workload reaches the controllers; an unmanaged client does not.
    assert reference_judge(conv("10.0.0.1", "10.255.1.10", "tcp/7443"), ps, wls)[:2] == (
        "allowed",
        "management:control",
    )
    assert reference_judge(conv("10.9.9.9", "10.255.1.10", "tcp/7443"), ps, wls)[1] == "no"
    # Admin comes before control in rule order.
    both = Management(
        admin_networks=("10.0.0.0/24",),
        services=svc("tcp"),
        controllers=("10.0.0.2",),
        control_services=svc("tcp"),
    )
    ps2 = PolicySet(settings=Settings(management=both))
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps2, AB)[1] == "management:admin"


# ---------------------------------------------------------------------------------------------
# Scope, from_outside_scope, any


def test_scope_applies_to_labels_not_and_any_but_not_to_workload_or_addresses() -> None:
    inside = wl("in", "10.0.0.1", app="pay", role="web")
    outside = wl("out", "10.0.0.2", app="shop", role="web")
    target = wl("t", "10.0.0.3", app="pay", role="db")
    wls = [inside, outside, target]
    scope = Selector.of(app="pay")

    def verdict(from_: Selector, client: str, outside_scope: bool = False) -> str:
        rule = Rule("r", from_, DB, svc("tcp"), from_outside_scope=outside_scope)
        return reference_judge(conv(client, "10.0.0.3"), one_policy(rule, scope=scope), wls)[0]

    assert verdict(WEB, "10.0.0.1") == "allowed"
    assert verdict(WEB, "10.0.0.2") == "not-allowed"
    assert verdict(WEB, "10.0.0.2", outside_scope=True) == "allowed"
    assert verdict(Selector(negations=(DB,)), "10.0.0.2") == "not-allowed"
    assert verdict(Selector(negations=(DB,)), "10.0.0.2", outside_scope=True) == "allowed"
    assert verdict(Selector(any=True), "10.0.0.2") == "not-allowed"
    assert verdict(Selector(any=True), "10.0.0.1") == "allowed"
    assert verdict(Selector(any=True), "8.8.8.8") == "not-allowed"
    assert verdict(Selector(any=True), "8.8.8.8", outside_scope=True) == "allowed"
    assert verdict(Selector(any=True), "10.0.0.2", outside_scope=True) == "allowed"
    assert verdict(Selector(workload="out"), "10.0.0.2") == "allowed"
    assert verdict(Selector(cidrs=("0.0.0.0/0",)), "8.8.8.8") == "allowed"
    # A workload term with a label term is label-based: the scope applies.
    assert verdict(Selector(workload="out", labels=(LabelTerm("role", ("web",)),)), "10.0.0.2") == (
        "not-allowed"
    )
    # `to` always keeps the scope, even with from_outside_scope.
    rule = Rule("r", WEB, Selector(any=True), svc("tcp"), from_outside_scope=True)
    ps = one_policy(rule, scope=scope)
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, wls)[0] == "not-allowed"
    assert reference_judge(conv("10.0.0.2", "10.0.0.3"), ps, wls)[0] == "allowed"
    assert reference_judge(conv("10.0.0.2", "8.8.8.8"), ps, wls)[0] == "not-allowed"


def test_any_in_an_unscoped_policy_matches_workloads_and_unmanaged_addresses() -> None:
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), svc("any")))
    for client, server in [("8.8.8.8", "1.1.1.1"), ("10.0.0.1", "::1"), ("fd00::1", "10.0.0.2")]:
        assert reference_judge(conv(client, server, "proto/47"), ps, AB)[:2] == ("allowed", "r")


# ---------------------------------------------------------------------------------------------
# Selectors: labels, not, workload, iplist, cidrs, fqdn


def test_label_values_are_alternatives_and_keys_are_anded() -> None:
    sel = Selector.of(role=["web", "db"], env="prod")
    wls = [*AB, wl("c", "10.0.0.3", role="web"), wl("d", "10.0.0.4", role="db", env="dev")]
    ps = one_policy(Rule("r", sel, Selector(any=True), svc("tcp")))
    got = [reference_judge(conv(f"10.0.0.{i}", "8.8.8.8"), ps, wls)[0] for i in (1, 2, 3, 4)]
    assert got == ["allowed", "allowed", "not-allowed", "not-allowed"]


def test_not_matches_workloads_without_the_label_and_never_an_address() -> None:
    wls = [
        wl("dev", "10.0.0.1", env="dev"),
        wl("prod", "10.0.0.2", env="prod"),
        wl("none", "10.0.0.3"),
    ]
    to_not_dev = Selector(negations=(Selector.of(env="dev"),))
    ps = one_policy(Rule("r", Selector(any=True), to_not_dev, svc("tcp")))
    got = [reference_judge(conv("8.8.8.8", s), ps, wls)[0] for s in ("10.0.0.1", "10.0.0.2")]
    assert got == ["not-allowed", "allowed"]
    assert reference_judge(conv("8.8.8.8", "10.0.0.3"), ps, wls)[0] == "allowed"
    assert reference_judge(conv("10.0.0.1", "9.9.9.9"), ps, wls)[0] == "not-allowed"


def test_nested_not_and_not_of_an_address_selector() -> None:
    wls = [wl("dev", "10.0.0.1", env="dev"), wl("prod", "10.0.0.2", env="prod")]
    twice = Selector(negations=(Selector(negations=(Selector.of(env="dev"),)),))
    of_addr = Selector(negations=(Selector(cidrs=("10.0.0.0/8",)),))
    of_any = Selector(negations=(Selector(any=True),))
    for sel, expected in [
        (twice, ["allowed", "not-allowed", "not-allowed"]),
        # An address selector never matches a workload: its negation matches every workload,
        # and still no unmanaged address (`not` is a workload term).
        (of_addr, ["allowed", "allowed", "not-allowed"]),
        (of_any, ["not-allowed", "not-allowed", "not-allowed"]),
    ]:
        ps = one_policy(Rule("r", Selector(any=True), sel, svc("tcp")))
        got = [
            reference_judge(conv("8.8.8.8", s), ps, wls)[0]
            for s in ("10.0.0.1", "10.0.0.2", "10.0.0.9")
        ]
        assert got == expected, sel


def test_not_inner_selector_ignores_the_scope() -> None:
    """With from_outside_scope, `{not: {role: web}}` refuses every web workload, also those
    outside the scope: the inner selector is judged without the scope."""
    wls = [
        wl("shop-web", "10.0.0.1", app="shop", role="web"),
        wl("shop-etl", "10.0.0.2", app="shop", role="etl"),
        wl("pay-db", "10.0.0.3", app="pay", role="db"),
    ]
    rule = Rule("r", Selector(negations=(WEB,)), DB, svc("tcp"), from_outside_scope=True)
    ps = one_policy(rule, scope=Selector.of(app="pay"))
    assert reference_judge(conv("10.0.0.1", "10.0.0.3"), ps, wls)[0] == "not-allowed"
    assert reference_judge(conv("10.0.0.2", "10.0.0.3"), ps, wls)[0] == "allowed"
    # Without from_outside_scope the outer selector keeps the scope: shop-etl is out.
    ps = one_policy(
        Rule("r", Selector(negations=(WEB,)), DB, svc("tcp")), scope=Selector.of(app="pay")
    )
    assert reference_judge(conv("10.0.0.2", "10.0.0.3"), ps, wls)[0] == "not-allowed"


def test_workload_selector_and_an_unknown_name() -> None:
    ps = one_policy(
        Rule("r", Selector(workload="a"), Selector(workload="b"), svc("tcp")),
        Rule("ghost", Selector(workload="ghost"), Selector(any=True), svc("tcp")),
    )
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, AB)[:2] == ("allowed", "r")
    assert reference_judge(conv("10.0.0.2", "10.0.0.1"), ps, AB)[0] == "not-allowed"


def test_cidrs_with_except_match_unmanaged_addresses_only() -> None:
    sel = Selector(cidrs=("10.0.0.0/8", "fd00::/8"), except_=("10.0.0.0/24", "fd00::/64"))
    ps = one_policy(Rule("r", sel, Selector(any=True), svc("tcp")))
    for client, expected in [
        ("10.1.0.1", "allowed"),
        ("10.0.0.7", "not-allowed"),  # in except
        ("10.0.0.1", "not-allowed"),  # a workload, though inside the ranges... and except
        ("11.0.0.1", "not-allowed"),
        ("fd00:1::1", "allowed"),
        ("fd00::9", "not-allowed"),
        ("2001:db8::1", "not-allowed"),
    ]:
        assert reference_judge(conv(client, "8.8.8.8"), ps, AB)[0] == expected, client
    # A workload inside the ranges is not an address.
    wls = [wl("x", "10.1.0.1")]
    assert reference_judge(conv("10.1.0.1", "8.8.8.8"), ps, wls)[0] == "not-allowed"


def test_ipv4_and_ipv6_ranges_do_not_mix() -> None:
    ps = one_policy(Rule("r", Selector(cidrs=("::/0",)), Selector(any=True), svc("tcp")))
    assert reference_judge(conv("8.8.8.8", "1.1.1.1"), ps, [])[0] == "not-allowed"
    assert reference_judge(conv("2001:db8::1", "1.1.1.1"), ps, [])[0] == "allowed"


DNS = [
    (T - timedelta(hours=1), T + timedelta(hours=1), "203.0.113.9", "api.example.com"),
    (T - timedelta(hours=1), T, "203.0.113.10", "api.example.com"),  # ended at T
    (T, T + timedelta(minutes=5), "2001:db8::9", "a.b.example.com"),
    (T - timedelta(hours=1), T + timedelta(hours=1), "203.0.113.11", "www.example.com"),
    (T - timedelta(hours=1), T + timedelta(hours=1), "203.0.113.11", "other.net"),  # two names
    (T - timedelta(hours=1), T + timedelta(hours=1), "10.0.0.1", "api.example.com"),  # a workload
    (T - timedelta(hours=1), T + timedelta(hours=1), "203.0.113.12", "example.com"),
]


@pytest.mark.parametrize(
    ("fqdn", "client", "expected"),
    [
        ("api.example.com", "203.0.113.9", "allowed"),
        ("api.example.com", "203.0.113.10", "not-allowed"),  # the answer was valid until T
        ("*.example.com", "2001:db8::9", "allowed"),  # valid from T on, and a deeper name
        ("*.b.example.com", "2001:db8::9", "allowed"),
        ("*.example.com", "203.0.113.12", "not-allowed"),  # not below example.com: it is it
        ("example.com", "203.0.113.12", "allowed"),
        ("www.example.com", "203.0.113.11", "allowed"),  # any valid answer counts
        ("other.net", "203.0.113.11", "allowed"),
        ("api.example.com", "10.0.0.1", "not-allowed"),  # a workload is not an address
        ("API.Example.com.", "203.0.113.9", "allowed"),  # names are compared normalised
    ],
)
def test_fqdn(fqdn: str, client: str, expected: str) -> None:
    ps = one_policy(Rule("r", Selector(fqdn=fqdn), Selector(any=True), svc("tcp")))
    assert reference_judge(conv(client, "8.8.8.8"), ps, AB, DNS)[0] == expected


def test_iplist_ranges_or_names() -> None:
    lst = IPList(
        "partners",
        cidrs=("203.0.113.0/24",),
        except_=("203.0.113.9/32", "203.0.113.12/32"),
        fqdns=("*.example.com",),
    )
    ps = one_policy(
        Rule("r", Selector(iplist="partners"), Selector(any=True), svc("tcp")), iplists=(lst,)
    )
    for client, expected in [
        ("203.0.113.1", "allowed"),  # in the range
        ("203.0.113.9", "allowed"),  # excepted from the range, but named api.example.com
        ("203.0.113.12", "not-allowed"),  # excepted, and example.com is not below itself
        ("2001:db8::9", "allowed"),  # outside the ranges, named a.b.example.com
        ("198.51.100.1", "not-allowed"),
        ("10.0.0.1", "not-allowed"),  # a workload, named by DNS all the same
    ]:
        assert reference_judge(conv(client, "8.8.8.8"), ps, AB, DNS)[0] == expected, client


def test_an_unknown_iplist_matches_nothing() -> None:
    ps = one_policy(Rule("r", Selector(iplist="nope"), Selector(any=True), svc("tcp")))
    assert reference_judge(conv("8.8.8.8", "1.1.1.1"), ps, [])[0] == "not-allowed"


# ---------------------------------------------------------------------------------------------
# same


def test_same_needs_both_ends_to_be_workloads_with_every_key_equal() -> None:
    wls = [
        wl("a", "10.0.0.1", app="x", env="prod"),
        wl("b", "10.0.0.2", app="x", env="prod"),
        wl("c", "10.0.0.3", app="x", env="dev"),
        wl("d", "10.0.0.4", env="prod"),
    ]
    ps = one_policy(
        Rule("r", Selector(any=True), Selector(any=True), svc("tcp"), same=("app", "env"))
    )
    got = [reference_judge(conv("10.0.0.1", f"10.0.0.{i}"), ps, wls)[0] for i in (2, 3, 4, 9)]
    assert got == ["allowed", "not-allowed", "not-allowed", "not-allowed"]
    # Two workloads that both lack the key are not "equal" on it.
    wls2 = [wl("e", "10.0.0.5", env="prod"), wl("f", "10.0.0.6", env="prod")]
    assert reference_judge(conv("10.0.0.5", "10.0.0.6"), ps, wls2)[0] == "not-allowed"


# ---------------------------------------------------------------------------------------------
# Services


@pytest.mark.parametrize(
    ("service", "conversation", "matches"),
    [
        ("tcp", "tcp/1", True),
        ("tcp", "tcp", True),  # no port at all: an unranged service still covers it
        ("tcp/443", "tcp", False),  # a conversation without a port never matches a range
        ("tcp/443", "tcp/443", True),
        ("tcp/443", "udp/443", False),
        ("tcp/8000-8999", "tcp/7999", False),
        ("tcp/8000-8999", "tcp/8000", True),
        ("tcp/8000-8999", "tcp/8999", True),
        ("tcp/8000-8999", "tcp/9000", False),
        ("udp/0-65535", "udp/0", True),
        ("sctp/38412", "sctp/38412", True),
        ("icmp", "icmp/3", True),
        ("icmp/8", "icmp/8", True),
        ("icmp/8", "icmp/0", False),
        ("icmp/8", "icmp", False),  # no type
        ("icmp/8", "icmpv6/8", False),
        ("icmpv6/128", "icmpv6/128", True),
        ("proto/47", "proto/47", True),
        ("proto/47", "proto/50", False),
        ("proto/6", "tcp/22", True),
        ("any", "proto/0", True),
        ("any", "icmpv6/1", True),
    ],
)
def test_l4_services(service: str, conversation: str, matches: bool) -> None:
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), svc(service)))
    got = reference_judge(conv("8.8.8.8", "1.1.1.1", conversation), ps, [])
    assert got == (
        ("allowed", "r", False, False) if matches else ("not-allowed", None, False, False)
    )


def test_a_tcp_port_is_never_an_icmp_type() -> None:
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), svc("icmp/8")))
    c = conv("8.8.8.8", "1.1.1.1", "tcp/8")
    c["client_port"] = 8
    assert reference_judge(c, ps, [])[0] == "not-allowed"


NARROW = Service(6, 8080, 8080, process="nginx", http_methods=("get",), http_paths=("/api/.*",))


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"process": "nginx", "method": "GET", "path": "/api/x"}, ("allowed", "r", False)),
        ({"process": "java", "method": "GET", "path": "/api/x"}, ("not-allowed", None, False)),
        ({"process": "nginx", "method": "POST", "path": "/api/x"}, ("not-allowed", None, False)),
        # Paths must match whole.
        ({"process": "nginx", "method": "GET", "path": "/v1/api/x"}, ("not-allowed", None, False)),
        ({"process": "nginx", "method": "GET", "path": "/api"}, ("not-allowed", None, False)),
        # A missing fact: judged without it, and unverified.
        ({"method": "GET", "path": "/api/x"}, ("allowed", "r", True)),
        ({"process": "nginx"}, ("allowed", "r", True)),
        ({}, ("allowed", "r", True)),
        # A present fact that disagrees still refuses, even when another is missing.
        ({"process": "java"}, ("not-allowed", None, False)),
        ({"method": "PUT"}, ("not-allowed", None, False)),
    ],
)
def test_narrowed_service(facts: dict[str, str], expected: tuple[str, str | None, bool]) -> None:
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), (NARROW,)))
    process, method, path = facts.get("process"), facts.get("method"), facts.get("path")
    c = conv("8.8.8.8", "1.1.1.1", "tcp/8080", process=process, method=method, path=path)
    assert reference_judge(c, ps, [])[:3] == expected
    # The L4 part still has to match.
    c = conv("8.8.8.8", "1.1.1.1", "tcp/80", process=process, method=method, path=path)
    assert reference_judge(c, ps, [])[0] == "not-allowed"


def test_icmp_code_is_a_narrowing_fact() -> None:
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), svc("icmp/3/4")))
    assert reference_judge(conv("8.8.8.8", "1.1.1.1", "icmp/3", icmp_code=4), ps, [])[:3] == (
        "allowed",
        "r",
        False,
    )
    assert reference_judge(conv("8.8.8.8", "1.1.1.1", "icmp/3", icmp_code=1), ps, [])[0] == (
        "not-allowed"
    )
    assert reference_judge(conv("8.8.8.8", "1.1.1.1", "icmp/3"), ps, [])[:3] == (
        "allowed",
        "r",
        True,
    )
    # A code on the conversation does not matter to a service that does not ask for it.
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), svc("icmp/3")))
    assert reference_judge(conv("8.8.8.8", "1.1.1.1", "icmp/3", icmp_code=9), ps, [])[:3] == (
        "allowed",
        "r",
        False,
    )


def test_verified_when_any_service_matches_with_all_facts() -> None:
    both = (Service(6, 80, 80, process="nginx"), Service(6))
    ps = one_policy(Rule("r", Selector(any=True), Selector(any=True), both))
    assert reference_judge(conv("8.8.8.8", "1.1.1.1", "tcp/80"), ps, [])[:3] == (
        "allowed",
        "r",
        False,
    )


def test_an_unverified_match_decides_and_is_marked() -> None:
    """The first candidate decides even when it matched only through a missing fact."""
    ps = one_policy(
        Rule(
            "narrow-deny", WEB, DB, (Service(6, 443, 443, process="nginx"),), action="override-deny"
        ),
        Rule("allow", WEB, DB, svc("tcp/443")),
    )
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, AB) == (
        "denied",
        "narrow-deny",
        True,
        True,
    )
    assert reference_judge(conv("10.0.0.1", "10.0.0.2", process="java"), ps, AB) == (
        "allowed",
        "allow",
        False,
        False,
    )


# ---------------------------------------------------------------------------------------------
# Modes and blocking


def test_modes_are_the_strictest_of_the_covering_scoped_policies() -> None:
    wls = [
        wl("v", "10.0.0.1", app="v"),
        wl("s", "10.0.0.2", app="s"),
        wl("vs", "10.0.0.3", app="v", env="s"),
        wl("free", "10.0.0.4", app="free"),
    ]
    policies = (
        Policy("pv", scope=Selector.of(app="v"), mode="visibility"),
        Policy("ps", scope=Selector.of(app="s"), mode="selective"),
        Policy("pe", scope=Selector.of(env="s"), mode="selective"),
        # An unscoped policy's mode covers nobody.
        Policy("unscoped", mode="visibility"),
        Policy(
            "deny",
            rules=(
                Rule(
                    "d", Selector.of(app="free"), Selector(any=True), svc("tcp/23"), action="deny"
                ),
            ),
        ),
    )
    for default in ("full", "visibility"):
        ps = PolicySet(policies=policies, settings=Settings(default_mode=default))

        def blocked(client: str, server: str, service: str = "tcp/443") -> bool:
            return reference_judge(conv(client, server, service), ps, wls)[3]  # noqa: B023

        # not-allowed between v (visibility) and s (selective): nobody blocks.
        assert not blocked("10.0.0.1", "10.0.0.2")
        # vs is visibility and selective: selective; not-allowed is still let through.
        assert not blocked("10.0.0.3", "10.0.0.1")
        # free has the default mode.
        assert blocked("10.0.0.4", "10.0.0.1") == (default == "full")
        assert blocked("8.8.8.8", "10.0.0.4") == (default == "full")
        # denied: a selective end blocks it; free's own mode blocks it when full.
        assert blocked("10.0.0.4", "10.0.0.2", "tcp/23")
        assert blocked("10.0.0.4", "10.0.0.1", "tcp/23") == (default == "full")
        assert blocked("10.0.0.4", "10.0.0.3", "tcp/23")
        # Unmanaged ends have no mode.
        assert not blocked("8.8.8.8", "1.1.1.1")


def test_a_scoped_policy_without_mode_takes_the_default() -> None:
    wls = [wl("a", "10.0.0.1", app="a"), wl("b", "10.0.0.2", app="b")]
    policies = (
        Policy("pa", scope=Selector.of(app="a")),
        Policy("pb", scope=Selector.of(app="b"), mode="visibility"),
    )
    ps = PolicySet(policies=policies, settings=Settings(default_mode="selective"))
    # a: selective (default), b: visibility; not-allowed is blocked by neither.
    assert reference_judge(conv("10.0.0.1", "10.0.0.2"), ps, wls) == (
        "not-allowed",
        None,
        False,
        False,
    )
    ps = PolicySet(policies=policies, settings=Settings(default_mode="full"))
    assert reference_judge(conv("10.0.0.2", "10.0.0.1"), ps, wls)[3] is True


# ---------------------------------------------------------------------------------------------
# Who owns an address


def test_overlapping_leases_latest_start_then_earliest_end_then_name() -> None:
    t1, t2 = T - timedelta(hours=2), T - timedelta(hours=1)
    old = wl("old", "10.0.0.7", role="web")
    new = wl("new", AddressLease("10.0.0.7", t2), role="db")
    short = wl("short", AddressLease("10.0.0.7", t2, T + timedelta(hours=1)))
    earlier = wl("earlier", AddressLease("10.0.0.7", t1, T + timedelta(minutes=1)))
    assert owner_at("10.0.0.7", T, [old, new]) is new
    assert owner_at("10.0.0.7", t2 - US, [old, new]) is old
    assert owner_at("10.0.0.7", T, [old, new, short, earlier]) is short
    twin_a = wl("twin-a", AddressLease("10.0.0.8", t1, T))
    twin_b = wl("twin-b", AddressLease("10.0.0.8", t1, T))
    assert owner_at("10.0.0.8", t2, [twin_b, twin_a]) is twin_a
    assert owner_at("10.0.0.8", T, [twin_b, twin_a]) is None
    # The verdict follows the owner at the conversation's start.
    ps = one_policy(Rule("r", Selector(any=True), DB, svc("tcp")))
    assert reference_judge(conv("8.8.8.8", "10.0.0.7"), ps, [old, new])[0] == "allowed"
    assert reference_judge(conv("8.8.8.8", "10.0.0.7", at=t2 - US), ps, [old, new])[0] == (
        "not-allowed"
    )


@pytest.mark.parametrize(
    "sel",
    [
        Selector(),
        Selector(any=True, labels=(LabelTerm("role", ("web",)),)),
        Selector(labels=(LabelTerm("role", ("web",)),), cidrs=("10.0.0.0/8",)),
        Selector(workload="a", fqdn="x.example.com"),
        Selector(except_=("10.0.0.0/8",)),
    ],
)
def test_selectors_that_the_language_refuses_are_refused(sel: Selector) -> None:
    ps = one_policy(Rule("r", sel, Selector(any=True), svc("tcp")))
    with pytest.raises(ValueError):
        reference_judge(conv("8.8.8.8", "10.0.0.1"), ps, AB)


# ---------------------------------------------------------------------------------------------
# The strategies reach every construct of docs/policy.md


def _selector_constructs(sel: Selector, policy: PolicySet, depth: int = 0) -> set[str]:
    found = set()
    if sel.labels:
        found.add("labels")
        if any(len(t.values) > 1 for t in sel.labels):
            found.add("label alternatives")
    if sel.workload is not None:
        found.add("workload")
    if sel.any:
        found.add("any")
    if sel.cidrs:
        found.add("cidrs")
        if sel.except_:
            found.add("cidrs except")
    if sel.fqdn is not None:
        found.add("fqdn *." if sel.fqdn.startswith("*.") else "fqdn")
    if sel.iplist is not None:
        found.add("iplist")
        lst = policy.iplist(sel.iplist)
        if lst is not None and lst.except_:
            found.add("iplist except")
        if lst is not None and lst.fqdns:
            found.add("iplist fqdns")
    for inner in sel.negations:
        found.add("not" if depth == 0 else "nested not")
        if inner.address_terms:
            found.add("not of addresses")
        if inner.any:
            found.add("not of any")
        found |= _selector_constructs(inner, policy, depth + 1)
    return found


def _service_constructs(s: Service) -> set[str]:
    if s.proto is None:
        found = {"service any"}
    elif s.proto in (6, 17, 132):
        found = {"ports all" if s.lo is None else "port" if s.lo == s.hi else "port range"}
        found.add({6: "tcp", 17: "udp", 132: "sctp"}[s.proto])
    elif s.proto in (1, 58):
        found = {"icmp" if s.proto == 1 else "icmpv6"}
        found.add("icmp all" if s.lo is None else "icmp type")
    else:
        found = {"proto/N"}
    if s.icmp_code is not None:
        found.add("icmp code")
    if s.process:
        found.add("process")
    if s.http_methods:
        found.add("http methods")
    if s.http_paths:
        found.add("http paths")
    return found


CONSTRUCTS = {
    *("labels", "label alternatives", "workload", "any", "cidrs", "cidrs except", "fqdn"),
    *("fqdn *.", "iplist", "iplist except", "iplist fqdns", "not", "nested not"),
    *("not of addresses", "not of any", "service any", "ports all", "port", "port range"),
    *("tcp", "udp", "sctp", "icmp", "icmpv6", "icmp all", "icmp type", "proto/N", "icmp code"),
    *("process", "http methods", "http paths", "scoped", "unscoped", "from_outside_scope"),
    *("same", "allow", "deny", "override-deny", "mode visibility", "mode selective"),
    *("mode full", "mode default", "default visibility", "default selective", "default full"),
    *("admin", "control", "ipv6 workload", "lease limited", "workload without labels"),
    *("overlapping leases", "at a lease edge", "outside every lease"),
    *("verdict allowed", "verdict denied", "verdict not-allowed", "unverified"),
    *("blocked", "not blocked", "decided by allow", "decided by deny"),
    *("decided by override-deny", "decided by management:admin"),
    *("decided by management:control", "decided by an fqdn rule", "ipv6 conversation"),
    *("narrowed fact present and agreeing", "narrowed fact present and disagreeing"),
    *("narrowed fact missing", "icmp conversation", "no port", "unmanaged end"),
}


def test_the_strategies_reach_every_construct() -> None:
    """Every construct of docs/policy.md appears in what the strategies draw, and decides
    verdicts (derandomised, so that this is not a matter of luck)."""
    seen: set[str] = set()

    @settings(max_examples=100, deadline=None, database=None, derandomize=True)
    @given(scenarios())
    def draw(s: Scenario) -> None:
        p = s.policy
        seen.add(f"default {p.settings.default_mode}")
        for pol in p.policies:
            seen.add("scoped" if pol.scope is not None else "unscoped")
            if pol.scope is not None:
                seen.add(f"mode {pol.mode or 'default'}")
        for pol, rule in p.rules():
            seen.add(rule.action)
            if rule.from_outside_scope and pol.scope is not None:
                seen.add("from_outside_scope")
            if rule.same:
                seen.add("same")
            seen.update(_selector_constructs(rule.from_, p) | _selector_constructs(rule.to, p))
            for service in rule.services:
                seen.update(_service_constructs(service))
        m = p.settings.management
        if m.admin_networks and m.services:
            seen.add("admin")
        if m.controllers and m.control_services:
            seen.add("control")
        for w in s.workloads:
            if any(":" in a.ip for a in w.addresses):
                seen.add("ipv6 workload")
            if any(a.start is not None or a.until is not None for a in w.addresses):
                seen.add("lease limited")
            if not w.labels:
                seen.add("workload without labels")
        rules = {r.id: (pol, r) for pol, r in p.rules()}
        for c in s.conversations:
            leases = [a for w in s.workloads for a in w.addresses]
            on_ip = [a for a in leases if a.ip in (c["client_ip"], c["server_ip"])]
            if len([a for a in on_ip if a.covers(c["start"])]) > 1:
                seen.add("overlapping leases")
            if any(c["start"] in (a.start, a.until) for a in on_ip):
                seen.add("at a lease edge")
            if on_ip and not any(a.covers(c["start"]) for a in on_ip):
                seen.add("outside every lease")
            if ":" in c["client_ip"] or ":" in c["server_ip"]:
                seen.add("ipv6 conversation")
            if c["proto"] in (1, 58):
                seen.add("icmp conversation")
            if c["proto"] in (6, 17, 132) and c["server_port"] < 0:
                seen.add("no port")
            verdict, rule_id, unverified, blocked = reference_judge(c, p, s.workloads, s.dns)
            assert verdict in ("allowed", "denied", "not-allowed")
            assert (rule_id is None) == (verdict == "not-allowed")
            assert not (unverified and rule_id is None)
            seen.add(f"verdict {verdict}")
            seen.add("blocked" if blocked else "not blocked")
            if unverified:
                seen.add("unverified")
            if rule_id is not None and rule_id.startswith("management:"):
                seen.add(f"decided by {rule_id}")
            elif rule_id is not None:
                pol, rule = rules[rule_id]
                seen.add(f"decided by {rule.action}")
                if rule.from_.fqdn or rule.to.fqdn:
                    seen.add("decided by an fqdn rule")
                for service in rule.services:
                    facts = {
                        "process": ("server_process", service.process),
                        "methods": ("http_method", service.http_methods),
                        "paths": ("http_path", service.http_paths),
                    }
                    for column, wanted in facts.values():
                        if not wanted:
                            continue
                        if c[column] is None:
                            seen.add("narrowed fact missing")
                        elif c[column] == wanted or c[column] in wanted:
                            seen.add("narrowed fact present and agreeing")
                        else:
                            seen.add("narrowed fact present and disagreeing")
            if owner_at(c["client_ip"], c["start"], s.workloads) is None:
                seen.add("unmanaged end")

    draw()
    assert CONSTRUCTS - seen == set()
