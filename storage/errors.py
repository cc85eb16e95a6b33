"""What a storage error means for the work on it: wait it out, or stop.

Every adapter turns its own errors into one of two kinds, so the actors
above decide without knowing SQLite (or PostgreSQL) codes:

- `StorageUnavailable`, transient: the disk is full, a write hit an I/O
  error, the database stayed busy past its timeout, a connection was lost.
  Nothing of the failed write is stored; the same write succeeds once the
  outage is over, so the work pauses and retries (`engine.outage`) and no
  entity changes state because of it. `StorageFull` is the full-disk case,
  which HTTP answers 507 rather than 503.
- `StorageBroken`, permanent: a corrupt file, a schema from a newer
  petriflow, a constraint violation that reveals a bug. Retrying cannot
  help; the entity that hit it crashes as for any other bug.
"""

from __future__ import annotations

from petriflow.engine.errors import StorageFailure


class StorageUnavailable(StorageFailure):
    """Storage cannot take writes now; it is expected to come back."""

    code = "storage_unavailable"


class StorageFull(StorageUnavailable):
    """The disk (or quota) under the database is full."""

    code = "storage_full"


class StorageBroken(StorageFailure):
    """Storage answered in a way no retry can fix."""

    code = "storage_broken"
