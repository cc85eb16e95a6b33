"""The behaviour a storage backend implements: tables of rows in transactions.

petriflow's domain operations (`storage.store.Storage`) are written once on
top of this small seam, so each adapter (memory, SQLite, later PostgreSQL)
only has to provide atomic transactions over the tables of `storage.schema`,
and every adapter obeys the same locking and fencing rules by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from petriflow.engine.errors import StorageFailure
from petriflow.storage.errors import StorageUnavailable

Row = dict[str, Any]


class DuplicateKey(Exception):
    """An insert whose `id` already exists in its table."""


class Tx(Protocol):
    """One atomic unit of work: everything in it commits, or nothing does.

    `where` maps a column to a value (equality), to a list/tuple/set of
    values (membership), to an `AtMost` or a `Between` (a range) or to a
    `Contains` (a substring). Rows come back as fresh dicts: mutating them changes
    nothing stored."""

    def get(self, table: str, id: str) -> Row | None: ...

    def find(
        self,
        table: str,
        where: Mapping[str, Any] | None = None,
        order_by: str | None = None,
        *,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Row]:
        """Rows by `order_by` (None first) then insertion order, or all of it
        reversed (`descending`: newest first, ties too); `offset` of them
        skipped and at most `limit` returned (a page)."""
        ...

    def count(self, table: str, where: Mapping[str, Any] | None = None) -> int:
        """How many rows match `where`: the size of every page together."""
        ...

    def insert(self, table: str, row: Row) -> None: ...

    def update(self, table: str, id: str, changes: Mapping[str, Any]) -> None: ...

    def update_if(self, table: str, id: str, changes: Mapping[str, Any], expect: Mapping[str, Any]) -> bool:
        """Compare-and-set: apply `changes` only if the row's columns equal
        `expect` (`UPDATE ... WHERE id = ? AND incarnation = ?`); whether it
        applied. The check and the write are one statement, so no lock of
        the caller's is needed for it (PostgreSQL's row lock does the same)."""
        ...

    def update_where(self, table: str, where: Mapping[str, Any], changes: Mapping[str, Any]) -> int:
        """Apply `changes` to every row matching `where` in one statement; how many rows."""
        ...

    def insert_many(self, table: str, rows: list[Row]) -> None:
        """Rows of one table in one statement (`executemany`)."""
        ...


class TurnAborted(StorageFailure):
    """The turn was rolled back as a whole: none of its writes is stored,
    and its node must crash, so that nothing it announced outlives them."""

    code = "turn_aborted"


@dataclass
class Turn:
    """A node's turn: the operations it runs share one transaction, which
    commits once when the turn ends. `writes` counts the rows written so
    far (the node ends a turn at a bound on it); `broken` says why the turn
    can only be rolled back: an operation failed after it had written, or
    the database gave up the transaction. `outage` is the transient
    error that broke it, if one did: the turn is then waited out and run
    again, never blamed on an entity."""

    writes: int = 0
    open: bool = False
    broken: str | None = None
    outage: StorageUnavailable | None = None

    def broke(self, exc: BaseException) -> None:
        """The turn can only be rolled back now, because of `exc`; the first
        outage seen stays the reason."""
        if self.broken is None:
            self.broken = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, StorageUnavailable) and self.outage is None:
            self.outage = exc

    def raise_if_broken(self, *, earlier: bool = False) -> None:
        """The outage that broke the turn, or `TurnAborted`: at its end, or
        (`earlier`) for an operation tried after the break."""
        if self.outage is not None:
            raise self.outage
        if self.broken is not None:
            raise TurnAborted(
                f"the turn was broken earlier: {self.broken}" if earlier else f"turn rolled back: {self.broken}"
            )


class Backend(Protocol):
    url: str

    def transaction(self, *, write: bool = True) -> AbstractContextManager[Tx]:
        """A write transaction takes the write lock at its start (SQLite's
        `BEGIN IMMEDIATE`), so concurrent writers queue instead of failing.
        Inside a turn of this thread, it joins the turn's transaction: its
        writes commit with the turn, and an exception leaving it after it
        wrote breaks the turn."""
        ...

    def turn(self) -> AbstractContextManager[Turn]:
        """Run many transactions of this thread as one, committed when the
        block ends (`StorageUnavailable` if an outage broke it or its commit,
        `TurnAborted` if anything else did: either way nothing of it is
        stored). Once broken, every operation of the turn raises the same. The write lock is
        taken at the turn's first write and held to its end; other threads
        of the process wait for the turn."""
        ...

    def writer_pid(self) -> int | None:
        """The process holding the write lock now, where the adapter can
        tell (None: nobody, or it cannot): a process silent while it waits
        for that lock is not the one that hangs."""
        ...

    def checkpoint(self) -> None:
        """Fold the write-ahead log back into the database and give back its
        disk space, where the adapter keeps one (after an outage)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class AtMost:
    """A range condition in `where`: the column holds a value, and it is at
    most `value` (`due_at <= now`: the timers due)."""

    value: Any


@dataclass(frozen=True)
class Between:
    """A half-open range in `where`: the column holds a value, at least `low`
    and below `high`; a bound left None is open (`since <= created_at <
    until`: consecutive windows share no row)."""

    low: Any = None
    high: Any = None


@dataclass(frozen=True)
class Contains:
    """A substring in `where`: the text column holds `text`, ASCII letters
    matched whatever their case and nothing else folded (SQLite's `LIKE`);
    `%`, `_` and `\\` are plain characters."""

    text: str


def membership(value: Any) -> Iterable[Any] | None:
    """The values of a membership condition, or None for an equality one."""
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return None
