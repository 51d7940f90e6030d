"""Never lock out the management channel: checks a ruleset before the agent applies it.

The candidate ruleset is loaded into a throwaway network namespace (so the kernel itself
parses it, and nothing on the host changes) and listed back as ``nft -j`` JSON. Then, for
every base chain on the ``input`` and ``output`` hooks that can drop (a ``drop`` policy, or
a rule that drops, rejects, jumps or uses a verdict map):

- ``input`` needs a ``management:admin`` accept rule (by its comment, or its named counter
  ``mgmt_admin`` as the nftables compiler writes it) before the first rule
  that can drop, covering every admin network and management service;
- ``output`` needs a ``management:control`` accept rule the same way, covering every
  controller and control service.

The management tier comes from the bundle's signed manifest (``management``: the
``PolicySettings`` of the compiled policy). An empty tier asks for nothing.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cellwall.enforce import netns
from cellwall.enforce.nft import Nft, NftError
from cellwall.model.policy import parse_service
from cellwall.targets.nftables import counter_name

__all__ = ["checked_listing", "management_problems", "scratch_listing"]

_DROPPING = frozenset({"drop", "reject", "jump", "goto", "vmap", "queue"})
_counter = itertools.count()


def scratch_listing(ruleset: str) -> dict[str, Any]:
    """Load ``ruleset`` into a new, empty namespace and list it back (NftError if refused)."""
    name = f"cwchk-{os.getpid()}-{next(_counter)}"
    netns.add(name)
    try:
        nft = Nft(name)
        nft.replace_table(ruleset)
        listing = nft.table_json()
        if listing is None:
            raise NftError("the ruleset does not define table inet cellwall")
        return listing
    finally:
        netns.delete(name)


def _items(listing: Mapping[str, Any], kind: str) -> Iterator[dict[str, Any]]:
    for entry in listing.get("nftables", []):
        if kind in entry:
            yield entry[kind]


def _scalars(node: Any, sets: Mapping[str, Any]) -> Iterator[Any]:
    """Every literal a rule compares against, with named sets opened up."""
    if isinstance(node, str) and node.startswith("@"):
        yield from _scalars(sets.get(node[1:], []), sets)
    elif isinstance(node, dict):
        if "prefix" in node and isinstance(node["prefix"], dict):
            yield f"{node['prefix']['addr']}/{node['prefix']['len']}"
        elif "range" in node and isinstance(node["range"], list):
            yield tuple(node["range"])
        else:
            for v in node.values():
                yield from _scalars(v, sets)
    elif isinstance(node, list):
        for v in node:
            yield from _scalars(v, sets)
    else:
        yield node


def _covers_address(values: Sequence[Any], wanted: str) -> bool:
    net = ipaddress.ip_network(wanted, strict=False)
    for v in values:
        if isinstance(v, str):
            try:
                have = ipaddress.ip_network(v, strict=False)
            except ValueError:
                continue
            if have.version == net.version and net.subnet_of(have):  # type: ignore[arg-type]
                return True
    return False


def _covers_port(values: Sequence[Any], lo: int, hi: int) -> bool:
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and lo == hi == v:
            return True
        if isinstance(v, tuple) and len(v) == 2 and v[0] <= lo and hi <= v[1]:
            return True
    return False


def _missing(
    rules: Sequence[dict[str, Any]],
    addrs: Sequence[str],
    services: Sequence[str],
    sets: Mapping[str, Any],
) -> list[str]:
    values = [s for r in rules for s in _scalars(r.get("expr", []), sets)]
    gaps = [a for a in addrs if not _covers_address(values, a)]
    for text in services:
        svc = parse_service(text)
        if svc.lo is not None and svc.hi is not None and not _covers_port(values, svc.lo, svc.hi):
            gaps.append(text)
    return gaps


def _can_drop(rule: Mapping[str, Any]) -> bool:
    return any(k in _DROPPING for e in rule.get("expr", []) for k in e)


def _is_accept(rule: Mapping[str, Any]) -> bool:
    return any("accept" in e for e in rule.get("expr", []))


def _tagged(rule: Mapping[str, Any], tag: str) -> bool:
    if str(rule.get("comment", "")).startswith(tag):
        return True
    return any(e.get("counter") == counter_name(tag) for e in rule.get("expr", []))


def _chain_problems(
    chain: Mapping[str, Any],
    rules: Sequence[dict[str, Any]],
    tag: str,
    addrs: Sequence[str],
    services: Sequence[str],
    sets: Mapping[str, Any],
) -> list[str]:
    where = f"chain {chain['name']} (hook {chain['hook']})"
    first_drop = next((i for i, r in enumerate(rules) if _can_drop(r)), len(rules))
    if chain.get("policy") != "drop" and first_drop == len(rules):
        return []
    ahead = [r for r in rules[:first_drop] if _tagged(r, tag) and _is_accept(r)]
    if not ahead:
        return [f"{where}: no {tag} accept rule before the first rule that can drop"]
    gaps = _missing(ahead, addrs, services, sets)
    return [f"{where}: the {tag} rules do not cover {', '.join(gaps)}"] if gaps else []


def management_problems(listing: Mapping[str, Any], management: Mapping[str, Any]) -> list[str]:
    """What in ``listing`` (an ``nft -j`` table) could lock out the management tier."""
    sets = {s["name"]: s.get("elem", []) for s in _items(listing, "set")}
    sets.update({m["name"]: m.get("elem", []) for m in _items(listing, "map")})
    needs = {
        "input": (
            "management:admin",
            management.get("admin_networks", []),
            management.get("services", []),
        ),
        "output": (
            "management:control",
            management.get("controllers", []),
            management.get("control_services", []),
        ),
    }
    problems: list[str] = []
    all_rules = list(_items(listing, "rule"))
    for chain in _items(listing, "chain"):
        need = needs.get(str(chain.get("hook")))
        if need is None or not (need[1] and need[2]):
            continue
        rules = [r for r in all_rules if r.get("chain") == chain["name"]]
        problems += _chain_problems(chain, rules, need[0], need[1], need[2], sets)
    return problems


def checked_listing(ruleset: str, management: Mapping[str, Any]) -> dict[str, Any]:
    """The kernel's listing of ``ruleset``; NftError when it is refused or unsafe."""
    listing = scratch_listing(ruleset)
    problems = management_problems(listing, management)
    if problems:
        raise NftError(
            "the ruleset would lock out the management channel: " + "; ".join(problems),
            hint="compile the policy with its management tier (PolicySettings.management)",
        )
    return listing
