"""The host targets the lab can prove: compile each host's files, and load them in a namespace.

A :class:`LabTarget` wraps a per-host compiler of :mod:`cellwall.targets` with the way its
files are loaded into a network namespace:

- ``nftables``: ``HOST.nft`` replaces the ``inet cellwall`` table (``nft -f``);
- ``iptables``: ``HOST.ipset`` (``ipset restore``), then ``HOST.iptables`` and
  ``HOST.ip6tables`` (``iptables-restore`` / ``ip6tables-restore``; they own ``filter``).

The lab only asks :func:`lab_target` for one by name.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cellwall.enforce import netns
from cellwall.enforce.nft import Nft
from cellwall.errors import UsageError
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet

__all__ = ["LAB_TARGETS", "Compiled", "LabTarget", "compile_hosts", "lab_target"]

#: Per host, its files by kind (the artefact's suffix without the dot: ``nft``, ``ipset``...).
Files = Mapping[str, Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Compiled:
    """What the lab loads: per host, its files by kind; and the rules reported unsupported."""

    target: str
    files: Files
    unsupported: Mapping[str, str]

    @property
    def rulesets(self) -> dict[str, str]:
        """Per host, its nftables ruleset (the ``nftables`` target)."""
        return {h: f["nft"] for h, f in self.files.items() if "nft" in f}


def _load_nftables(ns: str, files: Mapping[str, str]) -> None:
    Nft(ns).replace_table(files["nft"])


def _load_iptables(ns: str, files: Mapping[str, str]) -> None:
    netns.run(["ipset", "restore"], ns, stdin=files["ipset"])
    netns.run(["iptables-restore"], ns, stdin=files["iptables"])
    netns.run(["ip6tables-restore"], ns, stdin=files["ip6tables"])


@dataclass(frozen=True, slots=True)
class LabTarget:
    """A compile target (its registry name), the programs it needs, and its loader."""

    name: str
    programs: tuple[str, ...]
    load: Callable[[str, Mapping[str, str]], None]

    def check(self) -> None:
        """UsageError naming a program this target needs and the machine lacks."""
        missing = [p for p in self.programs if shutil.which(p) is None]
        if missing:
            raise UsageError(
                f"the lab's {self.name} target needs {', '.join(missing)}",
                hint="install it (apt-get install -y " + " ".join(missing) + ")",
            )


LAB_TARGETS: dict[str, LabTarget] = {
    t.name: t
    for t in (
        LabTarget("nftables", ("nft",), _load_nftables),
        LabTarget("iptables", ("ipset", "iptables-restore", "ip6tables-restore"), _load_iptables),
    )
}


def lab_target(name: str) -> LabTarget:
    found = LAB_TARGETS.get(name)
    if found is None:
        raise UsageError(
            f"the lab cannot load target {name!r}", hint="use " + " or ".join(LAB_TARGETS)
        )
    return found


def compile_hosts(
    policy: PolicySet,
    workloads: Sequence[Workload],
    hosts: Sequence[str],
    at: datetime,
    target: str = "nftables",
) -> Compiled:
    """Each host's files for ``target``, and the rules the compiler reported unsupported."""
    from cellwall.services.compile import make_estate
    from cellwall.targets.base import get_target

    lab_target(target)
    estate = make_estate(policy, workloads, at)
    compiler = get_target(target)
    files: dict[str, dict[str, str]] = {}
    unsupported: dict[str, str] = {}
    for h in hosts:
        art = compiler.compile(estate, h)
        for a in art.files:
            if a.host is not None:
                files.setdefault(a.host, {})[a.path.rsplit(".", 1)[-1]] = a.text
        for u in art.unsupported:
            unsupported.setdefault(u.rule_id, u.reason)
    return Compiled(target, files, unsupported)
