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

import errno
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from petriflow import metrics
from petriflow.engine.errors import Invalid, StorageFailure
from petriflow.storage.backend import DuplicateKey, Turn
from petriflow.storage.errors import StorageBroken, StorageFull, StorageUnavailable
from petriflow.storage.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    TABLES,
    Condition,
    Ordering,
    Table,
    TxBase,
    quote,
    replay,
)

_HEADER = b"SQLite format 3\x00"
MAX_ROWS_PER_INSERT = 500
"""Rows of one `insert_many`: one statement, within SQLite's limit on its parameters."""
_CORRUPT_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_TRANSIENT_CODES = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_READONLY,  # a file system remounted read-only: an operator can give it back
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_INTERRUPT,
}
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024
"""Bytes of WAL file kept after a checkpoint empties it (`PRAGMA journal_size_limit`):
a burst, or the writes that piled up during an outage, do not keep their disk space."""

_inherited: list[sqlite3.Connection] = []
"""Connections this process inherited across fork: kept referenced so that
they are never used nor closed (closing runs SQLite code on the parent's state)."""


class SchemaTooNew(StorageBroken):
    """The file was written by a newer petriflow."""

    code = "schema_too_new"


class StorageCorrupt(StorageBroken):
    """The file is not a petriflow SQLite database (or is damaged)."""

    code = "storage_corrupt"


class _SqliteTx(TxBase):
    """Statements are built once per shape (`_sql`) and SQLite prepares each
    once per connection (its statement cache, sized in `_connect`)."""

    def __init__(self, conn: sqlite3.Connection, write: bool, tables: Mapping[str, Table] = TABLES) -> None:
        super().__init__(write, tables)
        self.conn = conn

    def _get(self, t: Table, id: str) -> dict[str, Any] | None:
        row = self.conn.execute(_sql("get", t, ()), (id,)).fetchone()
        return None if row is None else dict(zip(t.names, row))

    def _find(self, t: Table, conditions: list[Condition], ordering: Ordering) -> list[dict[str, Any]]:
        where, params = _where(conditions)
        direction = " DESC" if ordering.descending else ""
        keys = ["rowid"] if ordering.column is None else [quote(ordering.column), "rowid"]
        order = ", ".join(key + direction for key in keys)
        sql = f"{_sql('select', t, ())}{' WHERE ' + where if where else ''} ORDER BY {order}"
        if ordering.limit is not None or ordering.offset:
            sql += " LIMIT ? OFFSET ?"  # a limit of -1 is none
            params += [-1 if ordering.limit is None else ordering.limit, ordering.offset]
        rows = self.conn.execute(sql, params).fetchall()
        return [dict(zip(t.names, row)) for row in rows]

    def _count(self, t: Table, conditions: list[Condition]) -> int:
        where, params = _where(conditions)
        sql = f"SELECT count(*) FROM {quote(t.name)}{' WHERE ' + where if where else ''}"
        (count,) = self.conn.execute(sql, params).fetchone()
        return count

    def _insert(self, t: Table, stored: dict[str, Any]) -> None:
        self._insert_many(t, [stored])

    def _insert_many(self, t: Table, stored: list[dict[str, Any]]) -> None:
        """One `INSERT ... VALUES (...), (...)`: all rows or, on a duplicate, none."""
        if len(stored) > MAX_ROWS_PER_INSERT:
            raise ValueError(f"{t.name}: at most {MAX_ROWS_PER_INSERT} rows in one insert, got {len(stored)}")
        values = ", ".join([f"({', '.join('?' * len(t.names))})"] * len(stored))
        try:
            self.conn.execute(
                f"{_sql('insert', t, t.names)} VALUES {values}", [row[n] for row in stored for n in t.names]
            )
        except sqlite3.IntegrityError:  # the only constraint is the primary key
            raise DuplicateKey(f"{t.name} already has one of the rows {[row['id'] for row in stored]!r}") from None

    def _update(self, t: Table, id: str, stored: dict[str, Any], expect: list[Condition]) -> bool:
        where, params = _where(expect)
        sql = f"{_sql('update', t, tuple(stored))}{' AND ' + where if where else ''}"
        cursor = self.conn.execute(sql, [*stored.values(), id, *params])
        return cursor.rowcount == 1

    def _update_where(self, t: Table, conditions: list[Condition], stored: dict[str, Any]) -> int:
        where, params = _where(conditions)
        assignments = ", ".join(f"{quote(n)} = ?" for n in stored)
        cursor = self.conn.execute(
            f"UPDATE {quote(t.name)} SET {assignments} WHERE {where}", [*stored.values(), *params]
        )
        return cursor.rowcount


def _sql(kind: str, t: Table, names: tuple[str, ...]) -> str:
    """The text of a statement of one shape, built once (keyed by the
    table's name: hashing a whole `Table` costs more than building the text).
    A table as an earlier migration left it (a `Backfill` reads one) has
    other columns: its statements are built each time, never cached."""
    if TABLES.get(t.name) is not t:
        return _build_sql(kind, t, names)
    key = (kind, t.name, names)
    sql = _statements.get(key)
    if sql is None:
        sql = _statements[key] = _build_sql(kind, t, names)
    return sql


_statements: dict[tuple[str, str, tuple[str, ...]], str] = {}


def _build_sql(kind: str, t: Table, names: tuple[str, ...]) -> str:
    if kind == "select":
        return f"SELECT {', '.join(map(quote, t.names))} FROM {quote(t.name)}"
    if kind == "get":
        return f"{_sql('select', t, ())} WHERE id = ?"
    if kind == "insert":
        return f"INSERT INTO {quote(t.name)} ({', '.join(map(quote, names))})"
    assignments = ", ".join(f"{quote(n)} = ?" for n in names)
    return f"UPDATE {quote(t.name)} SET {assignments} WHERE id = ?"


def _where(conditions: list[Condition]) -> tuple[str, list[Any]]:
    """The conditions ANDed: `col IN (...)`, where a None among the values
    also matches NULL; `col <= ?`, `col >= ?`, `col < ?` for a range;
    `col LIKE ?` for a substring (ASCII case folded, as `LIKE` does)."""
    clauses, params = [], []
    for condition in conditions:
        column = quote(condition.column)
        if condition.operator == "contains":
            clauses.append(f"{column} LIKE ? ESCAPE '\\'")
            params.append(f"%{_like_escaped(condition.operand)}%")
            continue
        if condition.operator != "in":
            clauses.append(f"{column} {condition.operator} ?")
            params.append(condition.operand)
            continue
        values = [v for v in condition.operand if v is not None]
        if len(values) == 1:
            alternatives = [f"{column} = ?"]
        else:
            alternatives = [f"{column} IN ({', '.join('?' * len(values))})"] if values else []
        if len(values) < len(condition.operand):
            alternatives.append(f"{column} IS NULL")
        clauses.append(f"({' OR '.join(alternatives)})" if alternatives else "0")
        params.extend(values)
    return " AND ".join(clauses), params


def _like_escaped(text: str) -> str:
    """`text` matching itself in a `LIKE ... ESCAPE '\\'` pattern: `%`, `_` and `\\` are escaped."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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
        started = time.perf_counter()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
            conn.execute("ROLLBACK")
        raise
    metrics.observe_commit("sqlite", time.perf_counter() - started)


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
        tables = replay(m for m in MIGRATIONS if m.version <= version)
        for migration in MIGRATIONS:
            if migration.version > version:
                for step in migration.steps:
                    for statement in step.ddl():
                        conn.execute(statement)
                    step.apply(tables)
                    step.fill(_SqliteTx(conn, True, tables))
                conn.execute(
                    "INSERT INTO schema_version VALUES (?, ?, ?)",
                    (migration.version, migration.description, time.time()),
                )


def _connect(path: str, busy_timeout_s: float) -> sqlite3.Connection:
    if os.path.exists(path) and os.path.getsize(path) > 0:
        with open(path, "rb") as f:
            if f.read(len(_HEADER)) != _HEADER:
                raise StorageCorrupt(f"{path} is not a SQLite database; it was left untouched")
    conn = sqlite3.connect(
        path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False, cached_statements=512
    )
    try:
        _migrate(conn, path)
    except sqlite3.DatabaseError as exc:
        conn.close()
        if (exc.sqlite_errorcode or 0) & 0xFF in _CORRUPT_CODES:
            raise StorageCorrupt(f"{path} is damaged or not a SQLite database ({exc}); it was left untouched") from exc
        raise classify(path, exc) from exc
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

    def acquire(self, timeout_s: float) -> None:
        if self._pid != os.getpid():  # a descriptor inherited across fork shares the parent's lock
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._pid = os.getpid()
        deadline, pause = time.monotonic() + timeout_s, 0.0001
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError(f"another writer held {self.path} for {timeout_s}s")
            time.sleep(pause)
            pause = min(pause * 2, 0.001)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def holder(self) -> int | None:
        """The pid holding the lock, from the kernel's table (Linux's
        /proc/locks, which names the process that took a flock); None when
        nobody holds it or the table cannot be read."""
        try:
            device, rows = _device_and_inode(self.path), _lock_rows()
        except OSError:
            return None
        for fields in rows:
            # "1: FLOCK  ADVISORY  WRITE 4242 08:01:123456 0 EOF"; a waiter's row has "->" after the number
            if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device and fields[4].isdigit():
                return int(fields[4])
        return None


DEFAULT_BUSY_TIMEOUT_S = 30.0
"""How long a write waits for the write lock before it is an outage (`?busy_timeout=`)."""

_WAL_WRITE_LOCK = 120
"""The byte of the `-shm` file SQLite locks (POSIX) while a connection writes."""


def _lock_rows() -> list[list[str]]:
    with open("/proc/locks", encoding="ascii") as table:
        return [row.split() for row in table.read().splitlines()]


def _device_and_inode(path: str) -> str:
    info = os.stat(path)
    return f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"


def _wal_writer(path: str) -> int | None:
    """The pid holding SQLite's WAL write lock on `path`, from Linux's
    /proc/locks; None when nobody does or it cannot be read."""
    try:
        device, rows = _device_and_inode(path + "-shm"), _lock_rows()
    except OSError:
        return None
    for fields in rows:
        # "3: POSIX  ADVISORY  WRITE 4242 08:01:123456 120 120"; a waiter's row has "->" after the number
        if len(fields) >= 8 and fields[1] == "POSIX" and fields[3] == "WRITE" and fields[5] == device:
            start, end = fields[6], fields[7]
            if fields[4].isdigit() and int(start) <= _WAL_WRITE_LOCK and (end == "EOF" or int(end) >= _WAL_WRITE_LOCK):
                return int(fields[4])
    return None


SYNCHRONOUS = ("full", "normal")
"""`full` (the default): a commit returns once the WAL is on disk, so a
power cut loses nothing committed. `normal`: the WAL is synced only at
checkpoints; a power cut (not a crash of petriflow's processes) may lose the
last commits, which clients were already told of."""


class SqliteBackend:
    """A SQLite file, usable from any thread and any process that opens it.

    One connection per process, opened at construction (so a bad file fails
    at once) and again lazily in a forked child; a lock per process
    serialises its threads' transactions (and turns) on that connection."""

    def __init__(self, path: str, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, synchronous: str = "full") -> None:
        if synchronous not in SYNCHRONOUS:
            raise Invalid(f"sqlite synchronous={synchronous!r}: use one of {', '.join(SYNCHRONOUS)}")
        self.path = os.path.abspath(path)
        query = [f"synchronous={synchronous}"] if synchronous != "full" else []
        if busy_timeout_s != DEFAULT_BUSY_TIMEOUT_S:
            query.append(f"busy_timeout={busy_timeout_s:g}")
        self.url = f"sqlite://{self.path}" + (f"?{'&'.join(query)}" if query else "")
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self._locks: dict[int, threading.RLock] = {}
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._turn: Turn | None = None
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
            self._turn = None  # the parent's, if it forked mid-turn
        if self._conn is None:
            self._conn = _connect(self.path, self.busy_timeout_s)
            self._conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            self._conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            self._conn_pid = os.getpid()
        return self._conn

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[_SqliteTx]:
        with self._lock():
            conn = self._connection()
            if self._turn is not None:  # this thread's: the lock keeps others out for the whole turn
                with self._joined(self._turn, conn, write) as tx:
                    yield tx
                return
            tx = _SqliteTx(conn, write)
            try:
                if write:
                    self._writers.acquire(self.busy_timeout_s)
                try:
                    with _transaction(conn, "BEGIN IMMEDIATE" if write else None):
                        yield tx
                finally:
                    if write:
                        self._writers.release()
            except (sqlite3.Error, OSError) as exc:
                raise classify(self.path, exc) from exc
            finally:
                tx.active = False

    @contextmanager
    def _joined(self, turn: Turn, conn: sqlite3.Connection, write: bool) -> Iterator[_SqliteTx]:
        """One operation inside the turn's transaction, which it opens at the turn's first write."""
        if turn.broken is not None:  # the outage again, or TurnAborted: nothing more is tried in it
            turn.raise_if_broken(earlier=True)
        tx = _SqliteTx(conn, write)
        try:
            if write and not turn.open:
                self._writers.acquire(self.busy_timeout_s)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except BaseException:
                    self._writers.release()
                    raise
                turn.open = True
            yield tx
        except BaseException as exc:
            lost = turn.open and not conn.in_transaction  # SQLite rolled the whole transaction back
            failure = classify(self.path, exc) if isinstance(exc, (sqlite3.Error, OSError)) else exc
            if tx.writes or lost or failure is not exc or isinstance(exc, StorageUnavailable):
                turn.broke(failure)
            if failure is not exc:
                raise failure from exc
            raise
        finally:
            tx.active = False
            turn.writes += tx.writes

    @contextmanager
    def turn(self) -> Iterator[Turn]:
        with self._lock():
            conn = self._connection()
            if self._turn is not None:
                raise RuntimeError("a turn inside a turn of the same thread")
            turn = self._turn = Turn()
            try:
                yield turn
                turn.raise_if_broken()
                if turn.open:
                    try:
                        started = time.perf_counter()
                        conn.execute("COMMIT")
                    except (sqlite3.Error, OSError) as exc:
                        turn.broke(classify(self.path, exc))
                        turn.raise_if_broken()
                    metrics.observe_commit("sqlite", time.perf_counter() - started)
            finally:
                self._turn = None
                if turn.open:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    self._writers.release()

    def writer_pid(self) -> int | None:
        """SQLite's own write lock first (another program may hold it while
        our writers queue behind it), then the writers' queue."""
        return _wal_writer(self.path) or self._writers.holder()

    def checkpoint(self) -> None:
        """`wal_checkpoint(TRUNCATE)`: the log is folded into the database
        and cut to nothing, if no reader holds it back (then SQLite does
        what it can, and the next checkpoint does the rest)."""
        with self._lock():
            try:
                self._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except (sqlite3.Error, OSError) as exc:
                raise classify(self.path, exc) from exc

    def close(self) -> None:
        """Close this process's connection; a later transaction opens a new one."""
        with self._lock():
            if self._conn is not None and self._conn_pid == os.getpid():
                self._conn.close()
                self._conn = None


def classify(path: str, exc: BaseException) -> StorageFailure:
    """An SQLite or OS error as the kind the work above acts on: transient
    (`StorageUnavailable`, `StorageFull`) or permanent (`StorageBroken`)."""
    if isinstance(exc, StorageFailure):
        return exc
    message = f"SQLite could not complete a transaction on {path}: {exc}"
    if isinstance(exc, OSError):
        return StorageFull(message) if exc.errno in _FULL_ERRNOS else StorageUnavailable(message)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # raised by Python's module or by `_WriterQueue`, not by SQLite: a lock held too long
        return StorageUnavailable(message) if isinstance(exc, sqlite3.OperationalError) else StorageBroken(message)
    if code & 0xFF == sqlite3.SQLITE_FULL:
        return StorageFull(message)
    if code & 0xFF in _TRANSIENT_CODES:
        return StorageUnavailable(message)
    return StorageBroken(message)
