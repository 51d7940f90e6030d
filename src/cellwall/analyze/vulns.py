"""Vulnerability data per workload, from Trivy or Grype JSON reports or a CSV of CVEs.

- **Trivy** (``trivy image|fs|rootfs --format json``): ``ArtifactName`` names the workload;
  each ``Results[].Vulnerabilities[]`` gives ``VulnerabilityID``, ``Severity`` and ``CVSS``
  (the highest ``V3Score``, else ``V2Score``, over the sources).
- **Grype** (``grype -o json``): ``source.target.userInput`` (or ``.name``) names the
  workload; each ``matches[].vulnerability`` gives ``id``, ``severity`` and ``cvss[]``.
- **CSV**: a header with ``workload`` and ``cve``, optionally ``severity`` and ``cvss``.

A report whose artifact is not a workload of the inventory is attributed by its file name
(``pay-web-1.json`` → ``pay-web-1``). Without a score, the severity gives one.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellwall.errors import Diagnostic, InputError

__all__ = ["SEVERITY_CVSS", "Vulnerability", "load_vulnerabilities", "parse_report"]

SEVERITY_CVSS = {
    "critical": 9.0,
    "high": 7.0,
    "medium": 4.0,
    "moderate": 4.0,
    "low": 1.0,
    "negligible": 0.0,
    "unknown": 0.0,
}


@dataclass(frozen=True, slots=True)
class Vulnerability:
    workload: str
    id: str
    severity: str
    cvss: float


def _score(severity: str, cvss: float | None) -> float:
    return cvss if cvss is not None else SEVERITY_CVSS.get(severity.lower(), 0.0)


def _trivy_cvss(v: Mapping[str, Any]) -> float | None:
    scores = [
        float(src[k])
        for src in (v.get("CVSS") or {}).values()
        if isinstance(src, dict)
        for k in ("V3Score", "V2Score")
        if isinstance(src.get(k), int | float)
    ]
    return max(scores) if scores else None


def _trivy(doc: Mapping[str, Any], name: str) -> list[Vulnerability]:
    out = []
    for result in doc.get("Results") or []:
        for v in result.get("Vulnerabilities") or []:
            sev = str(v.get("Severity", "unknown")).lower()
            out.append(
                Vulnerability(name, str(v.get("VulnerabilityID")), sev, _score(sev, _trivy_cvss(v)))
            )
    return out


def _grype(doc: Mapping[str, Any], name: str) -> list[Vulnerability]:
    out = []
    for match in doc.get("matches") or []:
        v = match.get("vulnerability") or {}
        sev = str(v.get("severity", "unknown")).lower()
        scores = [
            float(c["metrics"]["baseScore"])
            for c in v.get("cvss") or []
            if isinstance(c.get("metrics"), dict)
            and isinstance(c["metrics"].get("baseScore"), int | float)
        ]
        out.append(
            Vulnerability(name, str(v.get("id")), sev, _score(sev, max(scores) if scores else None))
        )
    return out


def _artifact(doc: Mapping[str, Any]) -> str | None:
    if "ArtifactName" in doc:
        return str(doc["ArtifactName"])
    target = (doc.get("source") or {}).get("target")
    if isinstance(target, dict):
        found = target.get("userInput") or target.get("name")
        return str(found) if found else None
    return str(target) if isinstance(target, str) else None


def _csv(text: str, file: str) -> list[Vulnerability]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"workload", "cve"} <= set(rows[0]):
        hint = "write a header: workload,cve,severity,cvss"
        raise InputError(f"{file}: a CVE CSV needs the columns workload and cve", hint)
    out = []
    for row in rows:
        sev = (row.get("severity") or "unknown").strip().lower()
        raw = (row.get("cvss") or "").strip()
        try:
            cvss = float(raw) if raw else None
        except ValueError:
            raise InputError(
                f"{file}: cvss {raw!r} is not a number", "write a score 0-10"
            ) from None
        out.append(
            Vulnerability(row["workload"].strip(), row["cve"].strip(), sev, _score(sev, cvss))
        )
    return out


def parse_report(text: str, file: str, workloads: Iterable[str]) -> list[Vulnerability]:
    """The vulnerabilities of one report (format told by its content)."""
    if file.lower().endswith(".csv"):
        return _csv(text, file)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        diag = Diagnostic(file, exc.lineno, exc.colno, "bad-json", exc.msg)
        raise InputError(f"{file}: not JSON", "give a Trivy or Grype JSON report", [diag]) from None
    if not isinstance(doc, dict) or not ({"Results", "matches"} & set(doc)):
        raise InputError(
            f"{file}: neither a Trivy nor a Grype report",
            "use `trivy --format json` or `grype -o json`",
        )
    known = set(workloads)
    name = _artifact(doc)
    if name not in known:
        name = Path(file).stem
    return _trivy(doc, name) if "Results" in doc else _grype(doc, name)


def load_vulnerabilities(
    paths: Sequence[Path], workloads: Iterable[str]
) -> dict[str, list[Vulnerability]]:
    """Vulnerabilities by workload from every report; unknown workloads are refused."""
    known = set(workloads)
    out: dict[str, list[Vulnerability]] = {}
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise InputError(
                f"{path}: cannot read: {exc.strerror or exc}", "check the path"
            ) from None
        for v in parse_report(text, str(path), known):
            if v.workload not in known:
                raise InputError(
                    f"{path}: {v.workload!r} is not a workload of the inventory",
                    "name the report after the workload, or fix the CSV",
                )
            out.setdefault(v.workload, []).append(v)
    return out
