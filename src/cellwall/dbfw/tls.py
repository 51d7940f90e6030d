"""TLS for both legs: terminate clients with a configured certificate, and speak TLS upstream.

Terminating TLS breaks SCRAM channel binding (the client would bind to the proxy's
certificate, the server checks its own), so the session never offers ``SCRAM-SHA-256-PLUS``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cellwall.errors import UsageError

__all__ = ["TLSConfig", "UpstreamTLS"]


class UpstreamTLS(StrEnum):
    """Like libpq's ``sslmode`` for the proxy's own connection to the server."""

    DISABLE = "disable"
    PREFER = "prefer"
    REQUIRE = "require"
    VERIFY_CA = "verify-ca"
    VERIFY_FULL = "verify-full"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """``cert``/``key`` terminate client TLS; ``require_client_tls`` refuses cleartext."""

    cert: Path | None = None
    key: Path | None = None
    require_client_tls: bool = False
    upstream: UpstreamTLS = UpstreamTLS.DISABLE
    upstream_ca: Path | None = None
    upstream_server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise UsageError("--tls-cert and --tls-key go together")
        if self.require_client_tls and self.cert is None:
            raise UsageError(
                "--require-tls needs a certificate", hint="add --tls-cert FILE --tls-key FILE"
            )
        needs_ca = self.upstream in (UpstreamTLS.VERIFY_CA, UpstreamTLS.VERIFY_FULL)
        if needs_ca and self.upstream_ca is None:
            raise UsageError(f"--upstream-tls {self.upstream.value} needs --upstream-ca FILE")

    @property
    def terminates(self) -> bool:
        return self.cert is not None

    def server_context(self) -> ssl.SSLContext | None:
        if self.cert is None or self.key is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot load the TLS certificate {self.cert}: {exc}") from exc
        return ctx

    def upstream_context(self) -> ssl.SSLContext | None:
        if self.upstream is UpstreamTLS.DISABLE:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.upstream in (UpstreamTLS.VERIFY_CA, UpstreamTLS.VERIFY_FULL):
            try:
                ctx.load_verify_locations(str(self.upstream_ca))
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"cannot load the CA file {self.upstream_ca}: {exc}") from exc
            ctx.check_hostname = self.upstream is UpstreamTLS.VERIFY_FULL
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
