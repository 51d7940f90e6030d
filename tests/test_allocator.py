"""The allocator setting, against the real glibc (``mallinfo2``, in a fresh interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys

from cellwall.allocator import tune_allocator

_PROBE = """
import ctypes, ctypes.util
import numpy as np
from cellwall.allocator import tune_allocator

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
tuned = tune_allocator()
a = np.ones(2_000_000)  # 16 MB, as a block's column would be
mapped = libc.mallinfo2().hblkhd
del a
kept = libc.mallinfo2().arena
print(int(tuned), mapped >> 20, kept >> 20)
"""


def _probe(**env: str) -> tuple[bool, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return out[0] == "1", int(out[1]), int(out[2])


def test_a_block_sized_array_comes_from_the_heap_and_stays_there_when_freed() -> None:
    tuned, mapped_mib, kept_mib = _probe()
    assert tuned
    assert mapped_mib == 0  # not a fresh mmap, to be faulted in and zeroed again
    assert kept_mib >= 16  # freed, but kept for the next block
    untouched, default_mapped, _ = _probe(GLIBC_TUNABLES="glibc.malloc.check=0")
    assert not untouched  # the user's own tuning is left alone
    assert default_mapped >= 15  # glibc's default: a fresh mapping for every such array


def test_nothing_is_set_where_the_user_tunes_malloc() -> None:
    assert not tune_allocator({"MALLOC_MMAP_THRESHOLD_": "65536"})
