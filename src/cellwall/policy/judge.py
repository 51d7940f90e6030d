"""Identify and judge: conversations with addresses in, verdicts out.

:class:`Judge` holds a lowered policy and a :class:`~cellwall.inventory.identity.Resolver`
for one inventory; :meth:`Judge.identify` adds the class of each end (the workload that
owned the address at the conversation's start), and :meth:`Judge.judge` adds the verdict
columns of :func:`cellwall.policy.evaluate.evaluate`. :func:`judge` is the one-shot form.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from cellwall.ingest.parallel import ordered_map
from cellwall.inventory.identity import Resolver
from cellwall.model.inventory import Workload
from cellwall.model.policy import PolicySet
from cellwall.policy.evaluate import evaluate
from cellwall.policy.ir import PolicyIR

__all__ = ["Judge", "judge"]


class Judge:
    """A policy lowered over an inventory, ready to judge batches of conversations."""

    def __init__(
        self, policy: PolicySet, workloads: Sequence[Workload], dns: pa.Table | None = None
    ) -> None:
        self.ir = PolicyIR(policy, workloads)
        self.resolver = Resolver(workloads)
        self.dns = dns
        names = [w.name for w in self.resolver.workloads]
        wc = self.ir.classes.workload_class
        self._class_of = np.asarray([wc[n] for n in names] + [-1], np.int32)

    def close(self) -> None:
        self.resolver.close()

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def identify(self, t: pa.Table) -> pa.Table:
        """``t`` plus the ``client_``/``server_`` ``workload`` and ``class`` of each end."""
        names = self.resolver.names
        for side in ("client", "server"):
            idx = self.resolver.owner_indices(t[f"{side}_ip"], t["start"])
            owner = pa.DictionaryArray.from_arrays(pa.array(idx, pa.int32(), mask=idx < 0), names)
            t = t.append_column(f"{side}_workload", owner)
            t = t.append_column(f"{side}_class", pa.array(self._class_of[idx], pa.int32()))
        return t

    def judge(self, t: pa.Table) -> pa.Table:
        """The verdict columns for ``t`` (conversations with addresses), row for row."""
        ident = t if "client_class" in t.column_names else self.identify(t)
        return evaluate(ident, self.ir, self.dns)

    def judge_many(
        self, tables: Iterable[pa.Table], threads: int = 2
    ) -> Iterator[tuple[pa.Table, pa.Table]]:
        """(identified table, verdicts) for each table, judged on ``threads`` threads and
        given back in order."""

        def one(t: pa.Table) -> tuple[pa.Table, pa.Table]:
            ident = self.identify(t)
            return ident, evaluate(ident, self.ir, self.dns)

        return ordered_map(one, tables, max(1, threads))


def judge(
    conversations: pa.Table,
    policy: PolicySet,
    workloads: Sequence[Workload],
    dns: pa.Table | None = None,
) -> pa.Table:
    """Verdict, deciding rule id, ``unverified`` and ``blocked`` for each conversation, with
    string columns ``verdict`` and ``rule_id``."""
    with Judge(policy, workloads, dns) as j:
        out = j.judge(conversations)
    return pa.table(
        {
            "verdict": out["verdict"].cast(pa.string()),
            "rule_id": out["rule_id"].cast(pa.string()),
            "unverified": out["unverified"],
            "blocked": out["blocked"],
        }
    )
