from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from cellwall.recommend import RecommendConfig, propose
from cellwall.services.inventory import load_inventory
from cellwall.services.review import import_review, submit_proposal
from cellwall.workspace import Workspace
from tests.recommend.test_propose import base_edges, estate, table

TODAY = date(2026, 12, 1)
BINDINGS = """\
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {name: admins}
spec: {role: admin, subjects: [root]}
---
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {name: architects}
spec: {role: security-architect, subjects: [sam]}
---
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {name: shop-owners}
spec: {role: app-owner, subjects: [olga], apps: [shop]}
---
apiVersion: cellwall/v1
kind: RoleBinding
metadata: {name: auditors}
spec: {role: auditor, subjects: [ada]}
"""


def inventory_yaml() -> str:
    docs = []
    for w in estate():
        labels = ", ".join(f"{k}: {v}" for k, v in w.labels.items())
        owner = f", owner: {w.owner}" if w.owner else ""
        docs.append(
            f"apiVersion: cellwall/v1\nkind: Workload\nmetadata: {{name: {w.name}{owner}}}\n"
            f"spec:\n  addresses: [{w.addresses[0].ip}]\n  labels: {{{labels}}}\n"
        )
    return "---\n".join(docs)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A workspace with the inventory, the role bindings and a submitted proposal."""
    ws = Workspace.resolve(tmp_path / "home")
    (tmp_path / "inventory.yaml").write_text(inventory_yaml())
    load_inventory(ws, [tmp_path / "inventory.yaml"], source="test")
    folder = tmp_path / "bindings"
    folder.mkdir()
    (folder / "bindings.yaml").write_text(BINDINGS)
    import_review(ws, folder, actor="root")
    proposal = propose(table(base_edges()), estate(), RecommendConfig(window_days=30))
    submit_proposal(ws, proposal, actor="sam", today=TODAY)
    return ws
