"""Least-privilege rule proposals from the dependency map, with evidence (issue 6).

:func:`propose` turns the map's workload-level edges into proposed policies
(:class:`Proposal`); :mod:`.render` writes them as policy YAML with the evidence in
comments; :mod:`.compare`, :mod:`.incremental` and :mod:`.seasonality` build on it.
"""

from cellwall.recommend.model import (
    GRANULARITIES,
    Evidence,
    Exclusion,
    Proposal,
    ProposedPolicy,
    ProposedRule,
    RecommendConfig,
)
from cellwall.recommend.propose import propose
from cellwall.recommend.render import proposal_files, write_proposal

__all__ = [
    "GRANULARITIES",
    "Evidence",
    "Exclusion",
    "Proposal",
    "ProposedPolicy",
    "ProposedRule",
    "RecommendConfig",
    "proposal_files",
    "propose",
    "write_proposal",
]
