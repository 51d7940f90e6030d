"""The adapter interface, the registry of source formats, and what an adapter yields.

An adapter is a :class:`FlowSource` subclass that declares a ``name`` and registers itself
with :func:`register`. Core code never branches on a format's name: it asks the registry.
A new format (NetFlow, Hubble, a live collector) is one more module with one more class.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, ClassVar

import pyarrow as pa

from cellwall.errors import FormatError
from cellwall.model.flow_schema import FLOW_SCHEMA

__all__ = [
    "REJECT_SCHEMA",
    "Chunk",
    "FlowSource",
    "Rejects",
    "detect",
    "get_source",
    "register",
    "source_names",
]

REJECT_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string()),
        pa.field("pos", pa.int64()),
        pa.field("unit", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("message", pa.string()),
        pa.field("raw", pa.string()),
    ]
)
RAW_LIMIT = 512


class Rejects:
    """Records that could not become flows, each with where it was and why."""

    __slots__ = ("_rows", "file", "unit")

    def __init__(self, file: str, unit: str = "line") -> None:
        self.file = file
        self.unit = unit
        self._rows: list[tuple[int, str, str, str]] = []

    def add(self, pos: int, reason: str, message: str, raw: str | bytes = "") -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "backslashreplace")
        self._rows.append((int(pos), reason, message, raw[:RAW_LIMIT]))

    def __len__(self) -> int:
        return len(self._rows)

    def counts(self) -> Counter[str]:
        return Counter(r[1] for r in self._rows)

    def table(self) -> pa.Table:
        n = len(self._rows)
        return pa.table(
            {
                "file": pa.array([self.file] * n, pa.string()),
                "pos": pa.array([r[0] for r in self._rows], pa.int64()),
                "unit": pa.array([self.unit] * n, pa.string()),
                "reason": pa.array([r[1] for r in self._rows], pa.string()),
                "message": pa.array([r[2] for r in self._rows], pa.string()),
                "raw": pa.array([r[3] for r in self._rows], pa.string()),
            },
            schema=REJECT_SCHEMA,
        )


@dataclass
class Chunk:
    """What an adapter yields: flows, the records it rejected, and records it ignored.

    ``ignored`` counts records that are not flows by the format's own meaning (AWS
    ``NODATA``, a Zeek ``#close`` line): they are neither stored nor quarantined.

    ``dns`` holds DNS evidence rows (:data:`cellwall.evidence.dns.DNS_SCHEMA`) that the
    adapter found; they are stored beside the flows. ``dns_records`` counts the input
    records that became evidence *instead of* flows (a Zeek dns.log line), so that every
    record read is a flow, a reject, ignored, or a DNS record. A Hubble DNS flow is a flow
    that also yields evidence: it counts as a flow only.
    """

    flows: pa.Table
    rejects: Rejects
    ignored: Counter[str] = field(default_factory=Counter)
    dns: pa.Table | None = None
    dns_records: int = 0

    def __post_init__(self) -> None:
        if self.flows.schema != FLOW_SCHEMA:
            self.flows = self.flows.cast(FLOW_SCHEMA)

    @property
    def read(self) -> int:
        return (
            int(self.flows.num_rows)
            + len(self.rejects)
            + sum(self.ignored.values())
            + self.dns_records
        )


class FlowSource(ABC):
    """One source format. Subclasses set ``name`` and ``title`` and register themselves."""

    name: ClassVar[str]
    title: ClassVar[str]
    #: ``line`` for text formats, ``offset`` for binary ones: what lineage_pos counts.
    unit: ClassVar[str] = "line"

    def __init__(self, options: Mapping[str, str] | None = None) -> None:
        self.options: dict[str, str] = dict(options or {})

    @classmethod
    def sniff(cls, head: bytes) -> bool:
        """Whether the first bytes (decompressed) look like this format."""
        return False

    @abstractmethod
    def read(self, stream: BinaryIO, file: str) -> Iterator[Chunk]:
        """Yield chunks of bounded size from the (decompressed) stream."""


_REGISTRY: dict[str, type[FlowSource]] = {}
_BUILTIN_MODULES = (
    "cellwall.ingest.vpc",
    "cellwall.ingest.zeek",
    "cellwall.ingest.mapped",
    "cellwall.ingest.netflow",
    "cellwall.ingest.hubble",
    "cellwall.ingest.zeek_dns",
    "cellwall.ingest.agent_counters",
    "cellwall.ingest.agent_drops",
)
_loaded = False


def register(cls: type[FlowSource]) -> type[FlowSource]:
    """Class decorator: make a source format available by its name."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"two flow sources are both named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def source_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_source(name: str) -> type[FlowSource]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FormatError(
            f"unknown flow format {name!r}",
            hint=f"use one of: auto, {', '.join(source_names())}",
        ) from None


def detect(head: bytes, file: str) -> type[FlowSource]:
    """The one registered format whose sniff accepts these first bytes."""
    _load_builtin()
    hits = [cls for cls in _REGISTRY.values() if cls.sniff(head)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise FormatError(
            f"{file}: cannot tell the flow format from the first bytes",
            hint="give it with --format " + "|".join(source_names()),
        )
    raise FormatError(
        f"{file}: the first bytes fit several formats: {', '.join(c.name for c in hits)}",
        hint="choose one with --format",
    )
