"""Signed bundles: a good one verifies; each way of being wrong has its own reason."""

from __future__ import annotations

import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cellwall.enforce.bundle import (
    MANIFEST,
    SIGNATURE,
    BundleError,
    keygen,
    load_private_key,
    load_public_key,
    opened_bundle,
    sign_bundle,
    verify_bundle,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return keygen(tmp_path / "keys")


def _bundle(root: Path, keys: tuple[Path, Path], serial: int = 5) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "web-1.nft").write_text("table inet cellwall {}\n")
    (root / "db-1.nft").write_text("table inet cellwall {}\n# db\n")
    (root / "unsupported.json").write_text("{}\n")
    sign_bundle(
        root,
        load_private_key(keys[0]),
        serial=serial,
        expires=NOW + timedelta(days=1),
        management={"controllers": ["10.0.0.1"], "control_services": ["tcp/7443"]},
        now=NOW,
    )
    return root


def _reason(root: Path, pub: Path, **kw: object) -> str:
    with pytest.raises(BundleError) as info:
        verify_bundle(root, load_public_key(pub), now=kw.pop("now", NOW), **kw)  # type: ignore[arg-type]
    return info.value.reason


def test_a_signed_bundle_verifies_and_lists_its_hosts(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    root = _bundle(tmp_path / "b", keys)
    m = verify_bundle(root, load_public_key(keys[1]), now=NOW, last_serial=5)
    assert m.serial == 5 and sorted(m.hosts) == ["db-1", "web-1"]
    assert m.host_file("web-1").read_text().startswith("table inet")
    assert m.management["control_services"] == ["tcp/7443"]
    assert (keys[0].stat().st_mode & 0o777) == 0o600


def test_unsigned_is_rejected(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    root = _bundle(tmp_path / "b", keys)
    (root / SIGNATURE).unlink()
    assert _reason(root, keys[1]) == "unsigned"


def test_a_changed_manifest_or_another_key_fails_the_signature(
    tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    root = _bundle(tmp_path / "b", keys)
    doc = json.loads((root / MANIFEST).read_text())
    doc["serial"] = 99
    (root / MANIFEST).write_text(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    assert _reason(root, keys[1]) == "bad-signature"
    other = _bundle(tmp_path / "c", keys)
    _, stranger = keygen(tmp_path / "other")
    assert _reason(other, stranger) == "bad-signature"


@pytest.mark.parametrize("change", ["edit", "remove", "add"])
def test_any_file_change_is_tampering(tmp_path: Path, keys: tuple[Path, Path], change: str) -> None:
    root = _bundle(tmp_path / "b", keys)
    if change == "edit":
        (root / "web-1.nft").write_text("table inet cellwall { chain x {} }\n")
    elif change == "remove":
        (root / "db-1.nft").unlink()
    else:
        (root / "evil.nft").write_text("flush ruleset\n")
    assert _reason(root, keys[1]) == "tampered"


def test_expired_and_future_bundles_are_rejected(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    root = _bundle(tmp_path / "b", keys)
    assert _reason(root, keys[1], now=NOW + timedelta(days=2)) == "expired"
    assert _reason(root, keys[1], now=NOW - timedelta(hours=1)) == "not-yet-valid"


def test_an_older_serial_is_a_rollback(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    root = _bundle(tmp_path / "b", keys, serial=3)
    assert _reason(root, keys[1], last_serial=4) == "rollback"
    verify_bundle(root, load_public_key(keys[1]), now=NOW, last_serial=3)


def test_a_tar_of_the_bundle_verifies_the_same(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    root = _bundle(tmp_path / "b", keys)
    tar_path = tmp_path / "bundle.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(root, arcname="bundle")
    with opened_bundle(tar_path) as unpacked:
        assert verify_bundle(unpacked, load_public_key(keys[1]), now=NOW).serial == 5


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    from cellwall.errors import InputError

    keygen(tmp_path)
    with pytest.raises(InputError):
        keygen(tmp_path)
