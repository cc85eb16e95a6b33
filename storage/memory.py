"""The in-process backend: for tests and simpleSystemBase, where every actor
runs in one process.

Backends opened with the same name share one database (a module-level
registry), as actors of one process opening `memory://NAME` expect. A
transaction holds the database's lock from start to end (so transactions
are isolated across threads) and undoes its changes when an exception
leaves it. Rows are stored encoded by `storage.schema` (blobs as msgpack
bytes), so nothing handed in or out aliases a stored row, and values
round-trip exactly as they do through SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from petriflow import metrics
from petriflow.storage.backend import DuplicateKey, Turn
from petriflow.storage.errors import StorageUnavailable
from petriflow.storage.schema import TABLES, Condition, Ordering, Table, TxBase

Stored = dict[str, Any]


@dataclass
class _Database:
    tables: dict[str, dict[str, Stored]] = field(default_factory=lambda: {name: {} for name in TABLES})
    lock: threading.RLock = field(default_factory=threading.RLock)
    in_transaction: bool = False
    turn: Turn | None = None  # held with the lock, so only the turn's thread sees it
    turn_undo: list[Any] = field(default_factory=list)


_registry: dict[str, _Database] = {}
_registry_lock = threading.Lock()


class _MemoryTx(TxBase):
    def __init__(self, db: _Database, write: bool) -> None:
        super().__init__(write)
        self.db = db
        self.undo: list[tuple[dict[str, Stored], str, Stored | None]] = []

    def _get(self, t: Table, id: str) -> Stored | None:
        return self.db.tables[t.name].get(id)

    def _find(self, t: Table, conditions: list[Condition], ordering: Ordering) -> list[Stored]:
        rows = self._matching(t, conditions)
        column = ordering.column
        if column is not None:  # stable: None first and ties in insertion order, as in SQLite
            rows.sort(key=lambda row: (row[column] is not None, row[column]))
        if ordering.descending:  # all of it reversed, ties too: SQLite's `DESC, rowid DESC`
            rows.reverse()
        end = None if ordering.limit is None else ordering.offset + ordering.limit
        return rows[ordering.offset : end]

    def _count(self, t: Table, conditions: list[Condition]) -> int:
        return len(self._matching(t, conditions))

    def _matching(self, t: Table, conditions: list[Condition]) -> list[Stored]:
        return [row for row in self.db.tables[t.name].values() if all(c.matches(row[c.column]) for c in conditions)]

    def _insert(self, t: Table, stored: Stored) -> None:
        self._insert_many(t, [stored])

    def _insert_many(self, t: Table, stored: list[Stored]) -> None:
        rows = self.db.tables[t.name]
        ids = [row["id"] for row in stored]
        if len(set(ids)) < len(ids) or any(id in rows for id in ids):
            raise DuplicateKey(f"{t.name} already has one of the rows {ids!r}")
        for row in stored:
            self.undo.append((rows, row["id"], None))
            rows[row["id"]] = row

    def _update(self, t: Table, id: str, stored: Stored, expect: list[Condition]) -> bool:
        rows = self.db.tables[t.name]
        row = rows.get(id)
        if row is None or not all(c.matches(row[c.column]) for c in expect):
            return False
        self.undo.append((rows, id, row))
        rows[id] = {**row, **stored}
        return True

    def _update_where(self, t: Table, conditions: list[Condition], stored: Stored) -> int:
        return sum(self._update(t, row["id"], stored, []) for row in self._matching(t, conditions))

    def rollback(self) -> None:
        self.undo_all(self.undo)

    @staticmethod
    def undo_all(undo: list[tuple[dict[str, Stored], str, Stored | None]]) -> None:
        for rows, id, previous in reversed(undo):
            if previous is None:
                del rows[id]
            else:
                rows[id] = previous


class MemoryBackend:
    """An in-process database shared by every backend opened with `name`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.url = f"memory://{name}"
        with _registry_lock:
            self._db = _registry.setdefault(name, _Database())

    @staticmethod
    def forget(name: str) -> None:
        """Drop the database `name`; backends still holding it keep their copy."""
        with _registry_lock:
            _registry.pop(name, None)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_MemoryTx]:
        db = self._db
        with db.lock:
            if db.turn is not None:
                with self._joined(db, db.turn, write) as tx:
                    yield tx
                return
            if db.in_transaction:
                raise RuntimeError(f"{self.url}: transaction inside a transaction of the same thread")
            db.in_transaction = True
            tx = _MemoryTx(db, write)
            try:
                yield tx
            except BaseException:
                tx.rollback()
                raise
            finally:
                tx.active = False
                db.in_transaction = False
            if write:  # a commit here costs nothing: counted at 0 s, so the rate of commits shows
                metrics.observe_commit("memory", 0.0)

    @staticmethod
    @contextmanager
    def _joined(db: _Database, turn: Turn, write: bool) -> Iterator[_MemoryTx]:
        if turn.broken is not None:  # the outage again, or TurnAborted: nothing more is tried in it
            turn.raise_if_broken(earlier=True)
        tx = _MemoryTx(db, write)
        turn.open = turn.open or write
        try:
            yield tx
        except BaseException as exc:
            if tx.writes or isinstance(exc, StorageUnavailable):
                turn.broke(exc)
            raise
        finally:
            tx.active = False
            turn.writes += tx.writes
            db.turn_undo.extend(tx.undo)

    @contextmanager
    def turn(self) -> Iterator[Turn]:
        db = self._db
        with db.lock:
            if db.turn is not None or db.in_transaction:
                raise RuntimeError(f"{self.url}: a turn inside a transaction of the same thread")
            turn = db.turn = Turn()
            committed = False
            try:
                yield turn
                turn.raise_if_broken()
                committed = True
                if turn.open:
                    metrics.observe_commit("memory", 0.0)
            finally:
                if not committed:
                    _MemoryTx.undo_all(db.turn_undo)
                db.turn, db.turn_undo = None, []

    def writer_pid(self) -> int | None:
        return None  # one process: nobody else waits for its lock

    def checkpoint(self) -> None:
        """No log to fold back."""

    def close(self) -> None:
        """Nothing to release: the data lives on until `forget`."""
