"""The ingest use case: files in, flows into the lake, a summary out."""

from __future__ import annotations

import io
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from cellwall.errors import CellwallError, InputError
from cellwall.ingest.base import Chunk, FlowSource, Rejects, detect, get_source
from cellwall.ingest.stream import InputStream, open_input
from cellwall.lake.layout import LakeLayout
from cellwall.lake.manifest import Manifest
from cellwall.lake.writer import StagedIngest, recover
from cellwall.state.audit import AuditLog, current_actor
from cellwall.workspace import Workspace

__all__ = ["FileSummary", "IngestSummary", "ingest_paths"]

HEAD_BYTES = 64 << 10
Progress = Callable[[int, int], None]  # (records, bytes) since the last call


@dataclass
class FileSummary:
    path: str
    format: str
    status: str  # stored | duplicate | failed
    read: int = 0
    stored: int = 0
    duplicate: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    error: str | None = None
    dns: int = 0  # DNS evidence rows stored (LAKE/dns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "status": self.status,
            "read": self.read,
            "stored": self.stored,
            "duplicate": self.duplicate,
            "quarantined": dict(sorted(self.quarantined.items())),
            "ignored": dict(sorted(self.ignored.items())),
            "dns": self.dns,
            "error": self.error,
        }


@dataclass
class IngestSummary:
    files: list[FileSummary] = field(default_factory=list)
    seconds: float = 0.0
    recovered: dict[str, int] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(int(getattr(f, key)) for f in self.files)

    def quarantined(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for f in self.files:
            out.update(f.quarantined)
        return out

    def ignored(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for f in self.files:
            out.update(f.ignored)
        return out

    def to_dict(self) -> dict[str, Any]:
        read = self.total("read")
        return {
            "read": read,
            "stored": self.total("stored"),
            "dns": self.total("dns"),
            "duplicate": self.total("duplicate"),
            "quarantined": dict(sorted(self.quarantined().items())),
            "quarantined_total": sum(self.quarantined().values()),
            "ignored": dict(sorted(self.ignored().items())),
            "failed_files": sum(1 for f in self.files if f.status == "failed"),
            "seconds": round(self.seconds, 3),
            "records_per_s": round(read / self.seconds) if self.seconds > 0 else None,
            "recovered": self.recovered,
            "files": [f.to_dict() for f in self.files],
        }


class _Tee(io.RawIOBase):
    """A read-through stream that hashes what passes and replays a peeked head first."""

    def __init__(self, inner: BinaryIO | io.RawIOBase, head: bytes) -> None:
        super().__init__()
        self._inner = inner
        self._head = head
        self.hash = xxhash.xxh3_128()
        self.hash.update(head)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._head:
            if size is None or size < 0 or size >= len(self._head):
                out, self._head = self._head, b""
            else:
                out, self._head = self._head[:size], self._head[size:]
            return out
        data = self._inner.read(-1 if size is None else size)
        self.hash.update(data)
        return data

    def readall(self) -> bytes:
        parts = []
        while chunk := self.read(8 << 20):
            parts.append(chunk)
        return b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


_DONE = object()


def _prefetch(chunks: Iterator[Chunk], depth: int = 3) -> Iterator[Chunk]:
    """Run the adapter in a thread, ``depth`` chunks ahead, so parsing overlaps writing.

    Arrow and Parquet release the GIL, so the two use both cores. The queue is bounded, so
    memory stays bounded; an exception in the adapter is raised here.
    """
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        q.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    worker = threading.Thread(target=produce, name="cellwall-parse", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def _file_key(path: Path) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return h.hexdigest()


_REQUIRED = ("start", "src_ip", "dst_ip", "proto")


def _guard(chunk: Chunk) -> pa.Table:
    """Move rows that lack a required value into the chunk's rejects (adapters should not)."""
    flows = chunk.flows
    bad: np.ndarray | None = None
    for name in _REQUIRED:
        col = flows[name]
        if col.null_count:
            mask = np.asarray(pc.is_null(col).combine_chunks())
            bad = mask if bad is None else bad | mask
    if bad is None or not bad.any():
        return flows
    pos = flows["lineage_pos"].to_numpy()
    for i in np.flatnonzero(bad):
        missing = [n for n in _REQUIRED if flows[n][int(i)].as_py() is None]
        reason = "no-timestamp" if missing == ["start"] else "missing-field"
        chunk.rejects.add(int(pos[i]), reason, f"no value for {', '.join(missing)}")
    return flows.filter(pa.array(~bad))


def _ingest_one(
    path: Path,
    fmt: str,
    options: Mapping[str, str],
    layout: LakeLayout,
    manifest: Manifest,
    progress: Progress | None,
) -> FileSummary:
    raw_key = _file_key(path)
    seen = manifest.find(raw_key=raw_key)
    if seen is not None:
        c = seen["counts"]
        return FileSummary(
            str(path), seen["format"], "duplicate", read=c["read"], duplicate=c["stored"]
        )
    stream: InputStream = open_input(path)
    staged = StagedIngest(layout)
    try:
        head = stream.read(HEAD_BYTES)
        source_cls: type[FlowSource] = detect(head, str(path)) if fmt == "auto" else get_source(fmt)
        tee = _Tee(stream, head)
        summary = FileSummary(str(path), source_cls.name, "stored")
        for chunk in _prefetch(source_cls(options).read(tee, str(path))):  # type: ignore[arg-type]
            flows = _guard(chunk)
            staged.write_flows(flows)
            staged.write_dns(chunk.dns)
            staged.write_rejects(chunk.rejects)
            summary.ignored.update(chunk.ignored)
            summary.read += chunk.read
            if progress is not None:
                progress(chunk.read, 0)
        if stream.damage is not None:
            damage = Rejects(str(path), unit="offset")
            damage.add(stream.position, "truncated-gzip", stream.damage)
            staged.write_rejects(damage)
            summary.read += 1
        summary.stored = staged.stored
        summary.dns = staged.dns_stored
        summary.quarantined = Counter(staged.quarantined)
        content_key = tee.hash.hexdigest()
        seen = manifest.find(content_key=content_key)
        if seen is not None:
            staged.abort()
            return FileSummary(
                str(path),
                source_cls.name,
                "duplicate",
                read=summary.read,
                duplicate=seen["counts"]["stored"],
            )
        staged.commit(
            manifest,
            path=str(path.resolve()),
            fmt=source_cls.name,
            raw_key=raw_key,
            content_key=content_key,
            counts=summary.to_dict(),
        )
        return summary
    except BaseException:
        staged.abort()
        raise
    finally:
        stream.close()


def ingest_paths(
    ws: Workspace,
    paths: Iterable[str | Path],
    *,
    fmt: str = "auto",
    options: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    actor: str | None = None,
) -> IngestSummary:
    """Ingest files into the workspace's lake. A bad file fails alone; the others go on."""
    if fmt != "auto":
        get_source(fmt)  # an unknown format is a usage error before any work
    started = time.perf_counter()
    summary = IngestSummary()
    layout = LakeLayout(ws.lake)
    with ws.writer_lock():
        manifest = Manifest(ws.engine)
        summary.recovered = recover(layout, manifest)
        for p in paths:
            path = Path(p)
            try:
                summary.files.append(
                    _ingest_one(path, fmt, options or {}, layout, manifest, progress)
                )
            except CellwallError as exc:
                summary.files.append(FileSummary(str(path), fmt, "failed", error=str(exc)))
            except OSError as exc:
                err = InputError(f"{path}: {exc.strerror or exc}")
                summary.files.append(FileSummary(str(path), fmt, "failed", error=str(err)))
        audit = AuditLog(ws.engine)
        for f in summary.files:
            audit.record(
                current_actor(actor),
                "ingest",
                f.path,
                "ok" if f.status != "failed" else "failed",
                {k: v for k, v in f.to_dict().items() if k != "path"},
            )
    summary.seconds = time.perf_counter() - started
    return summary
