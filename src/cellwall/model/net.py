"""IP addresses as canonical strings, validated and canonicalised column-wise.

Addresses are stored in their canonical text form (``ipaddress``'s compressed form), so
that equal addresses are equal strings. Work is done once per distinct address, never once
per flow: a column is dictionary-encoded, its distinct values are checked (IPv4 by one
vectorised regular expression, anything else by :mod:`ipaddress`), and the result is
mapped back through the dictionary indices.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["IPV4_CANONICAL", "canonical_ip", "canonical_ips"]

# A dotted quad without leading zeros, each octet 0-255: already canonical.
IPV4_CANONICAL = (
    r"^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
    r"(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$"
)


def canonical_ip(text: str) -> str | None:
    """The canonical form of one address, or None when it is not an IP address."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


def _canonical_values(values: pa.Array) -> pa.Array:
    """Canonicalise distinct strings: a fast path for canonical IPv4, ipaddress for the rest."""
    ok4 = pc.match_substring_regex(values, IPV4_CANONICAL).fill_null(False)
    if pc.all(ok4).as_py():
        return values
    out = values.to_pylist()
    for i in np.flatnonzero(~np.asarray(ok4)):
        v = out[i]
        out[i] = canonical_ip(v) if v is not None else None
    return pa.array(out, pa.string())


def canonical_ips(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Canonical IP strings for a string column; null where a value is not an address."""
    if isinstance(column, pa.ChunkedArray):
        column = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    dictionary = _canonical_values(encoded.dictionary)
    if dictionary is encoded.dictionary and encoded is not column:
        return column  # every value is already canonical: nothing to map back
    return pc.take(dictionary, encoded.indices)
