"""The storage layer's half of waiting out an outage: real SQLite errors
are classified as transient (`StorageUnavailable`, `StorageFull`) or
permanent (`StorageBroken`); a turn broken by an outage ends with that
outage, not a generic abort; the write-ahead log is given back after it;
and the pauses between tries follow a capped exponential back-off."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
import time

import pytest

from petriflow.engine.errors import Invalid
from petriflow.engine.outage import Outage
from petriflow.storage import open_backend
from petriflow.storage.backend import TurnAborted
from petriflow.storage.errors import StorageBroken, StorageFull, StorageUnavailable
from petriflow.storage.sqlite import SchemaTooNew, StorageCorrupt, classify
from petriflow.storage.store import WorkOrderStorage

pytestmark = pytest.mark.timeout(60)


def _token(n: int) -> dict:
    return {"id": f"t{n}", "case_id": "c1", "place_id": "p", "payload": {}, "state": "free"}


def _sqlite_error(path, *statements: str) -> sqlite3.Error:
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the statements did not fail")


def test_a_full_database_is_storage_full(tmp_path):
    """SQLite's own SQLITE_FULL, as a full disk gives it (a page limit here, no root needed)."""
    path = str(tmp_path / "full.db")
    sqlite3.connect(path).execute("CREATE TABLE t (x BLOB)").connection.close()
    exc = _sqlite_error(path, "PRAGMA max_page_count = 3", "INSERT INTO t VALUES (zeroblob(100000))")
    failure = classify(path, exc)
    assert type(failure) is StorageFull and failure.code == "storage_full" and "full" in failure.message


def test_a_database_busy_past_its_timeout_is_unavailable(tmp_path):
    path = str(tmp_path / "busy.db")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        exc = _sqlite_error(path, "BEGIN IMMEDIATE")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert type(classify(path, exc)) is StorageUnavailable


@pytest.mark.parametrize(
    "error, kind",
    [(errno.ENOSPC, StorageFull), (errno.EDQUOT, StorageFull), (errno.EIO, StorageUnavailable)],
)
def test_os_errors_are_transient_and_a_full_disk_says_so(error, kind):
    assert type(classify("/x.db", OSError(error, os.strerror(error)))) is kind


def test_what_no_retry_fixes_is_broken(tmp_path):
    path = str(tmp_path / "bug.db")
    constraint = _sqlite_error(path, "CREATE TABLE t (x NOT NULL)", "INSERT INTO t VALUES (NULL)")
    missing = _sqlite_error(path, "SELECT * FROM no_such_table")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x00" * 4096)
    not_a_db = _sqlite_error(str(garbage), "SELECT * FROM sqlite_master")
    assert [type(classify(path, exc)) for exc in (constraint, missing, not_a_db)] == [StorageBroken] * 3
    assert issubclass(StorageCorrupt, StorageBroken) and issubclass(SchemaTooNew, StorageBroken)


def _hold_the_write_lock(path: str, seconds: float) -> subprocess.Popen:
    """Another program writing the database: it holds SQLite's write lock."""
    script = (
        "import sqlite3, sys, time\n"
        "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute('INSERT INTO storage_probes VALUES (\"outsider\", 0, 0)')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    locker = subprocess.Popen([sys.executable, "-c", script, path, str(seconds)], stdout=subprocess.PIPE, text=True)
    assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
    return locker


def test_a_database_locked_by_another_process_is_an_outage_that_ends_when_it_lets_go(tmp_path):
    path = str(tmp_path / "petriflow.db")
    backend = open_backend(f"sqlite://{path}?busy_timeout=0.3")
    store = WorkOrderStorage(backend)
    locker = _hold_the_write_lock(path, 30)
    try:
        assert backend.writer_pid() == locker.pid  # the heartbeats spare the daemon's waiting writers
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="locked|busy|held"):
            store.probe("engine", os.getpid())
        assert time.monotonic() - started < 5
        with pytest.raises(StorageUnavailable):
            with backend.turn():
                with backend.transaction() as tx:
                    tx.insert("tokens", _token(1))
    finally:
        locker.kill()
        locker.wait()
    store.probe("engine", os.getpid())  # the same write goes through once the lock is free
    with backend.transaction(write=False) as tx:
        assert tx.get("tokens", "t1") is None and tx.get("storage_probes", "engine")["pid"] == os.getpid()
    backend.close()


@pytest.mark.parametrize("inner", ["memory", "sqlite"])
def test_a_turn_broken_by_an_outage_ends_with_the_outage_and_stores_nothing(tmp_path, inner):
    flag = tmp_path / "flag"
    base = f"memory://outage-{os.getpid()}-{time.monotonic_ns()}" if inner == "memory" else f"sqlite:///{tmp_path}/t.db"
    backend = open_backend(f"faulty+{base}#{flag}")
    with pytest.raises(StorageUnavailable, match="simulated disk I/O error") as ended:
        with backend.turn() as turn:
            with backend.transaction() as tx:
                tx.insert("tokens", _token(1))
            flag.write_text("*\n")
            with pytest.raises(StorageUnavailable):
                with backend.transaction() as tx:
                    tx.insert("tokens", _token(2))
            flag.unlink()
            with pytest.raises(StorageUnavailable):  # nothing more is tried in a broken turn
                with backend.transaction() as tx:
                    tx.insert("tokens", _token(3))
            assert turn.outage is not None
    assert not isinstance(ended.value, TurnAborted)
    with backend.transaction(write=False) as tx:
        assert tx.find("tokens") == []
    backend.close()


def test_a_full_disk_line_and_a_broken_line_fail_writes_with_their_kind(tmp_path):
    flag = tmp_path / "flag"
    backend = open_backend(f"faulty+memory://kinds-{os.getpid()}#{flag}")
    store = WorkOrderStorage(backend)
    for line, kind in (("full *", StorageFull), ("broken *", StorageBroken), ("*", StorageUnavailable)):
        flag.write_text(line + "\n")
        with pytest.raises(kind) as refused:
            store.probe("engine", 1)  # not a case's row: `*` fails every write
        assert type(refused.value) is kind
    flag.unlink()
    store.probe("engine", 1)


def test_the_write_ahead_log_is_given_back_at_a_checkpoint(tmp_path):
    path = tmp_path / "petriflow.db"
    backend = open_backend(f"sqlite://{path}")
    with backend.transaction() as tx:
        tx.insert_many("tokens", [_token(n) for n in range(200)])
    wal = tmp_path / "petriflow.db-wal"
    assert wal.stat().st_size > 0
    backend.checkpoint()
    assert wal.stat().st_size == 0
    with backend.transaction(write=False) as tx:
        assert len(tx.find("tokens")) == 200
    backend.close()


def test_the_busy_timeout_is_a_url_option_that_each_process_opens_again(tmp_path):
    backend = open_backend(f"sqlite://{tmp_path}/a.db?busy_timeout=1.5")
    assert backend.busy_timeout_s == 1.5 and backend.url == f"sqlite://{tmp_path}/a.db?busy_timeout=1.5"
    assert open_backend(backend.url).busy_timeout_s == 1.5
    for bad in ("0", "-1", "soon", "99999"):
        with pytest.raises(Invalid, match="busy_timeout"):
            open_backend(f"sqlite://{tmp_path}/b.db?busy_timeout={bad}")


def test_the_pauses_double_from_a_tenth_of_a_second_up_to_thirty():
    outage = Outage()
    assert outage.failed("storage_full", "disk full", now=1000.0) is True
    assert outage.failed("storage_full", "still full", now=1000.1) is False  # one outage: logged once
    pauses = [outage.next_pause_s() for _ in range(12)]
    assert pauses[:4] == [0.1, 0.2, 0.4, 0.8] and pauses[-1] == 30.0 and max(pauses) == 30.0
    assert (outage.reason, outage.tries) == ("still full", 12)
    assert outage.recovered(now=1060.0) == 60.0 and not outage.down
    outage.failed("storage_unavailable", "flapping", now=1070.0)  # soon after: the pause goes on from where it was
    assert outage.next_pause_s() == 30.0
    outage.recovered(now=1071.0)
    outage.failed("storage_unavailable", "much later", now=2000.0)
    assert outage.next_pause_s() == 0.1


def test_an_outage_ends_at_the_second_write_through_and_a_failure_between_is_the_same_outage():
    """A full disk may take a small write into space it had given and refuse the next."""
    outage = Outage()
    outage.failed("storage_full", "disk full", now=10.0)
    assert outage.refusing
    assert outage.succeeded(now=11.0) is None and outage.down and not outage.refusing  # writes are tried again
    assert outage.failed("storage_full", "full again", now=11.5) is False and outage.refusing  # no new outage
    assert outage.succeeded(now=12.0) is None
    assert outage.succeeded(now=13.0) == 3.0 and not outage.down
    assert outage.succeeded(now=14.0) is None  # nothing to end
