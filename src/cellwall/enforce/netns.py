"""Network namespaces: create, run in, enter, and always clean up.

:func:`run` runs a command (in a namespace when ``ns`` is given, through ``ip netns exec``);
:func:`entered` switches the *calling thread* into a namespace with ``setns(2)`` for the
duration of a ``with`` block, so that sockets made inside it belong to that namespace and
keep working after the thread switches back. Namespaces made here carry a prefix that
:func:`clean` finds them by.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cellwall.errors import CellwallError

__all__ = ["NetnsError", "add", "clean", "delete", "entered", "exists", "names", "run"]

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/run/netns")


class NetnsError(CellwallError):
    """A command about namespaces or inside one failed."""


def run(
    args: Sequence[str], ns: str | None = None, *, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (in namespace ``ns``); NetnsError with its stderr when it fails."""
    argv = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"{' '.join(argv)}: {exc}") from None
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def names() -> list[str]:
    done = run(["ip", "netns", "list"])
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    """A new namespace with its loopback up."""
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], name)


def delete(name: str) -> None:
    if exists(name):
        run(["ip", "netns", "delete", name], check=False)


def clean(prefix: str) -> list[str]:
    """Delete every namespace whose name starts with ``prefix``; the names deleted."""
    if not prefix:
        raise NetnsError("refusing to clean namespaces without a prefix")
    gone = [n for n in names() if n.startswith(prefix)]
    for n in gone:
        delete(n)
    return gone


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns failed: {os.strerror(err)}")


@contextmanager
def entered(name: str) -> Iterator[None]:
    """Run the block's code (this thread only) inside namespace ``name``."""
    home = os.open(f"/proc/self/task/{_gettid()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def _gettid() -> int:
    return int(getattr(os, "gettid", os.getpid)())
