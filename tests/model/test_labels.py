"""Labels and label conventions: canonical values, validation, merging."""

from __future__ import annotations

import pytest

from cellwall.model.labels import STANDARD_KEYS, LabelConvention, Labels


def test_labels_are_canonical_whatever_the_order() -> None:
    a = Labels.of({"env": "prod", "app": "payments"})
    b = Labels.of([("app", "payments")], env="prod")
    assert a == b
    assert hash(a) == hash(b)
    assert list(a) == ["app", "env"]
    assert str(a) == "app=payments,env=prod"
    assert a != Labels.of(app="payments", env="dev")


def test_labels_behave_as_a_read_only_mapping() -> None:
    lbl = Labels.of(app="web", data="pci")
    assert lbl["data"] == "pci"
    assert "app" in lbl and "role" not in lbl
    assert lbl.get("role") is None
    assert len(lbl) == 2
    assert lbl.as_dict() == {"app": "web", "data": "pci"}
    with pytest.raises(KeyError):
        lbl["role"]
    with pytest.raises(AttributeError):
        lbl.pairs = ()  # type: ignore[misc]


def test_with_and_merged_under() -> None:
    lbl = Labels.of(app="web", env="prod")
    assert lbl.with_(env=None, role="api") == Labels.of(app="web", role="api")
    merged = lbl.merged_under({"env": "dev", "team": "x"})
    assert merged == Labels.of(app="web", env="prod", team="x")


@pytest.mark.parametrize("key", ["", "-x", "x-", "has space", "a=b", "x" * 300])
def test_invalid_keys_are_refused(key: str) -> None:
    with pytest.raises(ValueError, match="invalid label key"):
        Labels.of({key: "v"})


@pytest.mark.parametrize("value", ["", " padded", "tab\there", "x" * 257])
def test_invalid_values_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="label 'app'"):
        Labels.of(app=value)


def test_kubernetes_and_aws_keys_are_valid() -> None:
    lbl = Labels.of({"app.kubernetes.io/name": "x", "aws:cloudformation:stack-name": "s"})
    assert len(lbl) == 2


def test_a_key_given_twice_with_two_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="given twice"):
        Labels.of([("app", "a"), ("app", "b")])
    assert Labels.of([("app", "a"), ("app", "a")]) == Labels.of(app="a")


def test_unsorted_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        Labels((("env", "x"), ("app", "y")))


def test_standard_keys() -> None:
    assert STANDARD_KEYS == ("app", "role", "env", "loc")


def test_convention_is_canonical_and_answers_questions() -> None:
    a = LabelConvention.of(["role", "app"], {"env": ["staging", "prod"]}, {"Environment": "env"})
    b = LabelConvention.of(
        ["app", "role", "app"], {"env": ["prod", "staging"]}, {"Environment": "env"}
    )
    assert a == b
    assert a.allowed("env") == ("prod", "staging")
    assert a.allowed("app") is None
    assert a.alias_map() == {"Environment": "env"}


def test_convention_refuses_alias_chains_and_self_aliases() -> None:
    with pytest.raises(ValueError, match="points to itself"):
        LabelConvention.of(aliases={"env": "env"})
    with pytest.raises(ValueError, match="target of another alias"):
        LabelConvention.of(aliases={"Env": "Environment", "Environment": "env"})


def test_convention_merge_unites_and_later_wins() -> None:
    a = LabelConvention.of(["app"], {"env": ["prod"]}, {"Environment": "env"})
    b = LabelConvention.of(["env"], {"env": ["dev"], "loc": ["eu"]}, {"Application": "app"})
    m = a.merge(b)
    assert m.required == ("app", "env")
    assert m.allowed("env") == ("dev",)
    assert m.allowed("loc") == ("eu",)
    assert m.alias_map() == {"Application": "app", "Environment": "env"}
