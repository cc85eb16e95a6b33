"""Turns, over both backends: many transactions of one thread share one
transaction, committed once when the turn ends (`Backend.turn`).

What a turn wrote is read back inside it, seen by no one else before its
end, and stored all together after it; an exception out of the turn, or an
operation that failed after it wrote ("broken"), stores nothing of it. An
operation that refuses before writing (a domain check, a stale fence)
leaves the turn whole. Also the seam's compare-and-set (`update_if`) and
batch insert (`insert_many`), and SQLite's `?synchronous=` URL option.
"""

from __future__ import annotations

import os
import threading

import pytest

from petriflow.engine.errors import Invalid, NotFound, StaleIncarnation, StorageFailure, TokensNotAvailable
from petriflow.engine.records import CaseRecord, RunRecord, TokenRecord, WorkOrderRecord, new_id
from petriflow.engine.states import CaseState, TaskState, TokenState
from petriflow.storage import open_backend
from petriflow.storage.backend import Backend, DuplicateKey, TurnAborted
from petriflow.storage.sqlite import SqliteBackend
from petriflow.storage.store import WorkOrderStorage
from tests import test_backends, test_storage_contract
from tests.test_backends import ids, insert, token
from tests.test_storage_contract import _case, _fence, _task

# the fixtures of the backend and storage contract suites (and conftest's `url`): each test runs on memory and on SQLite
backend = test_backends.backend
storage_url, store = test_storage_contract.storage_url, test_storage_contract.store

pytestmark = pytest.mark.timeout(30)


def _rows(backend: Backend, table: str = "tokens") -> dict[str, dict]:
    with backend.transaction(write=False) as tx:
        return {row["id"]: row for row in tx.find(table)}


def _other_writer(url: str, backend: Backend) -> Backend:
    """Another backend on the same storage: SQLite's is another connection,
    which would wait for a write lock left held (so it waits briefly only)."""
    if isinstance(backend, SqliteBackend):
        return SqliteBackend(backend.path, busy_timeout_s=2)
    return open_backend(url)


def _is_sqlite(backend: Backend) -> bool:
    return isinstance(backend, SqliteBackend)


# -- what a turn writes: read back in it, hidden from others, stored at its end ----------------


def test_a_turns_writes_are_read_back_in_it_hidden_from_others_and_all_stored_at_its_end(url, backend):
    kept = token(case_id="kept")
    insert(backend, "tokens", kept)
    a, b, c = token("a"), token("b"), token("c")
    other = open_backend(url)  # SQLite: a second connection on the file, opened before the turn
    readers: list[threading.Thread] = []
    seen_by_reader: list[dict] = []

    def read_from_another_thread() -> None:
        with other.transaction(write=False) as tx:
            seen_by_reader.append({row["id"]: row for row in tx.find("tokens")})

    try:
        with backend.turn() as turn:
            assert (turn.writes, turn.open, turn.broken) == (0, False, None)
            with backend.transaction() as tx:
                tx.insert("tokens", a)
                tx.update("tokens", kept["id"], {"state": TokenState.LOCKED, "locked_by_task_id": "t1"})
            with backend.transaction() as tx:
                tx.insert_many("tokens", [b, c])
            with backend.transaction(write=False) as tx:  # a later read of the same turn sees them all
                assert ids(tx.find("tokens")) == ids([kept, a, b, c])
                assert tx.get("tokens", kept["id"])["state"] == "locked"
            with backend.transaction() as tx:
                assert tx.update_if("tokens", a["id"], {"state": TokenState.CONSUMED}, {"state": TokenState.FREE})
            assert (turn.writes, turn.open, turn.broken) == (5, True, None)

            if _is_sqlite(backend):
                # another connection reads the last commit: nothing of the turn yet
                outside = _rows(other)
                assert list(outside) == [kept["id"]] and outside[kept["id"]]["state"] == "free"
            else:
                # memory: another thread waits for the turn (it holds the database's lock)
                readers.append(threading.Thread(target=read_from_another_thread))
                readers[0].start()
                readers[0].join(0.3)
                assert readers[0].is_alive() and seen_by_reader == [], "a reader of another thread waits for the turn"

        for reader in readers:
            reader.join(5)
            assert not reader.is_alive()
        for after in [_rows(backend), _rows(other), *seen_by_reader]:
            assert list(after) == ids([kept, a, b, c])
            assert (after[kept["id"]]["state"], after[kept["id"]]["locked_by_task_id"]) == ("locked", "t1")
            assert after[a["id"]]["state"] == "consumed"
    finally:
        other.close()


def test_a_turn_that_only_reads_opens_no_transaction_and_a_turn_cannot_nest(url, backend):
    row = token()
    insert(backend, "tokens", row)
    with backend.turn() as turn:
        with backend.transaction(write=False) as tx:
            assert tx.get("tokens", row["id"]) is not None
        assert (turn.writes, turn.open, turn.broken) == (0, False, None)
        with pytest.raises(RuntimeError, match="inside a t"):
            with backend.turn():
                pass
        insert(backend, "tokens", new := token())  # the outer turn goes on
        assert (turn.writes, turn.open, turn.broken) == (1, True, None)
    assert list(_rows(backend)) == ids([row, new])


# -- nothing of a turn is stored when it fails ---------------------------------------------------


def test_an_exception_out_of_the_turn_rolls_back_every_write_of_it(url, backend):
    kept = token(case_id="kept")
    insert(backend, "tokens", kept)
    new, batch = token("new"), [token("batch"), token("batch")]
    with pytest.raises(ZeroDivisionError):  # the exception itself comes out, not a storage error
        with backend.turn() as turn:
            with backend.transaction() as tx:
                tx.insert("tokens", new)
                tx.update("tokens", kept["id"], {"state": TokenState.LOCKED})
            with backend.transaction() as tx:
                tx.insert_many("tokens", batch)
                assert tx.update_if("tokens", new["id"], {"state": TokenState.CONSUMED}, {"state": "free"})
            assert turn.broken is None
            raise ZeroDivisionError  # not out of an operation: the turn's body itself fails
    after = _rows(backend)
    assert list(after) == [kept["id"]] and after[kept["id"]]["state"] == "free"
    # every lock was released: another connection writes at once, and this backend goes on
    writer, other = _other_writer(url, backend), token("other")
    try:
        insert(writer, "tokens", other)
    finally:
        writer.close()
    with backend.turn():
        insert(backend, "tokens", new)
    assert list(_rows(backend)) == ids([kept, other, new])


def _raise_after_writing(tx, kept: dict, error: str) -> None:
    tx.insert("tokens", token("written-then-failed"))
    if error == "domain":
        raise ValueError("a check that failed after the operation wrote")
    if error == "duplicate":
        tx.insert("tokens", kept)
    if error == "missing":
        tx.update("tokens", "no-such-row", {"state": "locked"})


@pytest.mark.parametrize("error, raised", [("domain", ValueError), ("duplicate", DuplicateKey), ("missing", KeyError)])
def test_an_operation_that_raises_after_it_wrote_breaks_the_turn_and_nothing_of_it_is_stored(
    url, backend, error, raised
):
    kept = token(case_id="kept")
    insert(backend, "tokens", kept)
    first = token("first")
    with pytest.raises(TurnAborted, match="turn rolled back") as ended:
        with backend.turn() as turn:
            with backend.transaction() as tx:
                tx.insert("tokens", first)
                tx.update("tokens", kept["id"], {"state": TokenState.LOCKED})
            with pytest.raises(raised):
                with backend.transaction() as tx:
                    _raise_after_writing(tx, kept, error)
            assert turn.broken is not None and raised.__name__ in turn.broken
            # every later operation of the turn is refused, reads too, and the caller cannot mend it
            for write in (True, False):
                with pytest.raises(TurnAborted, match="broken earlier"):
                    with backend.transaction(write=write) as tx:
                        tx.find("tokens")
                        pytest.fail("a transaction of a broken turn ran")
            with pytest.raises(TurnAborted):
                insert(backend, "tokens", token("after-the-break"))
    assert isinstance(ended.value, StorageFailure) and ended.value.code == "turn_aborted"
    after = _rows(backend)
    assert list(after) == [kept["id"]], "nothing of the broken turn is stored, not even what it wrote before"
    assert after[kept["id"]]["state"] == "free"
    writer = _other_writer(url, backend)
    try:
        insert(writer, "tokens", token("other"))  # the write lock was released
    finally:
        writer.close()
    with backend.turn() as turn:  # the next turn starts whole
        insert(backend, "tokens", first)
    assert turn.broken is None and first["id"] in _rows(backend)


def test_a_caught_turn_aborted_does_not_let_the_turn_commit(url, backend):
    with pytest.raises(TurnAborted):
        with backend.turn():
            with pytest.raises(RuntimeError):
                with backend.transaction() as tx:
                    tx.insert("tokens", token("x"))
                    raise RuntimeError("after a write")
            try:
                insert(backend, "tokens", token("y"))
            except TurnAborted:
                pass  # swallowed by the caller: the turn still ends aborted
    assert _rows(backend) == {}


def test_an_operation_that_raises_before_it_wrote_leaves_the_turn_whole(url, backend):
    kept = token(case_id="kept")
    insert(backend, "tokens", kept)
    a, b = token("a"), token("b")
    with backend.turn() as turn:
        with backend.transaction() as tx:
            tx.insert("tokens", a)
        with pytest.raises(ValueError, match="domain"):
            with backend.transaction() as tx:
                assert tx.get("tokens", kept["id"])["state"] == "free"
                raise ValueError("a domain check refused, before any write")
        with pytest.raises(DuplicateKey):
            with backend.transaction() as tx:
                tx.insert("tokens", {**kept, "place_id": "second"})  # refused: nothing written
        with pytest.raises(KeyError):
            with backend.transaction() as tx:
                tx.update("tokens", "no-such-row", {"state": "locked"})
        with pytest.raises(ValueError, match="no column"):
            with backend.transaction() as tx:
                tx.insert("tokens", {**token(), "colour": "red"})
        with backend.transaction() as tx:
            assert not tx.update_if("tokens", kept["id"], {"state": "consumed"}, {"state": "locked"})
        assert (turn.broken, turn.writes) == (None, 1)
        with backend.transaction() as tx:
            tx.insert("tokens", b)
    after = _rows(backend)
    assert list(after) == ids([kept, a, b])
    assert (after[kept["id"]]["state"], after[kept["id"]]["place_id"]) == ("free", "p")


# -- update_if and insert_many ----------------------------------------------------------------------


def test_update_if_applies_only_when_every_expected_column_matches_none_matching_null(url, backend):
    row = token(state="free")  # locked_by_task_id is NULL
    item = {"id": new_id(), "task_id": "t", "attempt": 0, "incarnation": 1}  # awaiting is NULL
    insert(backend, "tokens", row)
    insert(backend, "workitems", item)
    rid = row["id"]
    with backend.transaction() as tx:
        assert tx.update_if("tokens", rid, {"state": "locked", "locked_by_task_id": "t1"}, {"locked_by_task_id": None})
        # no longer NULL, nor free: each of these is refused and writes nothing
        assert not tx.update_if("tokens", rid, {"state": "consumed"}, {"locked_by_task_id": None})
        assert not tx.update_if("tokens", rid, {"state": "consumed"}, {"state": TokenState.FREE})
        assert not tx.update_if("tokens", rid, {"state": "consumed"}, {"state": "locked", "locked_by_task_id": "t2"})
        assert not tx.update_if("tokens", "no-such-row", {"state": "consumed"}, {"state": "locked"})
        assert tx.get("tokens", rid)["state"] == "locked"
        # all of several columns, one of several values
        assert tx.update_if(
            "tokens", rid, {"state": "consumed", "consumed_by_task_id": "t1"}, {"state": "locked", "case_id": "c1"}
        )
        assert tx.update_if("tokens", rid, {"place_id": "q"}, {"state": ["free", "consumed"]})
        assert tx.update_if("tokens", rid, {"place_id": "r"}, {"locked_by_task_id": ["t9", "t1", None]})
        # the fence it exists for: only the expected incarnation writes; a bool NULL is matched by None
        assert not tx.update_if("workitems", item["id"], {"attempt": 1}, {"incarnation": 2})
        assert not tx.update_if("workitems", item["id"], {"attempt": 1}, {"awaiting": False})
        assert tx.update_if(
            "workitems", item["id"], {"attempt": 1, "awaiting": True}, {"incarnation": 1, "awaiting": None}
        )
        assert not tx.update_if("workitems", item["id"], {"attempt": 2}, {"awaiting": None})
        assert tx.update_if("workitems", item["id"], {"incarnation": None}, {"awaiting": True})
        assert tx.update_if("workitems", item["id"], {"attempt": 3}, {"incarnation": None})
        assert not tx.update_if("workitems", item["id"], {"attempt": 4}, {"incarnation": 1})
        with pytest.raises(ValueError, match="needs changes"):
            tx.update_if("tokens", rid, {}, {"state": "consumed"})
        with pytest.raises(ValueError, match="no column"):
            tx.update_if("tokens", rid, {"state": "free"}, {"colour": "red"})
    got, wi = _rows(backend)[rid], _rows(backend, "workitems")[item["id"]]
    assert (got["state"], got["locked_by_task_id"], got["consumed_by_task_id"], got["place_id"]) == (
        "consumed",
        "t1",
        "t1",
        "r",
    )
    assert {k: wi[k] for k in ("attempt", "awaiting", "incarnation")} == {
        "attempt": 3,
        "awaiting": True,
        "incarnation": None,
    }


def test_a_refused_update_if_counts_no_write_and_does_not_break_the_turn(url, backend):
    row = token(state="free")
    insert(backend, "tokens", row)
    with backend.turn() as turn:
        with backend.transaction() as tx:
            assert not tx.update_if("tokens", row["id"], {"state": "consumed"}, {"state": "locked"})
            assert not tx.update_if("tokens", "nope", {"state": "consumed"}, {"state": "free"})
        assert (turn.writes, turn.broken) == (0, None)
        with backend.transaction() as tx:
            assert tx.update_if("tokens", row["id"], {"state": "locked"}, {"state": "free"})
            assert not tx.update_if("tokens", row["id"], {"state": "locked"}, {"state": "free"})  # lost the race
        assert (turn.writes, turn.broken) == (1, None)
    assert _rows(backend)[row["id"]]["state"] == "locked"


def test_insert_many_inserts_every_row_in_order_and_refuses_a_duplicate_id(url, backend):
    rows = [token(f"c{i}", payload={"i": i}) for i in range(5)]
    with backend.transaction() as tx:
        tx.insert_many("tokens", [])  # nothing to do
        tx.insert_many("tokens", rows)
    stored = _rows(backend)
    assert list(stored) == ids(rows)
    assert [r["payload"] for r in stored.values()] == [{"i": i} for i in range(5)]
    for duplicate in ([token(), rows[2]], [rows[0]], [(twin := token()), twin]):
        with pytest.raises(DuplicateKey):
            with backend.transaction() as tx:
                tx.insert_many("tokens", duplicate)
    assert list(_rows(backend)) == ids(rows), "a refused batch that left its transaction was rolled back"


def test_a_batch_refused_for_a_duplicate_inserts_none_of_its_rows(url, backend):
    old = token("old")
    insert(backend, "tokens", old)
    new, twin = token("new"), token("twin")
    with backend.transaction() as tx:
        with pytest.raises(DuplicateKey):
            tx.insert_many("tokens", [new, old])
        with pytest.raises(DuplicateKey):
            tx.insert_many("tokens", [twin, twin])
        tx.insert("tokens", token("goes-on"))  # the transaction goes on, as for insert
    assert new["id"] not in _rows(backend) and twin["id"] not in _rows(backend)


def test_a_batch_refused_for_a_duplicate_in_a_turn_stores_none_of_its_rows(url, backend):
    old = token("old")
    insert(backend, "tokens", old)
    new = token("new")
    with backend.turn():
        with pytest.raises(DuplicateKey):
            with backend.transaction() as tx:
                tx.insert_many("tokens", [new, old])
    assert list(_rows(backend)) == [old["id"]]


# -- Storage: a stale fence refuses before writing -------------------------------------------------


def test_a_stale_fenced_write_in_a_turn_raises_stale_incarnation_without_breaking_the_turn(store):
    case, (genesis,) = _case(store)
    older = _fence(case, "cases")
    stale_task = _task(store, case, "a")
    with store.backend.turn() as turn:
        newer = store.claim_case(case.id)  # written in the turn: the older incarnation is fenced off
        task = store.claim_task(stale_task.id)
        for stale_write in (
            lambda: store.terminate_case(older),
            lambda: store.create_task(older, "b"),
            lambda: store.finish_case(older, "end"),
            lambda: store.allocate(_fence(stale_task, "tasks"), [genesis.id], {}),
        ):
            with pytest.raises(StaleIncarnation, match="was replaced"):
                stale_write()
            assert turn.broken is None
        blocker = _task(store, newer, "blocker")
        store.allocate(_fence(blocker, "tasks"), [genesis.id], {})
        with pytest.raises(TokensNotAvailable):  # a domain refusal, before writing, leaves the turn whole too
            store.allocate(_fence(task, "tasks"), [genesis.id], {})
        assert turn.broken is None
        other = store.create_task(_fence(newer, "cases"), "b")
    stored = store.get_case(case.id)
    assert (stored.state, stored.incarnation) == (CaseState.CREATED, newer.incarnation)
    assert (
        store.get_task(task.id).incarnation == task.incarnation and store.get_task(task.id).state is TaskState.STARTED
    )
    assert store.get_task(other.id).transition_id == "b"
    (locked,) = store.tokens(case.id)
    assert (locked.state, locked.locked_by_task_id) == (TokenState.LOCKED, blocker.id)


def test_a_storage_operation_that_fails_after_writing_breaks_the_turn(storage_url):
    store = WorkOrderStorage(open_backend(storage_url))
    try:
        order = WorkOrderRecord(id=new_id(), workflow_id="wf", input={})
        case = CaseRecord(id=new_id(), workflow_id="wf", workflow_version=1, work_order_id=order.id)
        run = RunRecord(id=new_id(), work_order_id=order.id, workflow_id="wf", workflow_version=1, case_id=case.id)
        store.create_work_order(order, run, case, [])

        def run_of(work_order_id: str):
            c = CaseRecord(id=new_id(), workflow_id="wf", workflow_version=1, work_order_id=work_order_id)
            r = RunRecord(id=new_id(), work_order_id=work_order_id, workflow_id="wf", workflow_version=1, case_id=c.id)
            return r, c, [TokenRecord(id=new_id(), case_id=c.id, workflow_id="wf", place_id="start")]

        with pytest.raises(TurnAborted):
            with store.backend.turn() as turn:
                claimed = store.claim_case(case.id)
                with pytest.raises(NotFound, match="no-such-work-order"):  # the first run is written, then refused
                    store.enqueue_runs([run_of(order.id), run_of("no-such-work-order")], {})
                assert turn.broken is not None
                with pytest.raises(TurnAborted):
                    store.create_task(_fence(claimed, "cases"), "t1")
        assert store.get_case(case.id).incarnation == case.incarnation, "the claim before the break is gone too"
        assert [r.id for r in store.runs(order.id)] == [run.id]
        assert store.tasks(case.id) == []
    finally:
        store.close()


# -- SQLite's synchronous option --------------------------------------------------------------------


def _synchronous(backend: SqliteBackend) -> int:
    with backend.transaction(write=False):  # the connection the backend uses, opened if need be
        return backend._connection().execute("PRAGMA synchronous").fetchone()[0]


def test_sqlite_is_synchronous_full_by_default_and_normal_on_request(tmp_path):
    full = open_backend(f"sqlite://{tmp_path}/full.db")
    explicit = open_backend(f"sqlite://{tmp_path}/explicit.db?synchronous=full")
    normal = open_backend(f"sqlite://{tmp_path}/normal.db?synchronous=normal")
    try:
        assert isinstance(normal, SqliteBackend) and normal.path == f"{tmp_path}/normal.db"
        assert (_synchronous(full), _synchronous(explicit), _synchronous(normal)) == (2, 2, 1)  # FULL, FULL, NORMAL
        assert explicit.url == f"sqlite://{tmp_path}/explicit.db"
        assert normal.url == f"sqlite://{tmp_path}/normal.db?synchronous=normal"
        row = token()
        insert(normal, "tokens", row)
        normal.close()  # a connection opened again gets the setting again
        assert _synchronous(normal) == 1 and row["id"] in _rows(normal)
        again = open_backend(normal.url)  # its URL opens it as it was opened
        assert _synchronous(again) == 1 and row["id"] in _rows(again)
        again.close()
        faulty = open_backend(f"faulty+{normal.url}#{tmp_path}/flag")
        assert _synchronous(faulty.inner) == 1
        faulty.close()
    finally:
        for opened in (full, explicit, normal):
            opened.close()


@pytest.mark.parametrize(
    "query, named",
    [
        ("?journal_mode=delete", "journal_mode"),
        ("?synchronous=normal&cache=shared", "cache"),
        ("?synchronous=off", "'off'"),
        ("?synchronous=extra", "'extra'"),
        ("?synchronous", "''"),
    ],
)
def test_sqlite_refuses_an_unknown_option_or_value_by_name_without_creating_the_file(tmp_path, query, named):
    path = tmp_path / "refused.db"
    with pytest.raises(Invalid, match="synchronous|option") as refused:
        open_backend(f"sqlite://{path}{query}")
    assert named in str(refused.value)
    assert not os.path.exists(path)


def test_the_writer_pid_names_this_process_while_its_turn_holds_the_write_lock(url, backend):
    """What the heartbeats ask before killing a silent process: is it the
    one holding the lock, or one waiting for it? Memory cannot tell."""
    assert backend.writer_pid() is None
    with backend.turn():
        with backend.transaction(write=False) as tx:
            tx.find("tokens")
        assert backend.writer_pid() is None  # a turn that only read holds nothing
        insert(backend, "tokens", token())
        assert backend.writer_pid() == (os.getpid() if _is_sqlite(backend) else None)
    assert backend.writer_pid() is None
