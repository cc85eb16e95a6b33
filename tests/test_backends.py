"""The backend seam: one suite run against both adapters, then what only SQLite has
(a file: WAL, schema versions, refusal of foreign files, fork and process safety)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import re
import sqlite3
import threading

import pytest

from petriflow.engine.errors import Invalid, StorageFailure
from petriflow.engine.records import new_id
from petriflow.engine.states import TokenState
from petriflow.storage import open_backend, schema
from petriflow.storage.backend import AtMost, Backend, DuplicateKey
from petriflow.storage.memory import MemoryBackend
from petriflow.storage.sqlite import SchemaTooNew, SqliteBackend, StorageCorrupt

pytestmark = pytest.mark.timeout(30)

FORK = multiprocessing.get_context("fork")


@pytest.fixture
def backend(url):
    opened = open_backend(url)
    yield opened
    opened.close()


def token(case_id: str = "c1", state: str = "free", **extra) -> dict:
    return {
        "id": new_id(),
        "case_id": case_id,
        "workflow_id": "wf",
        "place_id": "p",
        "state": state,
        "payload": {},
        "created_at": 1.0,
        **extra,
    }


def insert(backend: Backend, table: str, *rows: dict) -> None:
    with backend.transaction() as tx:
        for row in rows:
            tx.insert(table, row)


def ids(rows: list[dict]) -> list[str]:
    return [row["id"] for row in rows]


# -- both adapters -------------------------------------------------------------


def test_get_returns_every_column_and_none_for_a_missing_id(backend):
    row = token()
    insert(backend, "tokens", row)
    with backend.transaction(write=False) as tx:
        got = tx.get("tokens", row["id"])
        assert tx.get("tokens", "nope") is None
    assert got == {**{name: None for name in schema.TABLES["tokens"].names}, **row}


def test_find_filters_by_equality_membership_and_null_and_orders(backend):
    a = token("c1", "free", created_at=3.0)
    b = token("c1", "locked", created_at=1.0, locked_by_task_id="t1")
    c = token("c2", "free", created_at=2.0)
    d = token("c1", "consumed", created_at=None)
    insert(backend, "tokens", a, b, c, d)
    with backend.transaction(write=False) as tx:
        assert ids(tx.find("tokens")) == ids([a, b, c, d])  # insertion order by default
        assert ids(tx.find("tokens", {})) == ids([a, b, c, d])
        assert ids(tx.find("tokens", {"case_id": "c1"})) == ids([a, b, d])
        assert ids(tx.find("tokens", {"case_id": "c1", "state": ["free", "locked"]}, order_by="created_at")) == ids(
            [b, a]
        )
        assert ids(tx.find("tokens", {"state": TokenState.FREE})) == ids([a, c])
        assert ids(tx.find("tokens", {"state": ("consumed",)})) == ids([d])
        assert ids(tx.find("tokens", {"state": {"nope"}})) == []
        assert tx.find("tokens", {"state": []}) == []
        assert ids(tx.find("tokens", {"case_id": "c1", "locked_by_task_id": None})) == ids([a, d])
        assert ids(tx.find("tokens", {"locked_by_task_id": ["t1", None]})) == ids([a, b, c, d])
        assert ids(tx.find("tokens", order_by="created_at")) == ids([d, b, c, a])  # None first


def test_find_and_update_where_take_an_at_most_range_that_skips_nulls(backend):
    early, late, never = token("c1", created_at=1.0), token("c1", created_at=5.0), token("c1", created_at=None)
    insert(backend, "tokens", early, late, never)
    with backend.transaction(write=False) as tx:
        assert ids(tx.find("tokens", {"created_at": AtMost(1.0)})) == ids([early]), "at most: inclusive"
        assert ids(tx.find("tokens", {"case_id": "c1", "created_at": AtMost(9.0)})) == ids([early, late])
        assert tx.find("tokens", {"created_at": AtMost(0.5)}) == []
    with backend.transaction() as tx:
        assert tx.update_where("tokens", {"created_at": AtMost(2.0)}, {"state": "locked"}) == 1
        assert ids(tx.find("tokens", {"state": "locked"})) == ids([early])
        with pytest.raises(ValueError, match="AtMost needs a value"):
            tx.find("tokens", {"created_at": AtMost(None)})


def test_order_by_breaks_ties_by_insertion_order(backend):
    rows = [token(created_at=float(i % 2)) for i in range(6)]
    insert(backend, "tokens", *rows)
    with backend.transaction(write=False) as tx:
        assert ids(tx.find("tokens", order_by="created_at")) == ids(rows[0::2] + rows[1::2])


def test_update_changes_only_the_named_columns(backend):
    row = token(payload={"n": 1})
    insert(backend, "tokens", row)
    with backend.transaction() as tx:
        tx.update("tokens", row["id"], {"state": TokenState.LOCKED, "locked_by_task_id": "t9"})
        tx.update("tokens", row["id"], {})
        with pytest.raises(KeyError):
            tx.update("tokens", "nope", {"state": "free"})
        with pytest.raises(KeyError):
            tx.update("tokens", "nope", {})
        with pytest.raises(ValueError, match="primary key"):
            tx.update("tokens", row["id"], {"id": "other"})
    with backend.transaction(write=False) as tx:
        got = tx.get("tokens", row["id"])
        assert (got["state"], got["locked_by_task_id"], got["payload"]) == ("locked", "t9", {"n": 1})
        assert ids(tx.find("tokens", {"state": "locked"})) == [row["id"]]


def test_duplicate_key_is_refused_and_the_transaction_goes_on(backend):
    row = token(place_id="first")
    other = token()
    insert(backend, "tokens", row)
    with backend.transaction() as tx:
        with pytest.raises(DuplicateKey):
            tx.insert("tokens", {**row, "place_id": "second"})
        tx.insert("tokens", other)
    with backend.transaction(write=False) as tx:
        assert tx.get("tokens", row["id"])["place_id"] == "first"
        assert tx.get("tokens", other["id"]) is not None


def test_an_exception_rolls_back_every_change_of_the_transaction(backend):
    kept = token()
    insert(backend, "tokens", kept)
    new = token()
    with pytest.raises(ZeroDivisionError):
        with backend.transaction() as tx:
            tx.insert("tokens", new)
            tx.update("tokens", kept["id"], {"state": "locked"})
            tx.update("tokens", new["id"], {"state": "consumed"})
            raise ZeroDivisionError  # anything raised inside rolls the transaction back
    with backend.transaction(write=False) as tx:
        assert tx.get("tokens", new["id"]) is None
        assert tx.get("tokens", kept["id"])["state"] == "free"
    insert(backend, "tokens", new)  # the backend is usable after a rollback


@pytest.mark.parametrize(
    "value",
    [
        None,
        {},
        [],
        {"nested": {"list": [1, 2.5, "three", None, True], "map": {"k": [{"deep": b"bytes"}]}}},
        {"unicode": "héllo wörld ✓ 日本語 🎉", "ключ": "значение"},
        {1: "int key"},
        [1, [2, [3]]],
        "text",
        42,
    ],
)
def test_blob_columns_round_trip(backend, value):
    row = token(payload=value)
    insert(backend, "tokens", row)
    with backend.transaction(write=False) as tx:
        assert tx.get("tokens", row["id"])["payload"] == value


def test_tuples_come_back_as_lists_in_both_adapters(backend):
    row = token(payload={"pair": (1, 2)})
    insert(backend, "tokens", row)
    with backend.transaction(write=False) as tx:
        assert tx.get("tokens", row["id"])["payload"] == {"pair": [1, 2]}


def test_bool_columns_come_back_as_bools(backend):
    rows = [{"id": new_id(), "task_id": "t", "awaiting": flag, "attempt": 0} for flag in (True, False, None)]
    insert(backend, "workitems", *rows)
    with backend.transaction(write=False) as tx:
        got = [tx.get("workitems", row["id"])["awaiting"] for row in rows]
        assert ids(tx.find("workitems", {"awaiting": True})) == [rows[0]["id"]]
    assert got == [True, False, None] and type(got[0]) is bool and type(got[1]) is bool


def test_a_returned_row_is_a_copy(backend):
    row = token(payload={"items": [1]})
    insert(backend, "tokens", row)
    row["payload"]["items"].append("changed after insert")
    with backend.transaction() as tx:
        got = tx.get("tokens", row["id"])
        got["state"] = "mutated"
        got["payload"]["items"].append(2)
        tx.find("tokens")[0]["payload"]["items"].append(3)
    with backend.transaction(write=False) as tx:
        assert tx.get("tokens", row["id"])["state"] == "free"
        assert tx.get("tokens", row["id"])["payload"] == {"items": [1]}


def test_bad_tables_columns_and_values_are_refused(backend):
    with backend.transaction() as tx:
        with pytest.raises(ValueError, match="no table"):
            tx.get("nope", "x")
        with pytest.raises(ValueError, match="no column"):
            tx.insert("tokens", {**token(), "colour": "red"})
        with pytest.raises(ValueError, match="text `id`"):
            tx.insert("tokens", {"case_id": "c"})
        with pytest.raises(ValueError, match="no column"):
            tx.find("tokens", {"colour": "red"})
        with pytest.raises(ValueError, match="blob"):
            tx.find("tokens", order_by="payload")
        with pytest.raises(TypeError):
            tx.insert("tokens", token(created_at="yesterday"))
        with pytest.raises(TypeError):
            tx.insert("workitems", {"id": new_id(), "attempt": True})
        with pytest.raises(TypeError):
            tx.insert("tokens", token(payload={"not msgpack": object()}))
        assert tx.find("tokens") == []


def test_a_read_transaction_refuses_writes(backend):
    with backend.transaction(write=False) as tx:
        with pytest.raises(RuntimeError, match="read transaction"):
            tx.insert("tokens", token())


def test_a_transaction_is_unusable_after_its_block_and_cannot_nest(backend):
    with backend.transaction() as tx:
        with pytest.raises(RuntimeError, match="inside a transaction"):
            with backend.transaction():
                pass
        tx.insert("tokens", token())  # the outer transaction is untouched
    with pytest.raises(RuntimeError, match="after its `with` block"):
        tx.find("tokens")
    with backend.transaction(write=False) as tx:
        assert len(tx.find("tokens")) == 1


def _increment(url: str, times: int) -> None:
    backend = open_backend(url)
    for _ in range(times):
        with backend.transaction() as tx:
            count = tx.get("workitems", "counter")["attempt"]
            tx.update("workitems", "counter", {"attempt": count + 1})
    backend.close()


def test_threads_with_their_own_backends_are_isolated(url, backend):
    insert(backend, "workitems", {"id": "counter", "attempt": 0})
    threads = [threading.Thread(target=_increment, args=(url, 50)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with backend.transaction(write=False) as tx:
        assert tx.get("workitems", "counter")["attempt"] == 200


# -- URLs and the memory registry -----------------------------------------------


def test_open_backend_by_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert isinstance(open_backend("memory://urls"), MemoryBackend)
    MemoryBackend.forget("urls")
    for url, path in [
        (f"sqlite://{tmp_path}/a.db", tmp_path / "a.db"),
        ("sqlite://b.db", tmp_path / "b.db"),
        ("c.db", tmp_path / "c.db"),
    ]:
        opened = open_backend(url)
        assert isinstance(opened, SqliteBackend) and path.exists()
        assert opened.url == f"sqlite://{path}"  # absolute: valid from any working directory
        opened.close()
    for bad in ["postgres://x/y", "memory://", "sqlite://", "notes.txt"]:
        with pytest.raises(Invalid, match=re.escape(repr(bad))):
            open_backend(bad)


def test_memory_backends_of_one_name_share_tables_until_forgotten():
    first, second, other = MemoryBackend("shared"), MemoryBackend("shared"), MemoryBackend("other")
    try:
        insert(first, "tokens", token())
        for backend, count in [(second, 1), (other, 0)]:
            with backend.transaction(write=False) as tx:
                assert len(tx.find("tokens")) == count
        MemoryBackend.forget("shared")
        with MemoryBackend("shared").transaction(write=False) as tx:
            assert tx.find("tokens") == []
    finally:
        MemoryBackend.forget("shared")
        MemoryBackend.forget("other")


# -- SQLite only ----------------------------------------------------------------


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "petriflow.db")


def _raw(path: str) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_sqlite_file_is_in_wal_mode_and_versioned(db_path):
    SqliteBackend(db_path).close()
    conn = _raw(db_path)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("SELECT version, description FROM schema_version ORDER BY version").fetchall() == [
        (m.version, m.description) for m in schema.MIGRATIONS
    ]
    assert schema.SCHEMA_VERSION == schema.MIGRATIONS[-1].version
    conn.close()


def test_sqlite_reopen_keeps_the_data(db_path):
    row = token(payload={"kept": ["yes"]})
    first = SqliteBackend(db_path)
    insert(first, "tokens", row)
    first.close()
    again = SqliteBackend(db_path)
    with again.transaction(write=False) as tx:
        assert tx.get("tokens", row["id"])["payload"] == {"kept": ["yes"]}
    again.close()


def test_sqlite_migrates_a_version_1_file_at_open(db_path, monkeypatch):
    with monkeypatch.context() as old_petriflow:
        old_petriflow.setattr("petriflow.storage.sqlite.MIGRATIONS", schema.MIGRATIONS[:1])
        old_petriflow.setattr("petriflow.storage.sqlite.SCHEMA_VERSION", 1)
        first = SqliteBackend(db_path)
        conn = _raw(db_path)
        conn.execute("INSERT INTO cases (id, state) VALUES ('old-case', 'active')")
        conn.close()
        first.close()
    migrated = SqliteBackend(db_path)
    with migrated.transaction(write=False) as tx:
        old = tx.get("cases", "old-case")
        assert (old["state"], old["work_order_id"], old["run_id"]) == ("active", None, None)
        assert tx.find("work_orders") == []
    migrated.close()
    conn = _raw(db_path)
    assert [v for (v,) in conn.execute("SELECT version FROM schema_version ORDER BY version")] == [
        m.version for m in schema.MIGRATIONS
    ]
    conn.close()


def test_sqlite_refuses_a_file_from_a_newer_petriflow_without_writing(db_path):
    SqliteBackend(db_path).close()
    conn = _raw(db_path)
    conn.execute("INSERT INTO schema_version VALUES (7, 'from the future', 0)")
    conn.close()
    before = open(db_path, "rb").read()
    with pytest.raises(SchemaTooNew, match=rf"version 7.*up to {schema.SCHEMA_VERSION}.*upgrade petriflow"):
        SqliteBackend(db_path)
    assert open(db_path, "rb").read() == before


@pytest.mark.parametrize(
    "content", [b"this is not a database\n" * 100, b"\x00" * 4096, b"SQLite format 3\x00" + b"\xff" * 4080]
)
def test_sqlite_refuses_a_garbage_file_without_writing(db_path, content):
    with open(db_path, "wb") as f:
        f.write(content)
    with pytest.raises(StorageCorrupt, match="not a SQLite database.*left untouched"):
        SqliteBackend(db_path)
    assert open(db_path, "rb").read() == content


def test_sqlite_refuses_a_foreign_sqlite_database_without_writing(db_path):
    conn = _raw(db_path)
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.close()
    before = open(db_path, "rb").read()
    with pytest.raises(StorageCorrupt, match="not petriflow's"):
        SqliteBackend(db_path)
    assert open(db_path, "rb").read() == before


def _use_inherited(backend: SqliteBackend, parent_conn_id: int, parent_row: str) -> None:
    with backend.transaction() as tx:
        assert tx.get("tokens", parent_row) is not None
        tx.insert("tokens", token(case_id="child"))
    assert id(backend._conn) != parent_conn_id and backend._conn_pid == os.getpid()


def test_a_forked_child_opens_its_own_connection_and_the_parent_goes_on(db_path):
    backend = SqliteBackend(db_path)
    row = token(case_id="parent")
    insert(backend, "tokens", row)
    conn = backend._conn
    child = FORK.Process(target=_use_inherited, args=(backend, id(conn), row["id"]))
    child.start()
    child.join(timeout=20)
    assert child.exitcode == 0
    insert(backend, "tokens", token(case_id="parent"))
    with backend.transaction(write=False) as tx:
        assert sorted(r["case_id"] for r in tx.find("tokens")) == ["child", "parent", "parent"]
    assert backend._conn is conn
    backend.close()


def test_concurrent_processes_serialise_their_write_transactions(db_path):
    backend = SqliteBackend(db_path)
    insert(backend, "workitems", {"id": "counter", "attempt": 0})
    workers = [FORK.Process(target=_increment, args=(f"sqlite://{db_path}", 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=25)
    assert [worker.exitcode for worker in workers] == [0, 0, 0, 0]
    with backend.transaction(write=False) as tx:
        assert tx.get("workitems", "counter")["attempt"] == 200
    backend.close()


def test_a_writer_that_holds_the_writers_lock_past_the_busy_timeout_fails_the_write_and_reads_go_on(db_path):
    backend = SqliteBackend(db_path, busy_timeout_s=0.3)
    insert(backend, "tokens", token(case_id="before"))
    other = os.open(f"{db_path}-writers", os.O_RDWR)  # another process's writer, holding the queue
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        with pytest.raises(StorageFailure, match="another writer held .*-writers for 0.3s"):
            insert(backend, "tokens", token(case_id="blocked"))
        with backend.transaction(write=False) as tx:
            assert [r["case_id"] for r in tx.find("tokens")] == ["before"]
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    insert(backend, "tokens", token(case_id="after"))
    with backend.transaction(write=False) as tx:
        assert [r["case_id"] for r in tx.find("tokens")] == ["before", "after"]
    backend.close()
