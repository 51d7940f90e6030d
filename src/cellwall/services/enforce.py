"""The enforcement use cases: bundles, the host agent, the lab, and the demo's part of them."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cellwall.enforce.agent import Agent, AgentConfig, CycleResult
from cellwall.enforce.bundle import (
    Manifest,
    keygen,
    load_private_key,
    load_public_key,
    opened_bundle,
    sign_bundle,
    verify_bundle,
)
from cellwall.enforce.state import StateDir
from cellwall.errors import UsageError
from cellwall.model.policy import Management, PolicySet
from cellwall.workspace import Workspace

__all__ = [
    "SignRequest",
    "demo_enforce",
    "lab_clean",
    "lab_verify",
    "management_doc",
    "run_agent",
    "run_keygen",
    "run_sign",
    "run_verify",
]


@dataclass(frozen=True, slots=True)
class SignRequest:
    root: Path
    key: Path
    serial: int
    valid_for: timedelta = timedelta(days=7)
    version: str = ""
    policy_dir: Path | None = None
    now: datetime | None = None
    no_management: bool = False


def management_doc(m: Management) -> dict[str, Any]:
    """The management tier as the manifest carries it (and the agent's guard reads it)."""
    return {
        "admin_networks": list(m.admin_networks),
        "services": [str(s) for s in m.services],
        "controllers": list(m.controllers),
        "control_services": [str(s) for s in m.control_services],
    }


def run_keygen(out: Path, name: str = "bundle") -> dict[str, Any]:
    priv, pub = keygen(out, name)
    return {"private_key": str(priv), "public_key": str(pub)}


def _summary(m: Manifest) -> dict[str, Any]:
    return {
        "version": m.version,
        "serial": m.serial,
        "created": m.created.isoformat(),
        "expires": m.expires.isoformat(),
        "key_id": m.key_id,
        "hosts": len(m.hosts),
        "files": len(m.files),
    }


def _management_for(ws: Workspace | None, req: SignRequest) -> dict[str, Any]:
    """The management tier to sign into the manifest: from ``--policy``, else from the
    workspace's active policy. Without one, the agent's guard could not check that a ruleset
    keeps the control channel open, so signing is refused unless ``no_management``."""
    if req.no_management:
        return {}
    from cellwall.services.policy import active_policy
    from cellwall.services.replay import policy_for

    ps = None
    if req.policy_dir is not None:
        if ws is None:
            raise UsageError("--policy needs a workspace")
        ps = policy_for(ws, req.policy_dir)
    elif ws is not None:
        ps = active_policy(ws)
    hint = (
        "pass --policy DIR (or activate a policy) whose PolicySettings.management names the "
        "admin networks and controllers; --no-management signs without the agent's guard"
    )
    if ps is None:
        raise UsageError("no policy to take the management tier from", hint=hint)
    m = ps.settings.management
    if not (m.admin_networks or m.controllers):
        raise UsageError(
            "the policy's management tier is empty: the agent could not tell a ruleset that "
            "locks out its control channel",
            hint=hint,
        )
    return management_doc(m)


def run_sign(ws: Workspace | None, req: SignRequest) -> dict[str, Any]:
    """Sign the artefacts under ``req.root``; the management tier comes from the policy."""
    mgmt = _management_for(ws, req)
    now = req.now or datetime.now(UTC)
    m = sign_bundle(
        req.root,
        load_private_key(req.key),
        serial=req.serial,
        expires=now + req.valid_for,
        version=req.version,
        management=mgmt,
        now=now,
    )
    doc = {"bundle": str(req.root), "management": bool(mgmt), **_summary(m)}
    if ws is not None:
        from cellwall.state.audit import AuditLog, current_actor

        AuditLog(ws.engine).record(current_actor(), "bundle.sign", str(req.root), "ok", doc)
    return doc


def run_verify(
    path: Path, key: Path, *, state: Path | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Verify a bundle (against the serial an agent's state holds, when ``state`` is given);
    raises BundleError (exit 1) with the reason."""
    last = StateDir(state).load().serial if state is not None else None
    with opened_bundle(path) as root:
        m = verify_bundle(root, load_public_key(key), now=now, last_serial=last)
        return {"bundle": str(path), "ok": True, **_summary(m)}


def run_agent(
    config: AgentConfig, *, once: bool, interval: float, cycles: int | None = None
) -> list[CycleResult]:
    return Agent(config).run(once=once, interval=interval, cycles=cycles)


def lab_verify(
    ws: Workspace,
    policy_dir: Path | None,
    inventory: Path | None,
    *,
    sample: int | None = None,
    timeout: float = 0.3,
    at: datetime | None = None,
    target: str = "nftables",
    ends: bool = True,
) -> Any:
    """``cellwall lab verify``: the :class:`~cellwall.enforce.lab.LabResult`. ``target`` is
    the host target whose compiled rulesets are applied (``nftables`` or ``iptables``);
    ``ends`` adds the address ends (IP lists, the internet, admin networks, controllers)."""
    from cellwall.enforce.lab import run_lab
    from cellwall.enforce.lab_targets import LAB_TARGETS
    from cellwall.services.replay import policy_for, workloads_for

    if os.geteuid() != 0:
        raise UsageError("the lab needs root (network namespaces and nftables)")
    if target not in LAB_TARGETS:
        raise UsageError(
            f"the lab cannot apply target {target!r}", hint="use " + " or ".join(LAB_TARGETS)
        )
    return run_lab(
        policy_for(ws, policy_dir),
        workloads_for(ws, inventory),
        sample=sample,
        timeout=timeout,
        at=at,
        target=target,
        ends=ends,
    )


def lab_clean() -> list[str]:
    from cellwall.enforce.lab import clean

    return clean()


def _compile_demo(ws: Workspace, dest: Path) -> tuple[PolicySet, Any, datetime | None]:
    from cellwall.services.compile import _demo_instant, compile_policy, write_artefacts
    from cellwall.services.replay import policy_for, workloads_for

    ps = policy_for(ws, None)
    workloads = workloads_for(ws, None)
    at = _demo_instant(workloads)
    arts = compile_policy(ps, workloads, "nftables", at=at, allow_expired=True)
    if dest.exists():
        shutil.rmtree(dest)
    write_artefacts(arts, dest)
    return ps, workloads, at


def demo_enforce(ws: Workspace, out_dir: Path, *, lab_sample: int = 3) -> dict[str, Any]:
    """Compile the demo's active policy to nftables as a bundle under ``out_dir/bundle``,
    sign it with a fresh key (``out_dir/keys``) and verify it; as root with ``nft``, also
    run a lab sample of ``lab_sample`` classes."""
    bundle = out_dir / "bundle"
    ps, workloads, at = _compile_demo(ws, bundle)
    keys = out_dir / "keys"
    if keys.exists():
        shutil.rmtree(keys)
    priv, pub = keygen(keys)
    m = sign_bundle(
        bundle,
        load_private_key(priv),
        serial=1,
        expires=datetime.now(UTC) + timedelta(days=7),
        management=management_doc(ps.settings.management),
    )
    verified = verify_bundle(bundle, load_public_key(pub))
    doc: dict[str, Any] = {
        "bundle": str(bundle),
        "public_key": str(pub),
        "hosts": len(m.hosts),
        "serial": verified.serial,
        "verified": True,
        "key_id": m.key_id,
    }
    if os.geteuid() == 0 and shutil.which("nft") and shutil.which("ip"):
        from cellwall.enforce.lab import run_lab

        result = run_lab(ps, workloads, sample=lab_sample, at=at)
        doc["lab"] = {k: v for k, v in result.to_dict().items() if k != "unsupported"}
        doc["lab"]["unsupported"] = len(result.unsupported)
    return doc
