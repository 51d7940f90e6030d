"""Labels and label conventions as canonical, immutable values.

A :class:`Labels` value is a set of ``key=value`` pairs with one value per key, kept sorted by
key, so that two label sets are equal exactly when they hold the same pairs. The four standard
keys are ``app``, ``role``, ``env`` and ``loc``; any other valid key is a custom label.

A :class:`LabelConvention` says which keys every workload must carry (``required``), which
values a key may take (``values``), and which foreign keys mean a standard one (``aliases``,
such as the AWS tag ``Environment`` for ``env``).

Invalid keys or values raise :class:`ValueError`; loaders translate that into diagnostics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "STANDARD_KEYS",
    "LabelConvention",
    "Labels",
    "check_label_key",
    "check_label_value",
]

STANDARD_KEYS: tuple[str, ...] = ("app", "role", "env", "loc")

# Letters and digits, with '.', '_', ':', '/' and '-' inside: covers Kubernetes keys such as
# ``app.kubernetes.io/name`` and AWS keys such as ``aws:cloudformation:stack-name``.
_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._:/-]{0,251}[A-Za-z0-9])?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_VALUE = 256


def check_label_key(key: object) -> str:
    """Return ``key`` when it is a valid label key; raise ValueError saying why otherwise."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(
            f"invalid label key {key!r}: use letters and digits, with '.', '_', ':', '/' or '-' "
            "inside, at most 253 characters"
        )
    return key


def check_label_value(key: str, value: object) -> str:
    """Return ``value`` when it is a valid value for ``key``; raise ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"label {key!r}: value {value!r} is not text")
    if not value or value != value.strip():
        raise ValueError(f"label {key!r}: value {value!r} is empty or has surrounding spaces")
    if _CONTROL.search(value) or len(value) > MAX_VALUE:
        raise ValueError(
            f"label {key!r}: value {value!r} has control characters or is longer than "
            f"{MAX_VALUE} characters"
        )
    return value


@dataclass(frozen=True, slots=True)
class Labels(Mapping[str, str]):
    """An immutable label set, sorted by key. Build one with :meth:`of`."""

    pairs: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        keys = [k for k, _ in self.pairs]
        if keys != sorted(set(keys)):
            raise ValueError("Labels.pairs must be sorted by key, one value per key")
        for k, v in self.pairs:
            check_label_value(check_label_key(k), v)

    @classmethod
    def of(cls, pairs: Mapping[str, str] | Iterable[tuple[str, str]] = (), **kw: str) -> Labels:
        """Labels from a mapping or pairs; a key given twice with two values is an error."""
        merged: dict[str, str] = {}
        source = pairs.items() if isinstance(pairs, Mapping) else pairs
        for k, v in [*source, *kw.items()]:
            if merged.get(k, v) != v:
                raise ValueError(f"label {k!r} given twice: {merged[k]!r} and {v!r}")
            merged[k] = v
        return cls(tuple(sorted(merged.items())))

    def __getitem__(self, key: str) -> str:
        for k, v in self.pairs:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self.pairs)

    def with_(self, **changes: str | None) -> Labels:
        """A copy with some keys set (a value) or removed (None)."""
        d = dict(self.pairs)
        for k, v in changes.items():
            if v is None:
                d.pop(k, None)
            else:
                d[k] = v
        return Labels(tuple(sorted(d.items())))

    def merged_under(self, defaults: Mapping[str, str]) -> Labels:
        """These labels, plus the keys of ``defaults`` that they do not set."""
        d = dict(defaults)
        d.update(self.pairs)
        return Labels(tuple(sorted(d.items())))

    def as_dict(self) -> dict[str, str]:
        return dict(self.pairs)

    def __str__(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.pairs)


@dataclass(frozen=True, slots=True)
class LabelConvention:
    """Required keys, allowed values per key, and aliases (foreign key -> our key).

    Build one with :meth:`of`; all three parts are kept sorted so that equal conventions are
    equal values.
    """

    required: tuple[str, ...] = ()
    values: tuple[tuple[str, tuple[str, ...]], ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for k in self.required:
            check_label_key(k)
        for k, allowed in self.values:
            check_label_key(k)
            for v in allowed:
                check_label_value(k, v)
        targets = {t for _, t in self.aliases}
        for alias, target in self.aliases:
            if alias == target:
                raise ValueError(f"alias {alias!r} points to itself")
            if alias in targets:
                raise ValueError(f"alias {alias!r} is itself the target of another alias")
            check_label_key(target)

    @classmethod
    def of(
        cls,
        required: Iterable[str] = (),
        values: Mapping[str, Iterable[str]] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> LabelConvention:
        return cls(
            tuple(sorted(set(required))),
            tuple(sorted((k, tuple(sorted(set(v)))) for k, v in (values or {}).items())),
            tuple(sorted((aliases or {}).items())),
        )

    def allowed(self, key: str) -> tuple[str, ...] | None:
        """The allowed values of ``key``, or None when any value is allowed."""
        for k, allowed in self.values:
            if k == key:
                return allowed
        return None

    def alias_map(self) -> dict[str, str]:
        return dict(self.aliases)

    def merge(self, later: LabelConvention) -> LabelConvention:
        """Both conventions: required keys and aliases are united; ``later`` wins per key."""
        values = dict(self.values)
        values.update(later.values)
        aliases = dict(self.aliases)
        aliases.update(later.aliases)
        return LabelConvention.of([*self.required, *later.required], values, aliases)
