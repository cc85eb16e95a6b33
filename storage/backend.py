"""The behaviour a storage backend implements: tables of rows in transactions.

petriflow's domain operations (`storage.store.Storage`) are written once on
top of this small seam, so each adapter (memory, SQLite, later PostgreSQL)
only has to provide atomic transactions over the tables of `storage.schema`,
and every adapter obeys the same locking and fencing rules by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

Row = dict[str, Any]


class DuplicateKey(Exception):
    """An insert whose `id` already exists in its table."""


class Tx(Protocol):
    """One atomic unit of work: everything in it commits, or nothing does.

    `where` maps a column to a value (equality) or to a list/tuple/set of
    values (membership). Rows come back as fresh dicts: mutating them changes
    nothing stored."""

    def get(self, table: str, id: str) -> Row | None: ...

    def find(self, table: str, where: Mapping[str, Any] | None = None, order_by: str | None = None) -> list[Row]: ...

    def insert(self, table: str, row: Row) -> None: ...

    def update(self, table: str, id: str, changes: Mapping[str, Any]) -> None: ...


class Backend(Protocol):
    url: str

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """A write transaction takes the write lock at its start (SQLite's
        `BEGIN IMMEDIATE`), so concurrent writers queue instead of failing."""
        ...

    def close(self) -> None: ...


def membership(value: Any) -> Iterable[Any] | None:
    """The values of a membership condition, or None for an equality one."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return None
