"""Evidence beside the flows: facts that name or explain addresses (DNS answers)."""

from __future__ import annotations

from cellwall.evidence.dns import DNS_SCHEMA, dns_rows, names_for, names_in, scan_dns

__all__ = ["DNS_SCHEMA", "dns_rows", "names_for", "names_in", "scan_dns"]
