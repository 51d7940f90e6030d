"""A thin wrapper around the ``nft`` binary, optionally inside a network namespace.

Every change is one ``nft -f`` transaction: the kernel applies all of a file or none of it.
:meth:`Nft.replace_table` writes ``add table`` + ``delete table`` + the new table into one
file, so that the table is swapped atomically whether or not it existed before.
:meth:`Nft.table_json` lists a table with ``nft -j``; :func:`table_digest` hashes that
listing without what changes by itself (counter values, handles), which is how the agent
tells that someone else changed its table.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from cellwall.enforce.netns import NetnsError, run
from cellwall.errors import CellwallError

__all__ = ["FAMILY", "TABLE", "Nft", "NftError", "table_digest", "transaction"]

FAMILY = "inet"
TABLE = "cellwall"
_VOLATILE = frozenset({"handle", "packets", "bytes", "metainfo"})


class NftError(CellwallError):
    """``nft`` refused a command or a ruleset."""


def transaction(ruleset: str, family: str = FAMILY, table: str = TABLE) -> str:
    """One file that replaces table ``family table`` by ``ruleset`` atomically."""
    return f"add table {family} {table}\ndelete table {family} {table}\n{ruleset.rstrip()}\n"


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v) for k, v in node.items() if k not in _VOLATILE}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def table_digest(listing: dict[str, Any] | None) -> str | None:
    """A hash of an ``nft -j`` listing that ignores counter values and handles."""
    if listing is None:
        return None
    body = json.dumps(_strip(listing.get("nftables", [])), sort_keys=True).encode()
    return hashlib.sha256(body).hexdigest()


class Nft:
    """``nft`` in namespace ``netns`` (None: the current one)."""

    def __init__(self, netns: str | None = None, binary: str = "nft") -> None:
        self.netns = netns
        self.binary = binary

    def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            return run([self.binary, *args], self.netns, stdin=stdin).stdout
        except NetnsError as exc:
            raise NftError(str(exc).replace(" failed: ", " failed:\n", 1)) from None

    def apply_file(self, text: str, *, check_only: bool = False) -> None:
        """Run ``text`` as one ``nft -f`` transaction (``-c``: only check it)."""
        with tempfile.NamedTemporaryFile("w", suffix=".nft", prefix="cellwall-") as f:
            f.write(text)
            f.flush()
            self._run(*(["-c"] if check_only else []), "-f", f.name)

    def replace_table(
        self, ruleset: str, family: str = FAMILY, table: str = TABLE, *, check_only: bool = False
    ) -> None:
        self.apply_file(transaction(ruleset, family, table), check_only=check_only)

    def delete_table(self, family: str = FAMILY, table: str = TABLE) -> None:
        self.apply_file(f"add table {family} {table}\ndelete table {family} {table}\n")

    def table_json(self, family: str = FAMILY, table: str = TABLE) -> dict[str, Any] | None:
        """The ``nft -j list table`` document, or None when the table does not exist."""
        try:
            text = self._run("-j", "list", "table", family, table)
        except NftError as exc:
            if "No such file or directory" in str(exc) or "does not exist" in str(exc):
                return None
            raise
        doc = json.loads(text)
        return doc if isinstance(doc, dict) else None

    def table_text(self, family: str = FAMILY, table: str = TABLE) -> str | None:
        try:
            return self._run("list", "table", family, table)
        except NftError:
            return None

    def run_file(self, path: Path) -> None:
        self._run("-f", str(path))
