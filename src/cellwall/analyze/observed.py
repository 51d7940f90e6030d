"""Observed conversations as evidence: which of them match a (from, to, services) pattern,
and the workload graph they draw.

A pattern is judged by the policy evaluator itself: it becomes a one-rule policy (``allow
from → to on services``, unscoped, with the policy's IP lists), so a selector means exactly
what it means in a rule, DNS names included. Conversations are identified once (the workload
that owned each address at the conversation's start); each pattern only recodes the classes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from cellwall.model.inventory import Workload
from cellwall.model.policy import Policy, PolicySet, Rule, Selector, Service
from cellwall.policy.evaluate import evaluate
from cellwall.policy.ir import PolicyIR
from cellwall.policy.judge import Judge

__all__ = ["Observed"]

Mask = npt.NDArray[np.bool_]
_ANY = Selector(any=True)


class Observed:
    """The conversations of a window, identified against an inventory."""

    def __init__(
        self,
        conversations: pa.Table,
        policy: PolicySet,
        workloads: Sequence[Workload],
        dns: pa.Table | None = None,
    ) -> None:
        self.iplists = policy.iplists
        self.workloads = list(workloads)
        self.dns = dns
        with Judge(PolicySet(iplists=policy.iplists), workloads) as j:
            ident = j.identify(conversations)
        self.table = ident.drop_columns(["client_class", "server_class"])
        self.client = [str(x) if x is not None else None for x in _names(ident, "client")]
        self.server = [str(x) if x is not None else None for x in _names(ident, "server")]
        self.count = ident.num_rows

    def keys(self, side: str) -> list[str]:
        """Each conversation's end as a key: the workload's name, or ``ip:ADDRESS``."""
        names = self.client if side == "client" else self.server
        ips = self.table[f"{side}_ip"].to_pylist()
        return [n if n is not None else f"ip:{ip}" for n, ip in zip(names, ips, strict=True)]

    def match(
        self, source: Selector = _ANY, target: Selector = _ANY, services: Sequence[Service] = ()
    ) -> Mask:
        """The conversations from ``source`` to ``target`` on ``services`` (all if none)."""
        if self.count == 0:
            return np.zeros(0, bool)
        rule = Rule("match", source, target, tuple(services) or (Service(),))
        ps = PolicySet((Policy("pattern", (rule,)),), self.iplists)
        ir = PolicyIR(ps, self.workloads)
        wc = ir.classes.workload_class
        t = self.table
        for side, names in (("client", self.client), ("server", self.server)):
            cls = np.asarray([wc[n] if n is not None else -1 for n in names], np.int32)
            t = t.append_column(f"{side}_class", pa.array(cls, pa.int32()))
        verdict = evaluate(t, ir, self.dns)["rule_code"].to_numpy(zero_copy_only=False)
        return np.asarray(verdict == 0, bool)

    def examples(self, mask: Mask, limit: int = 3) -> tuple[dict[str, Any], ...]:
        out = []
        keep = [
            c
            for c in ("client_ip", "server_ip", "service", "start")
            if c in self.table.schema.names
        ]
        for i in np.flatnonzero(mask)[:limit].tolist():
            row = self.table.select(keep).slice(i, 1).to_pylist()[0]
            row["start"] = str(row.get("start"))
            row["client_workload"], row["server_workload"] = self.client[i], self.server[i]
            out.append(row)
        return tuple(out)

    def edges(self, mask: Mask | None = None) -> Iterator[tuple[str, str]]:
        """Distinct (client key, server key) pairs of the conversations in ``mask``."""
        rows = range(self.count) if mask is None else np.flatnonzero(mask).tolist()
        ck, sk = self.keys("client"), self.keys("server")
        seen: set[tuple[str, str]] = set()
        for i in rows:
            pair = (ck[i], sk[i])
            if pair not in seen and pair[0] != pair[1]:
                seen.add(pair)
                yield pair


def _names(t: pa.Table, side: str) -> list[Any]:
    col = t[f"{side}_workload"]
    if pa.types.is_dictionary(col.type):
        col = col.cast(pa.string())
    return col.to_pylist()  # type: ignore[no-any-return]
