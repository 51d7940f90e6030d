"""The policy loader: every diagnostic code at its exact place, and the values it builds."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cellwall.errors import InputError
from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention
from cellwall.model.policy import (
    IPList,
    LabelTerm,
    Management,
    Policy,
    RoleBinding,
    Rule,
    Selector,
    Service,
    Settings,
    parse_service,
)
from cellwall.policy.loader import LoadResult, load_policy, load_policy_texts

FIXTURES = Path(__file__).parent / "fixtures"
CONVENTION = LabelConvention.of(
    ["app", "role", "env"], {"env": ["prod", "staging", "dev"]}, {"Environment": "env"}
)
WORKLOADS = [
    Workload.of("web-1", labels={"app": "shop", "role": "web", "env": "prod"}),
    Workload.of("api-1", labels={"app": "shop", "role": "api", "env": "prod"}),
    Workload.of("db-1", labels={"app": "shop", "role": "db", "env": "prod", "data": "pci"}),
    Workload.of("dev-web-1", labels={"app": "shop", "role": "web", "env": "dev"}),
]
TODAY = date(2026, 11, 2)
LISTS = (
    "apiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: internet}\n"
    "spec: {cidrs: [0.0.0.0/0], except: [10.0.0.0/8]}\n"
)
# A policy whose first rule starts on line 7; its keys are in column 7.
POLICY = (
    "apiVersion: cellwall/v1\n"
    "kind: Policy\n"
    "metadata: {name: shop, owner: team-shop}\n"
    "spec:\n"
    "  scope: {app: shop}\n"
    "  rules:\n"
)
RULE = "    - id: r1\n      from: {role: web}\n      to: {role: api}\n      services: [tcp/8443]\n"


def load(text: str, **kw: object) -> LoadResult:
    kw.setdefault("convention", CONVENTION)
    kw.setdefault("workloads", WORKLOADS)
    kw.setdefault("today", TODAY)
    return load_policy_texts({"lists.yaml": LISTS, "p.yaml": text}, **kw)  # type: ignore[arg-type]


def found(r: LoadResult) -> list[str]:
    return [f"{d.location()} {d.severity} {d.code}" for d in r.diagnostics]


def rule(*lines: str) -> str:
    """A rule of POLICY: its first line on line 7, the others below it."""
    return POLICY + "    - " + lines[0] + "\n" + "".join(f"      {x}\n" for x in lines[1:])


WEB_API = ("from: {role: web}", "to: {role: api}")


# (case, policy text, expected findings "file:line:col severity code")
CASES = [
    ("yaml-syntax", POLICY + "    - id: [unclosed\n", ["p.yaml:8:1 error yaml-syntax"]),
    ("duplicate-key", rule("id: r1", "id: r2", *WEB_API), ["p.yaml:8:7 error duplicate-key"]),
    ("bad-document", "- a list\n", ["p.yaml:1:1 error bad-document"]),
    (
        "bad-api-version",
        "apiVersion: cellwall/v2\nkind: Policy\n",
        ["p.yaml:1:13 error bad-api-version"],
    ),
    ("no-api-version", "kind: Policy\n", ["p.yaml:1:1 error bad-api-version"]),
    ("unknown-kind", "apiVersion: cellwall/v1\nkind: Polcy\n", ["p.yaml:2:7 error unknown-kind"]),
    ("not-policy", "apiVersion: cellwall/v1\nkind: Workload\n", ["p.yaml:2:7 warning not-policy"]),
    (
        "unknown-field",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "servcies: [tcp/2]"),
        ["p.yaml:11:7 error unknown-field"],
    ),
    (
        "missing-from",
        rule("id: r1", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:7:7 error missing-field"],
    ),
    (
        "missing-to",
        rule("id: r1", "from: {role: web}", "services: [tcp/1]"),
        ["p.yaml:7:7 error missing-field"],
    ),
    ("missing-services", rule("id: r1", *WEB_API), ["p.yaml:7:7 error missing-field"]),
    ("missing-id", rule(*WEB_API, "services: [tcp/1]"), ["p.yaml:7:7 error missing-field"]),
    (
        "bad-name",
        rule("id: 'web to api'", *WEB_API, "services: [tcp/1]"),
        ["p.yaml:7:11 error bad-name"],
    ),
    (
        "bad-type",
        rule("id: r1", "from: [role, web]", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:13 error bad-type"],
    ),
    (
        "bad-label",
        rule("id: r1", "from: {role: ' web'}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:20 error bad-label"],
    ),
    (
        "bad-label-empty",
        rule("id: r1", "from: {role: []}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:20 error bad-label"],
    ),
    (
        "unknown-label-key",
        rule("id: r1", "from: {rol: web}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:14 error unknown-label-key"],
    ),
    (
        "alias-key",
        rule("id: r1", "from: {Environment: prod}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:14 error unknown-label-key"],
    ),
    (
        "unknown-label-value",
        rule(
            "id: r1", "from: {role: web, env: [prod, prd]}", "to: {role: api}", "services: [tcp/1]"
        ),
        ["p.yaml:8:37 error unknown-label-value"],
    ),
    (
        "same-unknown-key",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "same: [evn]"),
        ["p.yaml:11:14 error unknown-label-key"],
    ),
    (
        "unknown-iplist",
        rule("id: r1", "from: {iplist: internt}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:22 error unknown-iplist"],
    ),
    (
        "bad-port",
        rule("id: r1", *WEB_API, "services: [tcp/1, tcp/70000]"),
        ["p.yaml:10:25 error bad-port"],
    ),
    (
        "bad-port-range",
        rule("id: r1", *WEB_API, "services: [udp/90-80]"),
        ["p.yaml:10:18 error bad-port"],
    ),
    (
        "bad-protocol",
        rule("id: r1", *WEB_API, "services: [tpc/80]"),
        ["p.yaml:10:18 error bad-protocol"],
    ),
    ("bad-icmp", rule("id: r1", *WEB_API, "services: [icmp/300]"), ["p.yaml:10:18 error bad-icmp"]),
    (
        "bad-service-empty",
        rule("id: r1", *WEB_API, "services: []"),
        ["p.yaml:10:17 error bad-service"],
    ),
    (
        "bad-service-http-udp",
        rule("id: r1", *WEB_API, "services: [{service: udp/80, http: {methods: [GET]}}]"),
        ["p.yaml:10:36 error bad-service"],
    ),
    (
        "bad-service-regex",
        rule("id: r1", *WEB_API, "services: [{service: tcp/80, http: {paths: ['(']}}]"),
        ["p.yaml:10:18 error bad-service"],
    ),
    (
        "bad-cidr",
        rule("id: r1", "from: {cidrs: [10.0.0.1/8]}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:22 error bad-cidr"],
    ),
    (
        "bad-cidr-text",
        rule(
            "id: r1",
            "from: {cidrs: [10.0.0.0/8], except: [nope]}",
            "to: {role: api}",
            "services: [tcp/1]",
        ),
        ["p.yaml:8:44 error bad-cidr"],
    ),
    (
        "bad-fqdn",
        rule("id: r1", *WEB_API[:1], "to: {fqdn: 'a..b'}", "services: [tcp/1]"),
        ["p.yaml:9:18 error bad-fqdn"],
    ),
    (
        "selector-mixed",
        rule(
            "id: r1", "from: {role: web, iplist: internet}", "to: {role: api}", "services: [tcp/1]"
        ),
        ["p.yaml:8:13 error selector-mixed"],
    ),
    (
        "selector-mixed-not",
        rule(
            "id: r1", "from: {not: {cidrs: [10.0.0.0/8]}}", "to: {role: api}", "services: [tcp/1]"
        ),
        ["p.yaml:8:19 error selector-mixed"],
    ),
    (
        "selector-empty",
        rule("id: r1", "from: {}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:13 error selector-empty"],
    ),
    (
        "selector-any",
        rule("id: r1", "from: {any: true, role: web}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:14 error selector-any"],
    ),
    (
        "selector-any-false",
        rule("id: r1", "from: {any: false}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:19 error selector-any"],
    ),
    (
        "bad-selector",
        rule(
            "id: r1",
            "from: {iplist: internet, except: [10.1.0.0/16]}",
            "to: {role: api}",
            "services: [tcp/1]",
        ),
        ["p.yaml:8:32 error bad-selector"],
    ),
    (
        "scope-conflict-to",
        rule("id: r1", "from: {role: web}", "to: {app: bank}", "services: [tcp/1]"),
        ["p.yaml:9:12 error scope-conflict"],
    ),
    (
        "scope-conflict-from",
        rule("id: r1", "from: {app: [bank, pay]}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:14 error scope-conflict"],
    ),
    (
        "scope-conflict-not",
        rule("id: r1", "from: {role: web}", "to: {not: {app: shop}}", "services: [tcp/1]"),
        ["p.yaml:9:12 error scope-conflict"],
    ),
    (
        "outside-scope-ok",
        rule(
            "id: r1",
            "from: {app: shop, role: web}",
            "from_outside_scope: true",
            "to: {role: api}",
            "services: [tcp/1]",
        ),
        [],
    ),
    (
        "bad-same",
        rule(
            "id: r1",
            "from: {iplist: internet}",
            "to: {role: api}",
            "services: [tcp/1]",
            "same: [env]",
        ),
        ["p.yaml:11:13 error bad-same"],
    ),
    (
        "bad-action",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "action: permit"),
        ["p.yaml:11:15 error bad-action"],
    ),
    (
        "bad-date",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "review_by: soon"),
        ["p.yaml:11:18 error bad-date"],
    ),
    (
        "bad-bool",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "from_outside_scope: maybe"),
        ["p.yaml:11:27 error bad-type"],
    ),
    (
        "bad-mode",
        POLICY.replace("  rules:\n", "  mode: strict\n  rules:\n") + RULE,
        ["p.yaml:6:9 error bad-mode"],
    ),
    (
        "bad-scope",
        POLICY.replace("{app: shop}", "{workload: web-1}") + RULE,
        ["p.yaml:5:10 error bad-scope"],
    ),
    (
        "review-overdue",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "review_by: 2026-11-01"),
        ["p.yaml:11:18 warning review-overdue"],
    ),
    (
        "review-today-is-fine",
        rule("id: r1", *WEB_API, "services: [tcp/1]", "review_by: 2026-11-02"),
        [],
    ),
    (
        "no-owner",
        POLICY.replace(", owner: team-shop", "")
        + RULE
        + "    - {id: r2, owner: x, from: {role: web}, to: {role: db}, services: [tcp/1]}\n",
        ["p.yaml:7:7 warning no-owner"],
    ),
    (
        "selector-no-match",
        rule("id: r1", "from: {role: web, env: staging}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:13 warning selector-no-match"],
    ),
    (
        "selector-no-match-workload",
        rule("id: r1", "from: {workload: web-9}", "to: {role: api}", "services: [tcp/1]"),
        ["p.yaml:8:13 warning selector-no-match"],
    ),
    (
        "mode-unscoped",
        POLICY.replace("  scope: {app: shop}\n", "  mode: full\n") + RULE,
        ["p.yaml:5:9 warning mode-unscoped"],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_finding_is_reported_at_its_place(text: str, expected: list[str]) -> None:
    r = load(text)
    assert found(r) == expected
    for d in r.diagnostics:
        assert d.message and d.hint, d
    if any(" error " in e for e in expected):
        assert r.policy_set.policies == ()
    else:
        assert [p.name for p in r.policy_set.policies] == (["shop"] if "Policy" in text else [])


def test_hints_suggest_close_matches() -> None:
    hints = {
        d.code: d.hint
        for text in (
            rule(
                "id: r1",
                "from: {rol: web, iplist: internt}",
                "to: {role: api}",
                "services: [tcp/1]",
            ),
            rule("id: r1", "from: {env: prd}", "to: {Environment: prod}", "services: [tcp/1]"),
            "apiVersion: cellwall/v1\nkind: IPLists\n",
        )
        for d in load(text).diagnostics
    }
    assert hints["unknown-iplist"] == "did you mean `internet`?"
    assert hints["unknown-label-value"] == "did you mean `prod`?"
    assert hints["unknown-label-key"] == "`Environment` is an alias of `env`; write `env`"
    assert hints["unknown-kind"] == "did you mean IPList?"
    r = load(rule("id: r1", "from: {rol: web}", "to: {role: api}", "services: [tcp/1]"))
    assert r.diagnostics[0].hint == "did you mean `role`?"


def test_without_an_inventory_labels_are_not_judged() -> None:
    text = rule("id: r1", "from: {rol: web}", "to: {env: prd}", "services: [tcp/1]")
    r = load(text, convention=None, workloads=None, today=None)
    assert r.diagnostics == []
    assert len(r.policy_set.rules()) == 1


def test_a_key_in_the_convention_is_known_without_workloads() -> None:
    text = rule("id: r1", "from: {role: web}", "to: {role: api, env: prod}", "services: [tcp/1]")
    assert found(load(text, workloads=[])) == []
    assert found(load(text.replace("env: prod", "tier: x"), workloads=[])) == [
        "p.yaml:9:23 error unknown-label-key"
    ]


def test_a_label_value_of_an_unrestricted_key_is_not_an_error() -> None:
    text = rule("id: r1", "from: {role: cron}", "to: {role: api}", "services: [tcp/1]")
    assert found(load(text)) == ["p.yaml:8:13 warning selector-no-match"]


def test_duplicates_across_files_keep_the_first() -> None:
    other = POLICY.replace("name: shop", "name: shop2") + RULE
    texts = {
        "a.yaml": POLICY + RULE + "---\n" + LISTS,
        "b.yaml": POLICY + RULE.replace("r1", "r2") + "---\n" + other + "---\n" + LISTS,
    }
    r = load_policy_texts(texts, convention=CONVENTION, workloads=WORKLOADS)
    assert found(r) == [
        "b.yaml:3:18 error duplicate-name",
        "b.yaml:18:11 error duplicate-rule-id",
        "b.yaml:25:18 error duplicate-name",
    ]
    assert "also defined at a.yaml:3" in r.diagnostics[0].message
    assert "also used at a.yaml:7" in r.diagnostics[1].message
    assert "also defined at a.yaml:14" in r.diagnostics[2].message
    assert [p.name for p in r.policy_set.policies] == ["shop"]
    assert [i.name for i in r.policy_set.iplists] == ["internet"]


def test_invariant_findings() -> None:
    head = "apiVersion: cellwall/v1\nkind: Invariant\nmetadata: {name: guards}\nspec:\n"
    text = (
        head
        + "  - {id: a, forbid: {from: {env: dev}, to: {env: prod}}}\n"
        + "  - {id: a, forbid: {from: {env: dev}, to: {env: staging}}}\n"
        + "  - {id: b, require: {from: {iplist: internet}, to: {role: web}}}\n"
        + "  - {id: c, forbid: {from: {env: dev}, to: {env: prod}}, only: {from: {env: dev}}}\n"
        + "  - {id: d, forbid_path: {from: {iplist: internet}, to: {data: pci}, max_hops: 0}}\n"
        + "  - {id: e, only: {from: {role: web}, to: {role: db}, max_hops: 2}}\n"
    )
    assert found(load(text)) == [
        "p.yaml:6:10 error duplicate-invariant-id",
        "p.yaml:7:22 error missing-field",
        "p.yaml:8:5 error bad-invariant",
        "p.yaml:9:80 error bad-type",
        "p.yaml:10:55 error unknown-field",
    ]
    good = head + "  - {id: a, forbid: {from: {env: staging}, to: {env: prod}}}\n"
    assert found(load(good)) == ["p.yaml:5:28 warning selector-no-match"]
    assert [i.id for s in load(good).policy_set.invariants for i in s.invariants] == ["a"]


def test_other_document_kinds_and_their_findings() -> None:
    text = (
        "apiVersion: cellwall/v1\nkind: RoleBinding\nmetadata: {name: a}\n"
        "spec: {role: owner, subjects: [x]}\n"
        "---\napiVersion: cellwall/v1\nkind: RoleBinding\nmetadata: {name: b}\n"
        "spec: {role: app-owner, subjects: [x]}\n"
        "---\napiVersion: cellwall/v1\nkind: RoleBinding\nmetadata: {name: c}\n"
        "spec: {role: auditor, subjects: [x], apps: [shop]}\n"
        "---\napiVersion: cellwall/v1\nkind: PolicySettings\n"
        "spec: {default_mode: loose, management: {admin_networks: [10.0.0.300/24]}}\n"
        "---\napiVersion: cellwall/v1\nkind: PolicySettings\nspec: {}\n"
        "---\napiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: empty}\nspec: {}\n"
        "---\napiVersion: cellwall/v1\nkind: IPList\nmetadata: {name: names}\n"
        "spec: {fqdns: ['*.example.com', 'bad name']}\n"
        "---\napiVersion: cellwall/v1\nkind: Policy\nspec: {}\n"
    )
    assert found(load(text)) == [
        "p.yaml:4:14 error bad-role",
        "p.yaml:9:7 error bad-role",
        "p.yaml:14:44 error bad-role",
        "p.yaml:18:22 error bad-mode",
        "p.yaml:18:59 error bad-cidr",
        "p.yaml:20:1 error duplicate-name",
        "p.yaml:27:7 error missing-field",
        "p.yaml:32:33 error bad-fqdn",
        "p.yaml:34:1 error missing-field",
    ]


def test_encoding_and_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_bytes(b"apiVersion: cellwall/v1\nkind: \xff\n")
    (tmp_path / ".hidden.yaml").write_text("not: [valid")
    (tmp_path / "notes.txt").write_text("not: [valid")
    r = load_policy([tmp_path, tmp_path / "missing"])
    assert [(d.file, d.line, d.col, d.code) for d in r.diagnostics] == [
        (str(tmp_path / "bad.yaml"), 2, 7, "encoding"),
        (str(tmp_path / "missing"), None, None, "unreadable"),
    ]
    with pytest.raises(InputError) as exc:
        r.raise_for_errors()
    assert len(exc.value.diagnostics) == 2


def test_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    r = load_policy([tmp_path])
    assert [(d.location(), d.code) for d in r.diagnostics] == [(str(tmp_path), "empty")]
    r = load_policy_texts({"a.yaml": "# nothing here\n---\n"})
    assert [(d.location(), d.code) for d in r.diagnostics] == [("<policy>", "empty")]


def test_the_contract_examples_load_with_the_expected_values() -> None:
    bare = load_policy([FIXTURES / "contracts"])
    assert bare.diagnostics == []
    r = load_policy([FIXTURES / "contracts"], convention=CONVENTION, workloads=WORKLOADS)
    assert r.errors == []
    assert r.policy_set == bare.policy_set
    assert sorted(r.texts) == ["invariants.yaml", "policy.yaml"]
    ps = r.policy_set
    assert ps.iplists == (
        IPList(
            "internet",
            ("0.0.0.0/0", "::/0"),
            ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"),
        ),
    )
    payments = ps.policies[1]
    assert (payments.name, payments.owner, payments.mode) == ("payments", "team-payments", "full")
    assert payments.scope == Selector.of(app="payments", env="prod")
    assert payments.rules[0] == Rule(
        "web-from-internet",
        Selector(iplist="internet"),
        Selector.of(role="web"),
        (parse_service("tcp/443"),),
        justification="public checkout",
        review_by=date(2027, 5, 1),
    )
    etl = payments.rules[3]
    assert etl.from_outside_scope and etl.from_ == Selector.of(app="reporting", role="etl")
    glob = ps.policies[0]
    assert [r.id for r in glob.rules] == ["dev-never-prod", "dns", "monitoring-scrapes"]
    assert glob.rules[0].action == "override-deny" and glob.rules[0].services == (Service(),)
    assert glob.rules[1].from_ == Selector(any=True) and glob.rules[1].same == ("env",)
    assert glob.rules[2].to == Selector(negations=(Selector.of(app="infra"),))
    assert [str(s) for s in glob.rules[1].services] == ["udp/53", "tcp/53"]
    (guards,) = ps.invariants
    assert [(i.id, i.kind, i.max_hops) for i in guards.invariants] == [
        ("dev-not-prod", "forbid", None),
        ("only-payments-to-cde", "only", None),
        ("no-internet-path-to-cde", "forbid_path", 3),
        ("checkout-works", "require", None),
    ]
    assert guards.invariants[3].to.labels == (
        LabelTerm("app", ("payments",)),
        LabelTerm("role", ("web",)),
    )
    assert ps.settings == Settings()
    assert r.policy_set.rules()[0][1].origin.line == 38


def test_narrowed_services_settings_and_bindings() -> None:
    text = rule(
        "id: r1",
        *WEB_API,
        "services:",
        "  - {service: tcp/8080, process: nginx}",
        "  - {service: tcp/80, http: {methods: [get, POST], paths: ['/api/.*']}}",
        "  - icmp/8/0",
    ) + (
        "---\napiVersion: cellwall/v1\nkind: PolicySettings\nmetadata: {name: s}\n"
        "spec:\n  default_mode: selective\n  management:\n    admin_networks: [10.255.0.0/24]\n"
        "    services: [tcp/22]\n    controllers: [10.255.0.10]\n"
        "    control_services: tcp/7443\n"
        "---\napiVersion: cellwall/v1\nkind: RoleBinding\nmetadata: {name: owners}\n"
        "spec: {role: app-owner, subjects: [bob, alice], apps: [shop]}\n"
    )
    r = load(text)
    assert r.diagnostics == []
    (svc_proc, svc_http, icmp) = r.policy_set.rules()[0][1].services
    assert svc_proc == Service(6, 8080, 8080, process="nginx")
    assert svc_http == Service(6, 80, 80, http_methods=("GET", "POST"), http_paths=("/api/.*",))
    assert icmp == Service(1, 8, 8, icmp_code=0)
    assert r.policy_set.settings == Settings(
        "selective",
        Management(
            ("10.255.0.0/24",),
            (parse_service("tcp/22"),),
            ("10.255.0.10/32",),
            (parse_service("tcp/7443"),),
        ),
    )
    assert r.policy_set.bindings == (
        RoleBinding("owners", "app-owner", ("alice", "bob"), ("shop",)),
    )
    assert isinstance(r.policy_set.policies[0], Policy)


def test_a_document_with_errors_is_left_out_and_the_others_load() -> None:
    good = POLICY.replace("name: shop", "name: good") + RULE.replace("r1", "g1")
    bad = POLICY + RULE + "      action: maybe\n"
    r = load(good + "---\n" + bad)
    assert [p.name for p in r.policy_set.policies] == ["good"]
    assert found(r) == ["p.yaml:22:15 error bad-action"]


def test_every_error_of_a_document_is_reported_at_once() -> None:
    text = rule(
        "id: r1", "from: {rol: web}", "to: {app: bank, role: [api]}", "services: [tcp/99999, tpc]"
    )
    assert found(load(text)) == [
        "p.yaml:8:14 error unknown-label-key",
        "p.yaml:9:12 error scope-conflict",
        "p.yaml:10:18 error bad-port",
        "p.yaml:10:29 error bad-protocol",
    ]


def test_not_nested_too_deep_is_refused() -> None:
    deep = "{not: " * 10 + "{role: web}" + "}" * 10
    r = load(rule("id: r1", f"from: {deep}", "to: {role: api}", "services: [tcp/1]"))
    assert [d.code for d in r.diagnostics] == ["bad-selector"]


def test_a_reference_to_an_ip_list_with_errors_is_an_error_too() -> None:
    lists = LISTS.replace("10.0.0.0/8]", "10.0.0.1/8]")
    text = rule("id: r1", "from: {iplist: internet}", "to: {role: api}", "services: [tcp/1]")
    r = load_policy_texts({"lists.yaml": lists, "p.yaml": text}, convention=CONVENTION)
    assert found(r) == ["lists.yaml:4:37 error bad-cidr", "p.yaml:8:22 error unknown-iplist"]
    assert "left out: it has errors at lists.yaml:1" in r.diagnostics[1].message
    assert r.policy_set.iplists == () and r.policy_set.policies == ()
