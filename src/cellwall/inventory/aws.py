"""AWS ``aws ec2 describe-instances`` JSON as workloads of kind ``instance``.

- Name: the ``Name`` tag, else the ``InstanceId``. Instances of one file that share a
  ``Name`` (an auto-scaling group) are named ``NAME/INSTANCE-ID``.
- Owner: the ``Owner`` tag (any case).
- Labels: the other tags, renamed through the convention's aliases (``Environment`` → ``env``)
  when the loader applies them. Tags under the reserved ``aws:`` prefix are left out; a tag
  whose key or value cannot be a label is left out with a warning.
- Addresses: every private IPv4 address and IPv6 address of every network interface, owned
  from the interface's ``Attachment.AttachTime``; public IPv4 addresses that AWS assigned
  (``IpOwnerId: amazon``) are owned from the instance's ``LaunchTime``, since they change at
  each start; Elastic IPs from the attach time. Without interfaces, ``PrivateIpAddress`` and
  ``PublicIpAddress`` are used. A ``terminated`` or ``shutting-down`` instance owns nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime

from cellwall.errors import Diagnostic
from cellwall.inventory.nodes import N, ShapeError, diag
from cellwall.inventory.yaml_csv import node_time
from cellwall.model.inventory import AddressLease, Origin, Workload, check_workload_name
from cellwall.model.labels import Labels, check_label_key, check_label_value

__all__ = ["is_aws_doc", "load_aws_doc"]

_GONE = ("terminated", "shutting-down")


def is_aws_doc(doc: N) -> bool:
    return isinstance(doc.value, dict) and "Reservations" in doc.value


def load_aws_doc(doc: N, file: str) -> tuple[list[Workload], list[Diagnostic]]:
    """The instances of one describe-instances document; a bad instance does not stop the rest."""
    diags: list[Diagnostic] = []
    named: list[tuple[Workload, str]] = []
    try:
        reservations = doc.map("the document")["Reservations"].seq("Reservations")
    except ShapeError as exc:
        return [], [exc.diagnostic(file, doc)]
    for reservation in reservations:
        instances = reservation.get("Instances")
        try:
            items = instances.seq("Instances") if instances is not None else []
        except ShapeError as exc:
            diags.append(exc.diagnostic(file, reservation))
            continue
        for inst in items:
            try:
                named.append(_instance(inst, file, diags))
            except ShapeError as exc:
                diags.append(exc.diagnostic(file, inst))
            except ValueError as exc:
                hint = "fix the instance, or leave it out of the file"
                diags.append(diag(file, inst, "aws-instance", str(exc), hint))
    counts = Counter(w.name for w, _ in named)
    out = [replace(w, name=f"{w.name}/{iid}") if counts[w.name] > 1 else w for w, iid in named]
    return out, diags


def _tags(inst: N) -> dict[str, tuple[str, N]]:
    tags: dict[str, tuple[str, N]] = {}
    node = inst.get("Tags")
    for tag in node.seq("Tags") if node is not None and node.value is not None else []:
        key, value = tag.get("Key"), tag.get("Value")
        if key is None:
            raise ShapeError(tag, "missing-field", "a tag needs `Key`")
        text = (value.opt_text("Value") if value is not None else None) or ""
        tags[key.text("Key")] = (text.strip(), tag)
    return tags


def _instance(inst: N, file: str, diags: list[Diagnostic]) -> tuple[Workload, str]:
    inst.map("an instance")
    id_node = inst.get("InstanceId")
    if id_node is None:
        raise ShapeError(inst, "missing-field", "an instance needs `InstanceId`")
    instance_id = id_node.text("InstanceId")
    tags = _tags(inst)
    name = tags.pop("Name", ("", inst))[0] or instance_id
    owner = None
    labels: dict[str, str] = {}
    for key, (value, node) in sorted(tags.items()):
        if key.lower() == "owner" and owner is None:
            owner = check_workload_name(value) if value else None
        elif value and not key.startswith("aws:"):
            try:
                labels[check_label_key(key)] = check_label_value(key, value)
            except ValueError as exc:
                hint = "rename the tag, or map it with an alias in the LabelConvention"
                diags.append(diag(file, node, "aws-tag", f"{exc}; tag left out", hint, "warning"))
    state = inst.at("State", "Name")
    if state is not None and state.value in _GONE:
        msg = f"instance `{name}` ({instance_id}) is {state.value}; it owns no address"
        diags.append(diag(file, inst, "aws-no-address", msg, "", "info"))
        leases: list[AddressLease] = []
    else:
        leases = _leases(inst)
    origin = Origin(file, inst.line, inst.col)
    w = Workload(
        check_workload_name(name), owner, Labels.of(labels), tuple(leases), origin, "instance"
    )
    return w, instance_id


def _leases(inst: N) -> list[AddressLease]:
    launch = node_time(inst.get("LaunchTime"))
    starts: dict[str, datetime | None] = {}

    def add(node: N | None, start: datetime | None) -> None:
        ip = node.opt_text("an address") if node is not None else None
        if ip is None:
            return
        if ip in starts:
            prev = starts[ip]
            start = None if prev is None or start is None else min(prev, start)
        starts[ip] = start

    enis = inst.get("NetworkInterfaces")
    for eni in enis.seq("NetworkInterfaces") if enis is not None and enis.value is not None else []:
        attached = node_time(eni.at("Attachment", "AttachTime"))
        private = eni.get("PrivateIpAddresses")
        for p in private.seq("PrivateIpAddresses") if private is not None else []:
            add(p.get("PrivateIpAddress"), attached)
            add(p.at("Association", "PublicIp"), _public_start(p, launch, attached))
        add(eni.get("PrivateIpAddress"), attached)
        add(eni.at("Association", "PublicIp"), _public_start(eni, launch, attached))
        v6 = eni.get("Ipv6Addresses")
        for a in v6.seq("Ipv6Addresses") if v6 is not None else []:
            add(a.get("Ipv6Address"), attached)
    if not starts:
        add(inst.get("PrivateIpAddress"), None)
        add(inst.get("Ipv6Address"), None)
    add(inst.get("PublicIpAddress"), launch)
    return [AddressLease(ip, start) for ip, start in starts.items()]


def _public_start(holder: N, launch: datetime | None, attached: datetime | None) -> datetime | None:
    owner = holder.at("Association", "IpOwnerId")
    return launch if owner is not None and owner.value == "amazon" else attached
