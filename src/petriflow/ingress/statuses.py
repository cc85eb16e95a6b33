"""Which HTTP status answers which petriflow error: one table for the JSON
endpoints and the console's pages alike."""

from __future__ import annotations

from petriflow.engine.errors import Invalid, PetriflowError

# An error that says which entity is missing or gone; any other invalid request is 422,
# any other PetriflowError 400; the engine not taking requests (booting) is 503.
_STATUS_BY_CODE = {
    "not_found": 404,
    "workflow_discarded": 409,
    "unauthorized": 401,
    "unavailable": 503,
    "storage_unavailable": 503,  # an outage the daemon waits out: send it again later
    "storage_full": 507,
    "turn_aborted": 503,
    "storage_failure": 503,
    "storage_broken": 500,
    "exception": 500,  # the Engine met a bug of its own
}
RETRY_LATER = frozenset({503, 507})
"""Statuses answered with `Retry-After`."""


def status_for(exc: PetriflowError) -> int:
    return _STATUS_BY_CODE.get(exc.code, 422 if isinstance(exc, Invalid) else 400)
