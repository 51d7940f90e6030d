"""Fuzzing the policy loader: whatever the text, it returns diagnostics with a place."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cellwall.model.inventory import Workload
from cellwall.model.labels import LabelConvention
from cellwall.policy.loader import LoadResult, load_policy_texts

CONVENTION = LabelConvention.of(["app", "env"], {"env": ["prod", "dev"]})
WORKLOADS = [Workload.of("w", labels={"app": "a", "env": "prod", "role": "web"})]


def check(r: LoadResult) -> None:
    for d in r.diagnostics:
        assert d.file in ("f.yaml", "<policy>"), d
        assert d.code and d.message and d.severity in ("error", "warning"), d
        if d.severity == "error" and d.code != "empty":
            assert d.line is not None and d.line >= 1, d
    ids = [rule.id for _, rule in r.policy_set.rules()]
    assert len(ids) == len(set(ids))
    assert all(rule.services for _, rule in r.policy_set.rules())
    names = {i.name for i in r.policy_set.iplists}
    for _, rule in r.policy_set.rules():
        for sel in (rule.from_, rule.to):
            assert sel.iplist is None or sel.iplist in names
            assert not (sel.workload_terms and sel.address_terms)


def run(text: str) -> None:
    for kw in ({}, {"convention": CONVENTION, "workloads": WORKLOADS}):
        check(load_policy_texts({"f.yaml": text}, **kw))  # type: ignore[arg-type]


alphabet = st.sampled_from(
    list("apiVersion:cellwall/v1kindPolicyIPListspecrulesfromtoservices{}[],-&*!|>#'\"\n \t?%@")
)
header = "apiVersion: cellwall/v1\nkind: Policy\nmetadata: {name: p}\nspec:\n  rules:\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.text(alphabet, max_size=200),
        st.text(alphabet, max_size=200).map(header.__add__),
        st.text(max_size=100),
    )
)
def test_random_text_never_crashes(text: str) -> None:
    run(text)


KEYS = [
    "apiVersion", "kind", "metadata", "spec", "name", "owner", "rules", "scope", "mode", "id",
    "from", "to", "services", "action", "same", "from_outside_scope", "review_by", "not", "any",
    "iplist", "cidrs", "except", "fqdn", "workload", "app", "env", "role", "service", "http",
    "methods", "paths", "process", "role", "subjects", "apps", "default_mode", "management",
    "admin_networks", "controllers", "forbid", "only", "require", "forbid_path", "max_hops",
    "fqdns",
]  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.sampled_from(
        ["cellwall/v1", "Policy", "IPList", "Invariant", "RoleBinding", "PolicySettings", "p",
         "tcp/443", "udp/1-2", "icmp/8/0", "any", "proto/47", "tcp/99999", "10.0.0.0/8",
         "10.0.0.1/8", "::/0", "internet", "prod", "dev", "web", "full", "admin", "app-owner",
         "2027-01-01", "*.example.com", "(", "GET", "allow", "override-deny", "true", ""]
    ),
)  # fmt: skip
values = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)
    ),
    max_leaves=25,
)
documents = st.fixed_dictionaries(
    {
        "apiVersion": st.just("cellwall/v1"),
        "kind": st.sampled_from(["Policy", "IPList", "Invariant", "RoleBinding", "PolicySettings"]),
        "metadata": st.one_of(values, st.fixed_dictionaries({"name": st.sampled_from(["a", "b"])})),
        "spec": values,
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents, min_size=1, max_size=4))
def test_documents_of_any_shape_never_crash(docs: list[dict[str, Any]]) -> None:
    run(yaml.safe_dump_all(docs, default_flow_style=True))


SEL_KEYS = ["app", "env", "role", "not", "any", "iplist", "cidrs", "except", "fqdn", "workload"]
selectors = st.recursive(
    st.dictionaries(st.sampled_from(SEL_KEYS), SCALARS, max_size=3),
    lambda inner: st.dictionaries(st.sampled_from(SEL_KEYS), st.one_of(SCALARS, inner), max_size=3),
    max_leaves=6,
)
GOOD_SELECTORS = st.sampled_from(
    [{"role": "web"}, {"env": ["prod", "dev"]}, {"any": True}, {"iplist": "internet"},
     {"not": {"app": "a"}}, {"cidrs": ["10.0.0.0/8"], "except": ["10.1.0.0/16"]},
     {"workload": "w"}, {"fqdn": "*.example.com"}, {"app": "b"}]
)  # fmt: skip
GOOD_SERVICES = st.sampled_from(["tcp/443", "udp/53", "any", "icmp/8", "proto/47", "tcp/1-2"])
rules = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["r1", "r2", "r3", "r 4"]),
        "from": st.one_of(GOOD_SELECTORS, GOOD_SELECTORS, selectors),
        "to": st.one_of(GOOD_SELECTORS, GOOD_SELECTORS, selectors),
        "services": st.one_of(
            st.lists(GOOD_SERVICES, min_size=1, max_size=3), st.lists(SCALARS, max_size=2)
        ),
    },
    optional={
        "same": st.lists(st.sampled_from(["env", "app", "x"]), max_size=2),
        "from_outside_scope": st.booleans(),
        "action": st.sampled_from(["allow", "deny", "override-deny", "nope"]),
    },
)
policies = st.fixed_dictionaries(
    {
        "apiVersion": st.just("cellwall/v1"),
        "kind": st.just("Policy"),
        "metadata": st.fixed_dictionaries({"name": st.sampled_from(["a", "b"])}),
        "spec": st.fixed_dictionaries(
            {"rules": st.lists(rules, max_size=4)},
            optional={
                "scope": st.one_of(st.just({"app": "a"}), selectors),
                "mode": st.sampled_from(["full", "x"]),
            },
        ),
    }
)
LIST = {"apiVersion": "cellwall/v1", "kind": "IPList", "metadata": {"name": "internet"}}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(policies, min_size=1, max_size=3))
def test_policies_of_any_content_never_crash(docs: list[dict[str, Any]]) -> None:
    text = yaml.safe_dump_all([{**LIST, "spec": {"cidrs": ["0.0.0.0/0"]}}, *docs])
    run(text)
    # Whatever loads, loads the same from its own texts (the store reads versions this way).
    r = load_policy_texts({"f.yaml": text})
    again = load_policy_texts(r.texts)
    assert again.policy_set == r.policy_set and again.diagnostics == r.diagnostics


good_rules = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["r1", "r2", "r3", "r4", "r5"]),
        "from": GOOD_SELECTORS,
        "to": GOOD_SELECTORS,
        "services": st.lists(GOOD_SERVICES, min_size=1, max_size=3),
    },
    optional={"action": st.sampled_from(["allow", "deny", "override-deny"])},
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(good_rules, max_size=5, unique_by=lambda r: r["id"]))
def test_well_formed_rules_load_as_written(written: list[dict[str, Any]]) -> None:
    doc = {
        "apiVersion": "cellwall/v1",
        "kind": "Policy",
        "metadata": {"name": "p", "owner": "o"},
        "spec": {"rules": written},
    }
    text = yaml.safe_dump_all([{**LIST, "spec": {"cidrs": ["0.0.0.0/0"]}}, doc])
    r = load_policy_texts({"f.yaml": text})
    check(r)
    assert r.diagnostics == []
    loaded = [rule for _, rule in r.policy_set.rules()]
    assert [x.id for x in loaded] == [w["id"] for w in written]
    assert [x.action for x in loaded] == [w.get("action", "allow") for w in written]
    assert [len(x.services) for x in loaded] == [len(w["services"]) for w in written]
