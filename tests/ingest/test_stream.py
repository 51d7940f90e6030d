"""Line-aligned blocks and tolerant input streams."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cellwall.errors import InputError
from cellwall.ingest.stream import count_newlines, iter_blocks, newline_offsets, open_input


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=60),
    st.booleans(),
    st.integers(min_value=1, max_value=64),
)
def test_blocks_cover_the_input_with_right_line_numbers(
    lines: list[bytes], final_newline: bool, block_size: int
) -> None:
    data = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    blocks = list(iter_blocks(io.BytesIO(data), block_size))
    assert b"".join(b.data for b in blocks) == data
    offset, line = 0, 1
    for b in blocks:
        assert b.offset == offset
        assert b.first_line == line
        assert b.newlines in (-1, b.data.count(b"\n"))
        if b.data.endswith(b"\n") or b is blocks[-1]:
            line += b.data.count(b"\n")
        offset += len(b.data)
    # Every block but a final partial one ends at a newline, unless a huge line was cut.
    for b in blocks[:-1]:
        assert b.data.endswith(b"\n") or len(b.data) > 16 * block_size


def test_gzip_damage_keeps_what_came_before(tmp_path: Path) -> None:
    body = b"".join(b"line %d\n" % i for i in range(50_000))
    data = gzip.compress(body)
    path = tmp_path / "x.gz"
    path.write_bytes(data[: len(data) * 2 // 3])
    stream = open_input(path)
    got = b"".join(iter(lambda: stream.read(1 << 16), b""))
    stream.close()
    assert stream.compressed and stream.damage is not None
    assert body.startswith(got) and len(got) > len(body) // 3
    assert str(len(got)) in stream.damage


def test_plain_files_and_missing_ones(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nb\n")
    stream = open_input(path)
    assert not stream.compressed and stream.read() == b"a\nb\n" and stream.damage is None
    stream.close()
    with pytest.raises(InputError, match="cannot open"):
        open_input(tmp_path / "nope.log")
    with pytest.raises(InputError, match="directory"):
        open_input(tmp_path)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 3 << 18),
    st.lists(st.integers(0, (3 << 18) - 1), max_size=40),
)
def test_newlines_are_found_across_the_slices(size: int, where: list[int]) -> None:
    """Large data is scanned in slices: a newline on either side of a slice edge counts once."""
    data = bytearray(b"x" * size)
    edges = [k * (1 << 18) + d for k in range(1, 3) for d in (-1, 0, 1)]
    for i in [*where, *edges]:
        if i < size:
            data[i] = 10
    raw = bytes(data)
    want = [i for i, b in enumerate(raw) if b == 10]
    assert count_newlines(raw) == len(want) == raw.count(b"\n")
    assert newline_offsets(raw).tolist() == want
