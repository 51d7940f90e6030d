"""Inventory: load workloads and label conventions, store snapshots, resolve identities.

The entry points that the CLI and the API call:

- :func:`load_inventory_files` / :func:`load_inventory_file` / :func:`load_inventory_text`
  read cellwall YAML/CSV, Kubernetes manifests and AWS ``describe-instances`` JSON into a
  :class:`LoadResult` (workloads, conventions, diagnostics);
- :func:`check_conventions` checks workloads against a label convention;
- :class:`InventoryStore` keeps snapshots per source and the merged current inventory;
- :class:`Resolver` maps (address, time) columns to owning workloads, classes and labels.

docs/inventory.md describes the formats and rules.
"""

from __future__ import annotations

from cellwall.inventory.classify import INTERNET, UNMANAGED_PRIVATE, IPClassifier
from cellwall.inventory.conventions import K8S_ALIASES, apply_aliases, check_conventions
from cellwall.inventory.identity import Resolver, build_segments, lease_conflicts
from cellwall.inventory.loader import (
    LoadResult,
    detect_format,
    load_inventory_file,
    load_inventory_files,
    load_inventory_text,
)
from cellwall.inventory.store import InventoryStore, SnapshotInfo

__all__ = [
    "INTERNET",
    "K8S_ALIASES",
    "UNMANAGED_PRIVATE",
    "IPClassifier",
    "InventoryStore",
    "LoadResult",
    "Resolver",
    "SnapshotInfo",
    "apply_aliases",
    "build_segments",
    "check_conventions",
    "detect_format",
    "lease_conflicts",
    "load_inventory_file",
    "load_inventory_files",
    "load_inventory_text",
]
