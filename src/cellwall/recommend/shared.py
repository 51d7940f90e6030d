"""Shared infrastructure: one rule per shared service, not one per application.

A class edge is *shared* when its server role serves clients of many applications on its
service (DNS, NTP, LDAP, logs: ``serves``), or its client role reaches servers of many
applications (monitoring scrapes, backups, the bastion: ``reaches``). Many means at least
``shared_apps`` applications and at least ``shared_share`` of the applications of the
inventory. Each side that the service is shared with becomes ``{any: true}`` (with
``same: [env]``) when the observed peers are at least ``any_share`` of the classes of their
envs (counting the pairs that stay within one env; those become ``same: [env]``); otherwise,
and for pairs across envs, it stays the observed classes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cellwall.recommend.aggregate import ClassEdge
from cellwall.recommend.classes import Classifier, ClassKey, is_external
from cellwall.recommend.model import RecommendConfig

__all__ = ["WELL_KNOWN", "SharedPlan", "shared_plan"]

WELL_KNOWN = {
    "udp/53": "dns",
    "tcp/53": "dns",
    "udp/123": "ntp",
    "tcp/389": "ldap",
    "tcp/636": "ldap",
    "tcp/88": "kerberos",
    "udp/88": "kerberos",
    "tcp/9100": "monitoring",
    "udp/161": "monitoring",
    "tcp/514": "syslog",
    "udp/514": "syslog",
    "tcp/6514": "syslog",
    "tcp/9102": "backup",
    "tcp/10000": "backup",
    "tcp/22": "ssh",
}


@dataclass(frozen=True, slots=True)
class SharedPlan:
    """Per class edge index: ``serves``/``reaches`` (or absent), and whether its many side
    is ``{any: true}``."""

    role: dict[int, str]
    any_side: dict[int, bool]


def _ident(key: ClassKey) -> object:
    if key[0] == "labels":
        return tuple((k, v) for k, v in key[1] if k != "env")  # type: ignore[attr-defined]
    return key


def _groups(
    edges: Sequence[ClassEdge], c: Classifier
) -> tuple[dict[tuple[object, str], list[int]], dict[tuple[object, str], list[int]]]:
    serves: dict[tuple[object, str], list[int]] = defaultdict(list)
    reaches: dict[tuple[object, str], list[int]] = defaultdict(list)
    for i, e in enumerate(edges):
        if is_external(e.src) or is_external(e.dst):
            continue
        serves[_ident(e.dst), e.service].append(i)
        reaches[_ident(e.src), e.service].append(i)
    return serves, reaches


def _env(c: Classifier, key: ClassKey) -> str | None:
    return c.labels(key).get("env")


def _same_env(edges: Sequence[ClassEdge], members: list[int], c: Classifier) -> list[int]:
    """The members whose two ends carry one env value."""
    out = []
    for i in members:
        env = _env(c, edges[i].src)
        if env is not None and env == _env(c, edges[i].dst):
            out.append(i)
    return out


def _covers(
    edges: Sequence[ClassEdge], members: list[int], many: str, c: Classifier, share: float
) -> bool:
    """True when the ``many`` side (src or dst) of the members is nearly every class of
    their envs (members are within one env each)."""
    fixed = "dst" if many == "src" else "src"
    envs = {_env(c, getattr(edges[i], fixed)) for i in members}
    fixed_keys = {getattr(edges[i], fixed) for i in members}
    candidates = {k for k in c.classes() if _env(c, k) in envs} - fixed_keys
    seen = {getattr(edges[i], many) for i in members} & candidates
    return bool(candidates) and len(seen) >= share * len(candidates)


def shared_plan(
    edges: Sequence[ClassEdge], classifier: Classifier, config: RecommendConfig
) -> SharedPlan:
    apps = {w.labels.get("app") for w in classifier.workloads} - {None}
    need = max(config.shared_apps, math.ceil(config.shared_share * len(apps)))
    serves, reaches = _groups(edges, classifier)
    role: dict[int, str] = {}
    any_side: dict[int, bool] = {}
    for name, groups, many in (("serves", serves, "src"), ("reaches", reaches, "dst")):
        for members in groups.values():
            peers = {classifier.labels(getattr(edges[i], many)).get("app") for i in members}
            members = [i for i in members if i not in role]
            if len(peers - {None}) < need or not members:
                continue
            within = _same_env(edges, members, classifier)
            wide = (
                set(within) if _covers(edges, within, many, classifier, config.any_share) else set()
            )
            for i in members:
                role[i] = name
                any_side[i] = i in wide
    return SharedPlan(role, any_side)
