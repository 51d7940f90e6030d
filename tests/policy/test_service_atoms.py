"""Service atoms: every service is a union of atoms, and lookups land in the right one."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellwall.model.policy import ICMP_PROTOS, Service, parse_service
from cellwall.policy.service_atoms import ServiceAtoms

TEXTS = ["tcp/443", "tcp/8000-8100", "udp/53", "icmp/8", "proto/47", "tcp", "any"]


def covers(s: Service, proto: int, port: int) -> bool:
    """The plain meaning of a service for a conversation (port -1: none)."""
    if s.proto is None:
        return True
    if s.proto != proto:
        return False
    if s.lo is None or s.hi is None:
        return True
    if proto in ICMP_PROTOS and port > 255:
        return False
    return port >= 0 and s.lo <= port <= s.hi


@pytest.mark.parametrize(
    ("proto", "port", "described"),
    [
        (6, 443, "tcp/443"),
        (6, 444, "tcp/444-7999"),
        (6, 8100, "tcp/8000-8100"),
        (6, -1, "tcp (no port)"),
        (17, 53, "udp/53"),
        (1, 8, "icmp/8"),
        (47, -1, "proto/47 (no port)"),
        (50, 7, "other"),
    ],
)
def test_atoms_are_named_for_their_range(proto: int, port: int, described: str) -> None:
    atoms = ServiceAtoms([parse_service(t) for t in TEXTS])
    atom = atoms.atoms_of(np.asarray([proto]), np.asarray([port]))[0]
    assert atoms.describe(int(atom)) == described


services = st.builds(
    Service,
    st.sampled_from([None, 6, 17, 1, 58, 47]),
).flatmap(
    lambda s: (
        st.just(s)
        if s.proto not in (6, 17, 1, 58)
        else st.one_of(
            st.just(s),
            st.tuples(
                st.integers(0, 255 if s.proto in ICMP_PROTOS else 65535), st.integers(0, 300)
            ).map(
                lambda t, p=s.proto: Service(
                    p, t[0], min(t[0] + t[1], 255 if p in ICMP_PROTOS else 65535)
                )
            ),
        )
    )
)


@given(
    st.lists(services, min_size=1, max_size=6),
    st.lists(
        st.tuples(st.sampled_from([6, 17, 1, 58, 47, 99]), st.integers(-1, 65535)), max_size=40
    ),
)
def test_a_service_mask_holds_exactly_the_conversations_it_covers(
    svcs: list[Service], convs: list[tuple[int, int]]
) -> None:
    atoms = ServiceAtoms(svcs)
    proto = np.asarray([p for p, _ in convs], np.int64)
    port = np.asarray([q for _, q in convs], np.int64)
    found = atoms.atoms_of(proto, port)
    for s in svcs:
        mask = atoms.mask(s)
        for (p, q), a in zip(convs, found.tolist(), strict=True):
            assert bool(mask[a]) == covers(s, p, q), (s, p, q, atoms.describe(a))
