"""The SQLite backend: one file, WAL, shared by every actor process.

Write transactions begin with `BEGIN IMMEDIATE`, so concurrent writers queue
on the busy timeout instead of failing halfway. Before that, the processes'
writers queue on a lock file beside the database (`<file>-writers`, see
`_WriterQueue`): SQLite's busy handler sleeps 1, 2, 5, 10 ms and more
between tries, far longer than a write transaction holds the lock. Each process opens its own
connection: a connection inherited across fork is never used (SQLite forbids
it and it corrupts files), nor closed; the first use in the child opens a
fresh one. The schema is versioned; opening a file migrates it up to
`SCHEMA_VERSION` in one transaction, and a file this code cannot read is
refused without writing a byte to it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from petriflow.engine.errors import PetriflowError, StorageFailure
from petriflow.storage.backend import DuplicateKey
from petriflow.storage.schema import MIGRATIONS, SCHEMA_VERSION, Condition, Table, TxBase, quote

_HEADER = b"SQLite format 3\x00"
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}

_inherited: list[sqlite3.Connection] = []
"""Connections this process inherited across fork: kept referenced so that
they are never used nor closed (closing runs SQLite code on the parent's state)."""


class SchemaTooNew(PetriflowError):
    """The file was written by a newer petriflow."""

    code = "schema_too_new"


class StorageCorrupt(PetriflowError):
    """The file is not a petriflow SQLite database (or is damaged)."""

    code = "storage_corrupt"


class _SqliteTx(TxBase):
    def __init__(self, conn: sqlite3.Connection, write: bool) -> None:
        super().__init__(write)
        self.conn = conn

    def _select(self, t: Table) -> str:
        return f"SELECT {', '.join(map(quote, t.names))} FROM {quote(t.name)}"

    def _get(self, t: Table, id: str) -> dict[str, Any] | None:
        row = self.conn.execute(f"{self._select(t)} WHERE id = ?", (id,)).fetchone()
        return None if row is None else dict(zip(t.names, row))

    def _find(self, t: Table, conditions: list[Condition], order_by: str | None) -> list[dict[str, Any]]:
        clauses, params = [], []
        for condition in conditions:
            values = [v for v in condition.values if v is not None]
            column = quote(condition.column)
            alternatives = [f"{column} IN ({', '.join('?' * len(values))})"] if values else []
            if len(values) < len(condition.values):
                alternatives.append(f"{column} IS NULL")
            clauses.append(f"({' OR '.join(alternatives)})" if alternatives else "0")
            params.extend(values)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = f"{quote(order_by)}, rowid" if order_by else "rowid"
        rows = self.conn.execute(f"{self._select(t)}{where} ORDER BY {order}", params).fetchall()
        return [dict(zip(t.names, row)) for row in rows]

    def _insert(self, t: Table, stored: dict[str, Any]) -> None:
        names = list(stored)
        try:
            self.conn.execute(
                f"INSERT INTO {quote(t.name)} ({', '.join(map(quote, names))}) VALUES ({', '.join('?' * len(names))})",
                [stored[n] for n in names],
            )
        except sqlite3.IntegrityError:  # the only constraint is the primary key
            raise DuplicateKey(f"{t.name} already has a row {stored['id']!r}") from None

    def _update(self, t: Table, id: str, stored: dict[str, Any]) -> bool:
        assignments = ", ".join(f"{quote(n)} = ?" for n in stored)
        cursor = self.conn.execute(f"UPDATE {quote(t.name)} SET {assignments} WHERE id = ?", [*stored.values(), id])
        return cursor.rowcount == 1


@contextmanager
def _transaction(conn: sqlite3.Connection, begin: str | None) -> Iterator[None]:
    """Commit when the block ends, roll back when an exception leaves it."""
    if conn.in_transaction:
        raise RuntimeError("transaction inside a transaction of the same thread")
    if begin is None:  # a read: each SELECT reads one consistent WAL snapshot on its own
        yield
        return
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            conn.execute("ROLLBACK")
        raise


def _schema_version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version: 0 for a new (empty) file."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        if tables:
            raise StorageCorrupt(
                f"{path} is a SQLite database but not petriflow's (it has no schema_version "
                f"table); it was left untouched"
            )
        return 0
    (version,) = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{path} has schema version {version} but this petriflow knows versions up to "
            f"{SCHEMA_VERSION}: upgrade petriflow to open it; the file was left untouched"
        )
    return version


def _migrate(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file up to SCHEMA_VERSION, all or nothing."""
    with _transaction(conn, "BEGIN"):
        version = _schema_version(conn, path)
    conn.execute("PRAGMA journal_mode = WAL")  # after the checks: a refused file is not written to
    if version == SCHEMA_VERSION:
        return
    with _transaction(conn, "BEGIN IMMEDIATE"):
        version = _schema_version(conn, path)  # another process may have migrated meanwhile
        if version == 0:
            conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT, applied_at REAL)")
        for migration in MIGRATIONS:
            if migration.version > version:
                for step in migration.steps:
                    for statement in step.ddl():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    (migration.version, migration.description, time.time()),
                )


def _connect(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as f:
            if f.read(len(_HEADER)) != _HEADER:
                raise StorageCorrupt(f"{path} is not a SQLite database; it was left untouched")
    conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if exc.sqlite_errorcode & 0xFF in _CORRUPT_CODES:
            raise StorageCorrupt(f"{path} is damaged or not a SQLite database ({exc}); it was left untouched") from exc
        raise
    except BaseException:
        conn.close()
        raise
    return conn


class _WriterQueue:
    """An advisory lock (flock) the processes writing one file take before
    `BEGIN IMMEDIATE`. Waiting writers poll it every 0.1 ms to 1 ms, so the
    next one starts as soon as the lock is free; a process that dies holding
    it releases it with its file descriptor. Taken per process (its threads
    already queue on the backend's own lock)."""

    def __init__(self, path: str) -> None:
        self.path = path + "-writers"
        self._fd = -1
        self._pid = 0

    @contextmanager
    def held(self, timeout_s: float) -> Iterator[None]:
        if self._pid != os.getpid():  # a descriptor inherited across fork shares the parent's lock
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        deadline, pause = time.monotonic() + timeout_s, 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"another writer held {self.path} for {timeout_s}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.001)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class SqliteBackend:
    """A SQLite file, usable from any thread and any process that opens it.

    One connection per process, opened at construction (so a bad file fails
    at once) and again lazily in a forked child; a lock per process
    serialises its threads' transactions on that connection."""

    def __init__(self, path: str, *, busy_timeout_s: float = 30.0) -> None:
        self.path = os.path.abspath(path)
        self.url = f"sqlite://{self.path}"
        self.busy_timeout_s = busy_timeout_s
        self._locks: dict[int, threading.RLock] = {}
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._writers = _WriterQueue(self.path)
        with self._lock():
            self._connection()

    def _lock(self) -> threading.RLock:
        """This process's lock: a forked child never waits on its parent's
        (which it may have inherited held). `setdefault` is atomic."""
        pid = os.getpid()
        return self._locks.get(pid) or self._locks.setdefault(pid, threading.RLock())

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._conn_pid != os.getpid():
            _inherited.append(self._conn)
            self._conn = None
        if self._conn is None:
            self._conn = _connect(self.path, self.busy_timeout_s)
            self._conn_pid = os.getpid()
        return self._conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_SqliteTx]:
        with self._lock():
            conn = self._connection()
            tx = _SqliteTx(conn, write)
            try:
                with self._writers.held(self.busy_timeout_s) if write else contextlib.nullcontext():
                    with _transaction(conn, "BEGIN IMMEDIATE" if write else None):
                        yield tx
            except (sqlite3.OperationalError, OSError) as exc:
                raise StorageFailure(f"SQLite could not complete a transaction on {self.path}: {exc}") from exc
            finally:
                tx.active = False

    def close(self) -> None:
        """Close this process's connection; a later transaction opens a new one."""
        with self._lock():
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
                self._conn = None
