"""A small estate for the lab and the agent: six workloads in four classes, and a policy
that uses port ranges, UDP, ICMP, a deny rule, two modes and the management tier."""

from __future__ import annotations

from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.loader import load_policy_texts

POLICY = """
apiVersion: cellwall/v1
kind: PolicySettings
metadata: {name: settings}
spec:
  default_mode: full
  management:
    admin_networks: [10.99.0.0/24]
    services: [tcp/22]
    controllers: [10.99.0.10]
    control_services: [tcp/7443]
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: shop}
spec:
  scope: {app: shop}
  mode: full
  rules:
    - id: web-to-api
      from: {role: web}
      to: {role: api}
      services: [tcp/8443, tcp/9000-9002]
    - id: api-to-db
      from: {role: api}
      to: {role: db}
      services: [tcp/5432, udp/5353]
    - id: web-peers
      from: {role: web}
      to: {role: web}
      services: [tcp/8080]
    - id: ping-db
      from: {role: api}
      to: {role: db}
      services: [icmp/8, icmpv6/128]
    - id: no-web-to-db
      action: override-deny
      from: {role: web}
      to: {role: db}
      services: [tcp/5432]
---
apiVersion: cellwall/v1
kind: Policy
metadata: {name: tools}
spec:
  scope: {app: tools}
  mode: selective
  rules:
    - id: tools-no-telnet
      action: deny
      from: {role: batch}
      to: {any: true}
      services: [tcp/23]
    - id: batch-reads-api
      from: {app: tools, role: batch}
      to: {any: true}
      services: [udp/5353]
"""

WORKLOADS = [
    Workload.of("web-1", labels={"app": "shop", "role": "web"}, addresses=["10.20.0.11"]),
    Workload.of("web-2", labels={"app": "shop", "role": "web"}, addresses=["10.20.0.12"]),
    Workload.of(
        "api-1", labels={"app": "shop", "role": "api"}, addresses=["10.20.1.11", "fd20::111"]
    ),
    Workload.of("db-1", labels={"app": "shop", "role": "db"}, addresses=["10.20.2.11"]),
    Workload.of("batch-1", labels={"app": "tools", "role": "batch"}, addresses=["10.30.0.5"]),
    Workload.of("batch-2", labels={"app": "tools", "role": "batch"}, addresses=["10.30.0.6"]),
]


def policy() -> PolicySet:
    result = load_policy_texts({"estate.yaml": POLICY}, workloads=WORKLOADS)
    assert result.ok, result.errors
    return result.policy_set
