"""The database firewall: a PostgreSQL wire-protocol proxy that learns each client's query
shapes and tells legitimate queries from injection attempts.

Modules, one purpose each:

- :mod:`~cellwall.dbfw.protocol`: the wire protocol v3 framing and the messages it reads;
- :mod:`~cellwall.dbfw.session` and :mod:`~cellwall.dbfw.proxy`: the asyncio proxy;
- :mod:`~cellwall.dbfw.tls`: TLS termination and TLS to the server;
- :mod:`~cellwall.dbfw.classify` and :mod:`~cellwall.dbfw.indicators`: fingerprints and
  injection indicators;
- :mod:`~cellwall.dbfw.firewall`: the decision per query and mode;
- :mod:`~cellwall.dbfw.store`: the learned allow-list in the workspace, with review;
- :mod:`~cellwall.dbfw.alerts`: OCSF-style JSON-lines alerts;
- :mod:`~cellwall.dbfw.identity`: client identity from the inventory;
- :mod:`~cellwall.dbfw.demoapp`: a deliberately vulnerable application and its traffic.

docs/dbproxy.md describes the command and the rules.
"""

from __future__ import annotations

from cellwall.dbfw.alerts import Alert, AlertSink
from cellwall.dbfw.classify import Analysis, Classifier, libinjection_detector
from cellwall.dbfw.firewall import Decision, Firewall, Mode
from cellwall.dbfw.identity import ClientIdentity, SourceResolver
from cellwall.dbfw.indicators import INDICATORS, Hit, Indicator
from cellwall.dbfw.protocol import ProtocolError
from cellwall.dbfw.proxy import DbProxy, ProxyConfig, ProxyStats, parse_hostport
from cellwall.dbfw.store import FingerprintStore, LearnedFingerprint, Profiles
from cellwall.dbfw.tls import TLSConfig, UpstreamTLS

__all__ = [
    "INDICATORS",
    "Alert",
    "AlertSink",
    "Analysis",
    "Classifier",
    "ClientIdentity",
    "DbProxy",
    "Decision",
    "FingerprintStore",
    "Firewall",
    "Hit",
    "Indicator",
    "LearnedFingerprint",
    "Mode",
    "Profiles",
    "ProtocolError",
    "ProxyConfig",
    "ProxyStats",
    "SourceResolver",
    "TLSConfig",
    "UpstreamTLS",
    "libinjection_detector",
    "parse_hostport",
]
