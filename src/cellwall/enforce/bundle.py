"""Signed policy bundles: ``cellwall bundle keygen|sign|verify``.

A bundle is a directory (or a tar of one) holding enforcement artefacts (one file per host,
as ``cellwall compile`` writes them) and two files that say what they are:

- ``manifest.json``: ``{"format": "cellwall-bundle/1", "version", "serial", "created",
  "expires", "key_id", "management", "hosts": {HOST: {"file": PATH, "sha256": HEX}},
  "files": {PATH: HEX}}``, written as canonical JSON (sorted keys, no spaces);
- ``manifest.sig``: the base64 ed25519 signature of the exact bytes of ``manifest.json``.

:func:`verify_bundle` rejects, each with its own :class:`BundleError` reason code:
``unsigned`` (no signature), ``bad-signature`` (wrong key or altered manifest), ``malformed``,
``tampered`` (a file's hash differs, a listed file is missing, or an unlisted file is
present), ``expired``, ``not-yet-valid`` and ``rollback`` (a serial below the last one that
the agent accepted).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cellwall.errors import CellwallError, InputError

__all__ = [
    "FORMAT",
    "MANIFEST",
    "SIGNATURE",
    "BundleError",
    "Manifest",
    "key_id",
    "keygen",
    "load_private_key",
    "load_public_key",
    "opened_bundle",
    "sign_bundle",
    "verify_bundle",
]

FORMAT = "cellwall-bundle/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
#: Files that describe a compile run rather than a host's artefact.
_NOT_HOSTS = frozenset({"unsupported", "report", "index", "summary", "README"})


class BundleError(CellwallError):
    """A bundle that must not be applied; ``reason`` is a stable code."""

    def __init__(self, reason: str, message: str, hint: str = "") -> None:
        super().__init__(f"bundle rejected ({reason}): {message}", hint=hint, exit_code=1)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a verified bundle holds; ``root`` is the directory its files are in."""

    version: str
    serial: int
    created: datetime
    expires: datetime
    key_id: str
    hosts: Mapping[str, Mapping[str, str]]
    files: Mapping[str, str]
    management: Mapping[str, Any] = field(default_factory=dict)
    root: Path = Path(".")

    def host_file(self, host: str) -> Path:
        entry = self.hosts.get(host)
        if entry is None:
            raise BundleError(
                "no-host",
                f"the bundle has no artefact for host {host!r}",
                hint=f"hosts in it: {', '.join(sorted(self.hosts)) or 'none'}",
            )
        return self.root / entry["file"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "serial": self.serial,
            "created": _iso(self.created),
            "expires": _iso(self.expires),
            "key_id": self.key_id,
            "management": dict(self.management),
            "hosts": {h: dict(e) for h, e in sorted(self.hosts.items())},
            "files": dict(sorted(self.files.items())),
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _canonical(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def keygen(out_dir: Path, name: str = "bundle") -> tuple[Path, Path]:
    """Write a new ed25519 key pair as ``NAME.key`` (PKCS#8 PEM, mode 0600) and
    ``NAME.pub`` (SubjectPublicKeyInfo PEM); refuses to overwrite a key."""
    out_dir.mkdir(parents=True, exist_ok=True)
    priv_path, pub_path = out_dir / f"{name}.key", out_dir / f"{name}.pub"
    if priv_path.exists():
        raise InputError(f"{priv_path} exists", hint="remove it first or choose another --name")
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write_private(priv_path, priv)
    pub_path.write_bytes(pub)
    return priv_path, pub_path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a readable private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: not an ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{path}: not an ed25519 public key")
    return key


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _artefacts(root: Path) -> dict[str, str]:
    found = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and rel not in (MANIFEST, SIGNATURE):
            found[rel] = _sha256(p)
    return found


def _hosts(files: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """A host's artefact is a top-level file named after it (``web-1.nft``)."""
    hosts: dict[str, dict[str, str]] = {}
    for rel, digest in files.items():
        if "/" in rel or rel.startswith("."):
            continue
        stem = rel.split(".", 1)[0]
        if stem and stem not in _NOT_HOSTS:
            if stem in hosts:
                raise InputError(f"two artefacts for host {stem!r}: {hosts[stem]['file']}, {rel}")
            hosts[stem] = {"file": rel, "sha256": digest}
    return hosts


def sign_bundle(
    root: Path,
    key: Ed25519PrivateKey,
    *,
    serial: int,
    expires: datetime,
    version: str = "",
    management: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Manifest:
    """Hash every artefact under ``root``, write ``manifest.json`` and sign it."""
    if not root.is_dir():
        raise InputError(f"{root} is not a directory of artefacts")
    if serial < 0:
        raise InputError(f"serial {serial} is negative")
    created = now or datetime.now(UTC)
    if expires <= created:
        raise InputError(f"the expiry {_iso(expires)} is not after the creation time")
    files = _artefacts(root)
    manifest = Manifest(
        version=version or created.strftime("%Y%m%dT%H%M%SZ"),
        serial=serial,
        created=created,
        expires=expires,
        key_id=key_id(key.public_key()),
        hosts=_hosts(files),
        files=files,
        management=dict(management or {}),
        root=root,
    )
    body = _canonical(manifest.to_dict())
    (root / MANIFEST).write_bytes(body)
    (root / SIGNATURE).write_text(base64.b64encode(key.sign(body)).decode() + "\n")
    return manifest


@contextmanager
def opened_bundle(path: Path) -> Iterator[Path]:
    """The bundle's directory: ``path`` itself, or a tar of it unpacked in a scratch dir."""
    if path.is_dir():
        yield path
        return
    if not path.is_file():
        raise BundleError("unreachable", f"{path} does not exist")
    with tempfile.TemporaryDirectory(prefix="cellwall-bundle-") as tmp:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise BundleError("malformed", f"{path}: not a readable tar: {exc}") from None
        root = Path(tmp)
        subdirs = [p for p in root.iterdir()]
        if not (root / MANIFEST).exists() and len(subdirs) == 1 and subdirs[0].is_dir():
            root = subdirs[0]
        yield root


def _read_signed(root: Path, key: Ed25519PublicKey) -> dict[str, Any]:
    body_path, sig_path = root / MANIFEST, root / SIGNATURE
    if not body_path.exists():
        raise BundleError(
            "unsigned", f"{root} has no {MANIFEST}", hint="run `cellwall bundle sign`"
        )
    if not sig_path.exists():
        raise BundleError(
            "unsigned", f"{root} has no {SIGNATURE}", hint="run `cellwall bundle sign`"
        )
    body = body_path.read_bytes()
    try:
        key.verify(base64.b64decode(sig_path.read_text().strip(), validate=True), body)
    except (InvalidSignature, binascii.Error, ValueError):
        raise BundleError(
            "bad-signature",
            f"{SIGNATURE} does not verify {MANIFEST} with key {key_id(key)}",
            hint="the manifest was altered, or it was signed with another key",
        ) from None
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise BundleError("malformed", f"{MANIFEST} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleError("malformed", f"{MANIFEST} is not a {FORMAT} manifest")
    return doc


def _manifest(doc: Mapping[str, Any], root: Path) -> Manifest:
    try:
        return Manifest(
            version=str(doc["version"]),
            serial=int(doc["serial"]),
            created=_parse_time(doc["created"]),
            expires=_parse_time(doc["expires"]),
            key_id=str(doc["key_id"]),
            hosts={
                str(h): {"file": e["file"], "sha256": e["sha256"]} for h, e in doc["hosts"].items()
            },
            files={str(k): str(v) for k, v in doc["files"].items()},
            management=dict(doc.get("management") or {}),
            root=root,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BundleError("malformed", f"{MANIFEST} lacks or garbles a field: {exc}") from None


def _check_files(m: Manifest) -> None:
    present = _artefacts(m.root)
    for rel, digest in sorted(m.files.items()):
        if rel not in present:
            raise BundleError("tampered", f"{rel} is listed in the manifest but missing")
        if present[rel] != digest:
            raise BundleError("tampered", f"{rel} does not match its hash in the manifest")
    extra = sorted(set(present) - set(m.files))
    if extra:
        raise BundleError("tampered", f"files not in the manifest: {', '.join(extra)}")
    for host, entry in m.hosts.items():
        if m.files.get(entry["file"]) != entry["sha256"]:
            raise BundleError("tampered", f"host {host}: its artefact hash is inconsistent")


def verify_bundle(
    root: Path,
    key: Ed25519PublicKey,
    *,
    now: datetime | None = None,
    last_serial: int | None = None,
) -> Manifest:
    """The bundle's manifest, once the signature, every file hash, the validity window and
    the serial (against ``last_serial``, the last one accepted) all check out."""
    m = _manifest(_read_signed(root, key), root)
    _check_files(m)
    when = now or datetime.now(UTC)
    if when >= m.expires:
        raise BundleError(
            "expired",
            f"serial {m.serial} expired at {_iso(m.expires)}",
            hint="sign a fresh bundle",
        )
    if when < m.created:
        raise BundleError("not-yet-valid", f"serial {m.serial} is created in the future")
    if last_serial is not None and m.serial < last_serial:
        raise BundleError(
            "rollback",
            f"serial {m.serial} is older than serial {last_serial}, the last one accepted",
            hint="sign the bundle with a serial above the last one",
        )
    return m
