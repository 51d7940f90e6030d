"""Opening inputs (plain or gzip) and cutting them into line-aligned blocks.

A truncated or corrupt gzip stream does not raise: the stream ends where the good data
ends, and ``damage`` says what happened and at which decompressed offset, so that the
records before it are kept and the damage is quarantined.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cellwall.errors import InputError

__all__ = ["Block", "InputStream", "iter_blocks", "open_input"]

GZIP_MAGIC = b"\x1f\x8b"
BLOCK_SIZE = 16 << 20


class InputStream(io.RawIOBase):
    """A readable, decompressed view of one input file that never raises on damage."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        try:
            self._raw: BinaryIO = open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise InputError(f"{path}: cannot open: {exc.strerror}") from exc
        self.compressed = self._raw.read(2) == GZIP_MAGIC
        self._raw.seek(0)
        self._inner: BinaryIO = (
            gzip.GzipFile(fileobj=self._raw) if self.compressed else self._raw  # type: ignore[assignment]
        )
        self.position = 0
        self.damage: str | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.damage is not None:
            return b""
        # Decompress piece by piece: GzipFile.read(size) drops everything it decompressed
        # in a call that then meets the damage, which could be a whole block of good data.
        out = bytearray()
        try:
            if not self.compressed:
                out += self._inner.read(size)
            while self.compressed and (size < 0 or len(out) < size):
                want = size - len(out) if size >= 0 else 1 << 20
                piece = self._inner.read1(want)  # type: ignore[attr-defined]
                if not piece:
                    break
                out += piece
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
            self.damage = f"gzip stream damaged after {self.position + len(out)} bytes: {exc}"
        self.position += len(out)
        return bytes(out)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        try:
            if self.compressed:
                self._inner.close()
        finally:
            self._raw.close()
            super().close()


def open_input(path: str | Path) -> InputStream:
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p}: is a directory", hint="give the files, e.g. DIR/*.log")
    return InputStream(p)


@dataclass(frozen=True, slots=True)
class Block:
    """Whole lines of input: ``data`` starts at line ``first_line`` (1-based)."""

    first_line: int
    offset: int
    data: bytes

    @property
    def line_count(self) -> int:
        n = self.data.count(b"\n")
        return n if self.data.endswith(b"\n") else n + 1


def iter_blocks(
    stream: BinaryIO, block_size: int = BLOCK_SIZE, prefix: bytes = b""
) -> Iterator[Block]:
    """Cut a stream into blocks that end at a newline (the last one may not)."""
    line, offset = 1, 0
    carry = prefix
    while True:
        chunk = stream.read(block_size)
        if not chunk:
            break
        buf = carry + chunk if carry else chunk
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            if len(carry) > 16 * block_size:
                # No newline in a huge span: hand it over whole rather than grow forever.
                yield Block(line, offset, carry)
                offset += len(carry)
                carry = b""
            continue
        data, carry = buf[: cut + 1], buf[cut + 1 :]
        yield Block(line, offset, data)
        line += data.count(b"\n")
        offset += len(data)
    if carry:
        yield Block(line, offset, carry)
