"""Label conventions: loading, aliases applied at load time, and checking."""

from __future__ import annotations

from pathlib import Path

from cellwall.inventory.conventions import apply_aliases, check_conventions
from cellwall.inventory.loader import load_inventory_file, load_inventory_text
from cellwall.model.inventory import Origin, Workload
from cellwall.model.labels import LabelConvention, Labels

CONVENTION = """\
apiVersion: cellwall/v1
kind: LabelConvention
spec:
  required: [app, role, env]
  values: {env: [prod, staging, dev]}
  aliases: {Environment: env, Application: app}
"""
WORKLOADS = """\
name,addresses,owner,app,role,env,Environment
web-1,10.0.0.1,team,shop,web,prod,
web-2,10.0.0.2,team,shop,web,production,
api-1,10.0.0.3,team,shop,,,staging
"""


def test_convention_document_loads() -> None:
    r = load_inventory_text(CONVENTION, "conv.yaml")
    assert r.workloads == [] and r.diagnostics == []
    assert r.conventions == [
        LabelConvention.of(
            ["app", "role", "env"],
            {"env": ["prod", "staging", "dev"]},
            {"Environment": "env", "Application": "app"},
        )
    ]
    assert r.convention() == r.conventions[0]


def test_check_names_workload_place_key_and_fix(tmp_path: Path) -> None:
    conv = load_inventory_text(CONVENTION, "conv.yaml").conventions[0]
    (tmp_path / "w.csv").write_text(WORKLOADS)
    r = load_inventory_file(tmp_path / "w.csv", convention=conv)
    applied = [d for d in r.diagnostics if d.code == "alias-applied"]
    assert len(applied) == 1
    assert applied[0].line == 4 and applied[0].severity == "info"
    assert "alias `Environment` → `env` applied" in applied[0].message
    api = next(w for w in r.workloads if w.name == "api-1")
    assert api.labels == Labels.of(app="shop", env="staging")

    findings = check_conventions(r.workloads, conv)
    assert [(d.code, d.line, d.severity) for d in findings] == [
        ("convention-value", 3, "error"),
        ("convention-required", 4, "error"),
    ]
    value, required = findings
    assert value.file == str(tmp_path / "w.csv")
    assert "`web-2`" in value.message and "`production`" in value.message
    assert "[dev, prod, staging]" in value.message
    assert value.hint == "did you mean `env: prod`?"
    assert "`api-1`" in required.message and "`role`" in required.message
    assert required.hint == "add `role: VALUE`"


def test_check_without_aliases_applied_reports_the_alias() -> None:
    conv = LabelConvention.of(["env"], {"env": ["prod"]}, {"Environment": "env"})
    w = Workload.of("x", labels={"Environment": "prod"}, source=Origin("a.csv", 7, 1))
    (d,) = check_conventions([w], conv)
    assert (d.code, d.severity, d.file, d.line) == ("convention-alias", "warning", "a.csv", 7)
    assert "rename it to `env: prod`" in d.hint


def test_missing_required_hint_lists_allowed_values() -> None:
    conv = LabelConvention.of(["env"], {"env": ["dev", "prod"]})
    (d,) = check_conventions([Workload.of("x")], conv)
    assert d.hint == "add `env: <dev|prod>`"


def test_alias_conflict_keeps_the_real_key() -> None:
    w = Workload.of("x", labels={"env": "prod", "Environment": "dev"})
    (out,), (d,) = apply_aliases([w], {"Environment": "env"})
    assert out.labels == Labels.of(env="prod")
    assert d.code == "alias-conflict" and d.severity == "warning"


def test_convention_in_the_same_file_applies_to_its_workloads() -> None:
    text = CONVENTION + (
        "---\napiVersion: cellwall/v1\nkind: Workload\nmetadata: {name: a}\n"
        "spec: {labels: {Application: shop, role: web, Environment: dev}}\n"
    )
    r = load_inventory_text(text, "inv.yaml")
    assert r.workloads[0].labels == Labels.of(app="shop", role="web", env="dev")
    assert [d.code for d in r.diagnostics] == ["alias-applied", "alias-applied"]
    assert all(d.line == 8 for d in r.diagnostics)  # the document, after its `---`
    assert check_conventions(r.workloads, r.conventions[0]) == []


def test_bad_convention_documents() -> None:
    text = (
        "apiVersion: cellwall/v1\nkind: LabelConvention\n"
        "spec: {required: app, aliases: {env: env}, values: {env: [a, [b]]}}\n"
    )
    r = load_inventory_text(text, "c.yaml")
    assert r.conventions == []
    assert {d.code for d in r.errors} == {"bad-type", "bad-convention"}
    assert all(d.line == 3 for d in r.errors)
