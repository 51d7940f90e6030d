"""AWS `aws ec2 describe-instances` output as workloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cellwall.inventory.conventions import check_conventions
from cellwall.inventory.loader import load_inventory_file, load_inventory_text
from cellwall.model.inventory import AddressLease
from cellwall.model.labels import LabelConvention, Labels

LAUNCH = "2026-11-01T08:00:00+00:00"
ATTACH = "2026-03-01T12:00:00+00:00"


def instance(iid: str, private: str, tags: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    """One instance as describe-instances prints it (the fields cellwall reads, and others)."""
    out: dict[str, Any] = {
        "AmiLaunchIndex": 0,
        "ImageId": "ami-0abcdef1234567890",
        "InstanceId": iid,
        "InstanceType": "t3.micro",
        "LaunchTime": LAUNCH,
        "Monitoring": {"State": "disabled"},
        "Placement": {"AvailabilityZone": "eu-west-1a", "GroupName": "", "Tenancy": "default"},
        "PrivateDnsName": f"ip-{private.replace('.', '-')}.eu-west-1.compute.internal",
        "PrivateIpAddress": private,
        "ProductCodes": [],
        "PublicDnsName": "",
        "State": {"Code": 16, "Name": "running"},
        "SubnetId": "subnet-04a636d18e83cfacb",
        "VpcId": "vpc-1234567890abcdef0",
        "Architecture": "x86_64",
        "NetworkInterfaces": [
            {
                "Attachment": {
                    "AttachTime": ATTACH,
                    "AttachmentId": "eni-attach-0e325c07e928a0405",
                    "DeleteOnTermination": True,
                    "DeviceIndex": 0,
                    "Status": "attached",
                },
                "Description": "",
                "Groups": [{"GroupName": "web", "GroupId": "sg-0598c7d356eba48d7"}],
                "Ipv6Addresses": [],
                "MacAddress": "0a:58:2d:e8:6b:11",
                "NetworkInterfaceId": "eni-0d1a2b3c4d5e6f708",
                "OwnerId": "123456789012",
                "PrivateDnsName": "ip-10-0-1-10.eu-west-1.compute.internal",
                "PrivateIpAddress": private,
                "PrivateIpAddresses": [
                    {"Primary": True, "PrivateDnsName": "", "PrivateIpAddress": private}
                ],
                "SourceDestCheck": True,
                "Status": "in-use",
                "SubnetId": "subnet-04a636d18e83cfacb",
                "VpcId": "vpc-1234567890abcdef0",
                "InterfaceType": "interface",
            }
        ],
        "Tags": tags,
    }
    out.update(extra)
    return out


def describe() -> dict[str, Any]:
    web = instance(
        "i-0a1b2c3d4e5f60001",
        "10.0.1.10",
        [
            {"Key": "Name", "Value": "web-1"},
            {"Key": "Owner", "Value": "team-shop"},
            {"Key": "Environment", "Value": "prod"},
            {"Key": "app", "Value": "shop"},
            {"Key": "role", "Value": "web"},
            {"Key": "aws:cloudformation:stack-name", "Value": "shop"},
            {"Key": "Cost Center", "Value": "42"},
        ],
        PublicIpAddress="34.253.223.13",
        PublicDnsName="ec2-34-253-223-13.eu-west-1.compute.amazonaws.com",
    )
    eni = web["NetworkInterfaces"][0]
    eni["Association"] = {"IpOwnerId": "amazon", "PublicDnsName": "", "PublicIp": "34.253.223.13"}
    eni["PrivateIpAddresses"][0]["Association"] = dict(eni["Association"])
    eni["PrivateIpAddresses"].append({"Primary": False, "PrivateIpAddress": "10.0.1.11"})
    eni["Ipv6Addresses"] = [{"Ipv6Address": "2a05:d018:0abc::10"}]
    asg = [
        instance(f"i-0a1b2c3d4e5f6000{n}", f"10.0.2.{n}", [{"Key": "Name", "Value": "worker"}])
        for n in (2, 3)
    ]
    gone = instance("i-0a1b2c3d4e5f60004", "10.0.3.4", [], State={"Code": 48, "Name": "terminated"})
    bare = instance("i-0a1b2c3d4e5f60005", "10.0.3.5", [])
    del bare["NetworkInterfaces"]
    bad = instance("i-0a1b2c3d4e5f60006", "10.0.3.300", [])
    return {
        "Reservations": [
            {"Groups": [], "Instances": [web], "OwnerId": "123456789012", "ReservationId": "r-1"},
            {
                "Groups": [],
                "Instances": [*asg, gone, bare, bad],
                "OwnerId": "123456789012",
                "ReservationId": "r-2",
            },
        ]
    }


def test_instances_become_workloads(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(describe(), indent=4))
    conv = LabelConvention.of(["app", "env"], {"env": ["prod", "dev"]}, {"Environment": "env"})
    r = load_inventory_file(path, convention=conv)
    by = {w.name: w for w in r.workloads}
    assert sorted(by) == [
        "i-0a1b2c3d4e5f60004",
        "i-0a1b2c3d4e5f60005",
        "web-1",
        "worker/i-0a1b2c3d4e5f60002",
        "worker/i-0a1b2c3d4e5f60003",
    ]
    web = by["web-1"]
    assert (web.kind, web.owner) == ("instance", "team-shop")
    assert web.labels == Labels.of(app="shop", role="web", env="prod")
    launch = datetime(2026, 11, 1, 8, tzinfo=UTC)
    attach = datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert web.addresses == (
        AddressLease("10.0.1.10", attach),
        AddressLease("10.0.1.11", attach),
        AddressLease("2a05:d018:abc::10", attach),
        AddressLease("34.253.223.13", launch),
    )
    assert by["i-0a1b2c3d4e5f60004"].addresses == ()
    assert by["i-0a1b2c3d4e5f60005"].addresses == (AddressLease("10.0.3.5"),)
    assert web.source.line is not None and web.source.line > 1

    errors = r.errors
    assert len(errors) == 1 and errors[0].code == "aws-instance"
    assert "10.0.3.300" in errors[0].message and errors[0].line is not None
    text = path.read_text().splitlines()
    assert "{" in text[errors[0].line - 1]  # the instance's opening brace
    codes = {d.code for d in r.diagnostics}
    assert {"aws-tag", "aws-no-address", "alias-applied"} <= codes
    tag = next(d for d in r.diagnostics if d.code == "aws-tag")
    assert "Cost Center" in tag.message and tag.severity == "warning"

    findings = check_conventions(r.workloads, conv)
    assert {d.message.split("`")[1] for d in findings} == {
        "i-0a1b2c3d4e5f60004",
        "i-0a1b2c3d4e5f60005",
        "worker/i-0a1b2c3d4e5f60002",
        "worker/i-0a1b2c3d4e5f60003",
    }


def test_without_convention_tags_keep_their_keys() -> None:
    r = load_inventory_text(json.dumps(describe()), "i.json")
    assert r.workloads[0].labels["Environment"] == "prod"
    assert "env" not in r.workloads[0].labels


def test_tabs_in_json_are_whitespace() -> None:
    text = json.dumps(describe(), indent="\t")
    r = load_inventory_text(text, "i.json")
    assert len(r.workloads) == 5
    assert all(w.source.line is not None for w in r.workloads)


def test_malformed_reservations() -> None:
    r = load_inventory_text(
        '{"Reservations": [{"Instances": {"x": 1}}, {"Instances": [{}]}]}', "i.json"
    )
    assert r.workloads == []
    assert [d.code for d in r.errors] == ["bad-type", "missing-field"]
    assert all(d.line == 1 for d in r.errors)
