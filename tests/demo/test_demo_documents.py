from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml

from cellwall.demo.documents import flow, policy_doc


@pytest.mark.parametrize(
    "value",
    [
        "pay-db-1",
        "tcp/443",
        "10.0.0.0/8",
        "::/0",
        "no",
        "on",
        "null",
        "1e3",
        "a: b",
        "x, y",
        "[web]",
        "#tag",
        "it's",
        'say "hi"',
        "",
        "eu-west-1",
        "team-payments",
    ],
)
def test_flow_scalars_read_back_as_the_same_string(value: str) -> None:
    assert yaml.safe_load(flow({"k": value})) == {"k": value}
    assert yaml.safe_load(flow([value, value])) == [value, value]


def test_times_are_written_plain_as_in_the_contract() -> None:
    t = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
    text = flow({"ip": "10.1.9.7", "from": t})
    assert text == "{ip: 10.1.9.7, from: 2026-11-01T00:00:00Z}"
    assert yaml.safe_load(text)["from"] == t


def test_policy_document_reads_back() -> None:
    rules = [
        {
            "id": "r1",
            "from": {"app": ["a", "b"], "env": "prod"},
            "to": {"iplist": "x"},
            "services": ["tcp/443", "udp/53"],
            "justification": "why: because",
        }
    ]
    doc = yaml.safe_load(policy_doc("truth-app", "security", rules))
    assert doc["kind"] == "Policy" and doc["metadata"] == {"name": "truth-app", "owner": "security"}
    assert doc["spec"]["rules"] == rules
