"""The review workflow: draft → proposed → approved → active → retired (issue 6).

:mod:`.model` holds the states, transitions and who may do what; :mod:`.store` the state in
the workspace database; :mod:`.files` the YAML export and import.
"""

from cellwall.review.model import (
    STATES,
    TRANSITIONS,
    Actor,
    ConflictError,
    PermissionDeniedError,
    actor_roles,
    check_may,
)
from cellwall.review.store import Event, ReviewStore, RuleRecord

__all__ = [
    "STATES",
    "TRANSITIONS",
    "Actor",
    "ConflictError",
    "Event",
    "PermissionDeniedError",
    "ReviewStore",
    "RuleRecord",
    "actor_roles",
    "check_may",
]
