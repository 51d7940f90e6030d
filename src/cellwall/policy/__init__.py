"""The policy language: load and store policy directories, judge and explain flows.

docs/policy.md describes the documents, their meaning and the diagnostics.
"""

from __future__ import annotations

from cellwall.policy.loader import LoadResult, load_policy, load_policy_texts

__all__ = [
    "LoadResult",
    "load_policy",
    "load_policy_texts",
]
