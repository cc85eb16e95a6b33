"""The work-order history a console pages through: filters, a search in the
input, newest first, every row on exactly one page, the same answers from
both adapters; migration 6, which makes a file of schema version 5 searchable;
and the request through a real Engine."""

from __future__ import annotations

import sqlite3

import msgpack
import pytest

from petriflow.engine.errors import Invalid
from petriflow.engine.records import CaseRecord, RunRecord, WorkOrderRecord, new_id
from petriflow.engine.states import WorkOrderState
from petriflow.storage import open_backend, schema
from petriflow.storage.backend import AtMost, Between, Contains
from petriflow.storage.sqlite import SqliteBackend
from petriflow.storage.store import WorkOrderStorage
from tests.engines import running_engine, workflow

pytestmark = pytest.mark.timeout(60)

S = WorkOrderState


@pytest.fixture
def store(url):
    storage = WorkOrderStorage(open_backend(url))
    yield storage
    storage.close()


def _store_order(store: WorkOrderStorage, **fields) -> WorkOrderRecord:
    """A work order stored as the Engine stores one (with a run and a case; no tokens needed here)."""
    order = WorkOrderRecord(id=new_id(), **{"workflow_id": "wf", **fields})
    case = CaseRecord(id=new_id(), workflow_id=order.workflow_id, workflow_version=1, work_order_id=order.id)
    run = RunRecord(
        id=new_id(), work_order_id=order.id, workflow_id=order.workflow_id, workflow_version=1, case_id=case.id
    )
    return store.create_work_order(order, run, case, [])


@pytest.fixture
def history(store) -> list[WorkOrderRecord]:
    """40 work orders, oldest first, over 3 workflows, 3 triggers (and none) and 4 states;
    created_at repeats, so ties are ordered too."""
    states = [S.SUCCESS, S.FAILED, S.RUNNING, S.PENDING]
    return [
        _store_order(
            store,
            workflow_id=f"wf{i % 3}",
            trigger_id=[None, "hook-a", "hook-b", "cron-1"][i % 4],
            state=states[(i // 2) % 4],
            created_at=1000.0 + i // 2,
            input={"n": i, "customer": ["Alice", "bob", "Émile"][i % 3]},
        )
        for i in range(40)
    ]


def ids(orders) -> list[str]:
    return [o.id for o in orders]


def newest_first(orders: list[WorkOrderRecord]) -> list[WorkOrderRecord]:
    """The expected order: created_at descending, the later stored of a tie first."""
    return list(reversed(sorted(orders, key=lambda o: o.created_at)))  # sorted is stable: ties keep insertion order


# -- filters, order, paging -----------------------------------------------------------------------


def test_no_filter_lists_everything_newest_first_and_ties_by_the_last_stored(store, history):
    page, total = store.page_work_orders(limit=500)
    assert (ids(page), total) == (ids(newest_first(history)), 40)
    assert page == newest_first(history), "the records come back whole, without input_text"


@pytest.mark.parametrize(
    "filters,keep",
    [
        ({"states": [S.FAILED]}, lambda o: o.state is S.FAILED),
        ({"states": [S.FAILED, S.PENDING]}, lambda o: o.state in (S.FAILED, S.PENDING)),
        ({"states": []}, lambda o: False),
        ({"workflow_id": "wf1"}, lambda o: o.workflow_id == "wf1"),
        ({"trigger_id": "hook-b"}, lambda o: o.trigger_id == "hook-b"),
        ({"since": 1005.0}, lambda o: o.created_at >= 1005.0),
        ({"until": 1005.0}, lambda o: o.created_at < 1005.0),
        ({"since": 1003.0, "until": 1007.0}, lambda o: 1003.0 <= o.created_at < 1007.0),
        ({"since": 1003.0, "until": 1003.0}, lambda o: False),
        ({"search": "alice"}, lambda o: o.input["customer"] == "Alice"),
        (
            {"states": [S.SUCCESS, S.RUNNING], "workflow_id": "wf0", "since": 1002.0, "until": 1018.0},
            lambda o: o.state in (S.SUCCESS, S.RUNNING) and o.workflow_id == "wf0" and 1002 <= o.created_at < 1018,
        ),
        (
            {"trigger_id": "hook-a", "workflow_id": "wf2", "search": "BOB"},
            lambda o: o.trigger_id == "hook-a" and o.workflow_id == "wf2" and o.input["customer"] == "bob",
        ),
    ],
    ids=lambda p: ",".join(p) if isinstance(p, dict) else "",
)
def test_each_filter_alone_and_combined(store, history, filters, keep):
    expected = newest_first([o for o in history if keep(o)])
    page, total = store.page_work_orders(**filters, limit=500)
    assert (ids(page), total) == (ids(expected), len(expected))


@pytest.mark.parametrize("limit", [1, 7, 40, 50])
def test_paging_shows_every_match_on_exactly_one_page_with_the_same_total(store, history, limit):
    seen, totals = [], set()
    for offset in range(0, 40, limit):
        page, total = store.page_work_orders(limit=limit, offset=offset)
        assert len(page) == min(limit, 40 - offset)
        seen += ids(page)
        totals.add(total)
    assert seen == ids(newest_first(history)) and totals == {40}


def test_work_orders_are_counted_by_state_leaving_out_the_empty_states(store, history):
    expected: dict[str, int] = {}
    for order in history:
        expected[order.state.value] = expected.get(order.state.value, 0) + 1
    assert store.count_work_orders() == expected and len(expected) == 4


def test_a_page_past_the_end_is_empty_and_still_counts_the_matches(store, history):
    assert store.page_work_orders(states=[S.FAILED], offset=100) == ([], 10)
    assert store.page_work_orders(workflow_id="nope") == ([], 0)
    page, total = store.page_work_orders(states=[S.FAILED], limit=4, offset=8)  # a short last page
    assert (len(page), total) == (2, 10)


# -- the search ---------------------------------------------------------------------------------


def test_search_reads_the_inputs_compact_json_ignoring_ascii_case_only(store):
    alice = _store_order(store, input={"name": "Alice Smith", "tags": ["vip"], "n": 12})
    emile = _store_order(store, input={"name": "Émile"})
    wiped = _store_order(store, input=None)

    def found(search: str) -> list[str]:
        return ids(store.page_work_orders(search=search)[0])

    assert found("ALICE sm") == found("alice SM") == [alice.id]
    assert found('"name":"alice') == [alice.id], "compact JSON: no space after the colon"
    assert found('["vip"],"n":12') == [alice.id], "keys in their order"
    assert found("ÉMILE") == found("Émile") == [emile.id]
    assert found("émile") == [], "only ASCII letters are folded, as SQLite's LIKE does"
    assert found("carol") == []
    assert set(found("")) == {alice.id, emile.id, wiped.id}, "an empty search is no search"
    assert wiped.id not in found("null"), "a wiped input has no text"


def test_search_takes_percent_underscore_and_backslash_literally(store):
    percent = _store_order(store, input={"discount": "50%off"})
    other = _store_order(store, input={"discount": "50 off"})
    under = _store_order(store, input={"code": "a_b"})
    axb = _store_order(store, input={"code": "axb"})
    slash = _store_order(store, input={"path": "C:\\temp"})  # JSON text: "C:\\temp"

    def found(search: str) -> set[str]:
        return set(ids(store.page_work_orders(search=search)[0]))

    assert found("50%o") == {percent.id} and found("%") == {percent.id}
    assert found("a_b") == {under.id} and found("_") == {under.id}
    assert found("axb") == {axb.id} and other.id in found("50")
    assert found("c:\\\\temp") == {slash.id} and found("\\") == {slash.id}


def test_every_input_gets_a_text_even_bytes_and_keys_json_cannot_hold(store):
    order = _store_order(store, input={"raw": b"caf\xc3\xa9", "n": 1.5})
    assert ids(store.page_work_orders(search='"raw":"café"')[0]) == [order.id]
    assert schema.input_text({b"key": 1, "kept": True}) == '{"kept":true}'
    assert schema.input_text(None) is None


# -- bad requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_fields,named",
    [
        ({"limit": 0}, "limit must be 1..500"),
        ({"limit": 501}, "limit must be 1..500"),
        ({"offset": -1}, "offset must be 0..9007199254740992"),
        ({"offset": 2**53 + 1}, "offset must be 0..9007199254740992"),
        ({"since": 10.0, "until": 9.0}, "since .* is after until"),
        ({"search": "x" * 201}, "search must be at most 200 characters"),
        ({"search": "a\x00b"}, "search cannot hold a NUL"),
    ],
)
def test_bad_pages_are_refused_naming_the_field(store, request_fields, named):
    with pytest.raises(Invalid, match=named):
        store.page_work_orders(**request_fields)
    assert store.page_work_orders(limit=500, search="x" * 200) == ([], 0), "the bounds themselves are fine"


# -- the backend seam under a page --------------------------------------------------------------


def test_between_is_half_open_skips_nulls_and_needs_a_bound(url):
    backend = open_backend(url)
    rows = [{"id": f"r{i}", "workflow_id": "wf", "created_at": at} for i, at in enumerate([1.0, 2.0, 3.0, None])]
    with backend.transaction() as tx:
        tx.insert_many("work_orders", rows)
    with backend.transaction(write=False) as tx:
        assert [r["id"] for r in tx.find("work_orders", {"created_at": Between(2.0, 3.0)})] == ["r1"]
        assert [r["id"] for r in tx.find("work_orders", {"created_at": Between(low=2.0)})] == ["r1", "r2"]
        assert [r["id"] for r in tx.find("work_orders", {"created_at": Between(high=2.0)})] == ["r0"]
        assert [r["id"] for r in tx.find("work_orders", {"created_at": AtMost(2.0)})] == ["r0", "r1"]
        assert tx.count("work_orders", {"created_at": Between(low=0.0)}) == 3
        with pytest.raises(ValueError, match="Between needs a low or a high bound"):
            tx.find("work_orders", {"created_at": Between()})
        with pytest.raises(ValueError, match="Contains needs a text column"):
            tx.find("work_orders", {"created_at": Contains("1")})
    backend.close()


def test_descending_reverses_order_and_ties_and_puts_nulls_last(url):
    backend = open_backend(url)
    rows = [{"id": f"r{i}", "created_at": at} for i, at in enumerate([2.0, None, 1.0, 2.0, None])]
    with backend.transaction() as tx:
        tx.insert_many("work_orders", rows)
    with backend.transaction(write=False) as tx:
        ascending = [r["id"] for r in tx.find("work_orders", order_by="created_at")]
        descending = [r["id"] for r in tx.find("work_orders", order_by="created_at", descending=True)]
        assert ascending == ["r1", "r4", "r2", "r0", "r3"] and descending == ascending[::-1]
        assert [r["id"] for r in tx.find("work_orders", descending=True)] == ["r4", "r3", "r2", "r1", "r0"]
        assert [r["id"] for r in tx.find("work_orders", order_by="created_at", limit=2, offset=1)] == ["r4", "r2"]
        assert [r["id"] for r in tx.find("work_orders", offset=3)] == ["r3", "r4"]
        assert tx.find("work_orders", limit=0) == []
        assert tx.count("work_orders") == 5
        with pytest.raises(ValueError, match="cannot be negative"):
            tx.find("work_orders", offset=-1)
    backend.close()


# -- migration 6 ----------------------------------------------------------------------------------


def _version_5_file(path: str, monkeypatch, inputs: list) -> list[str]:
    """A file as petriflow at schema version 5 left it, holding work orders with these inputs."""
    with monkeypatch.context() as old_petriflow:
        old_petriflow.setattr("petriflow.storage.sqlite.MIGRATIONS", schema.MIGRATIONS[:5])
        old_petriflow.setattr("petriflow.storage.sqlite.SCHEMA_VERSION", 5)
        SqliteBackend(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    ids = [f"old-{i:03}" for i in range(len(inputs))]
    conn.executemany(
        "INSERT INTO work_orders (id, workflow_id, state, input, created_at) VALUES (?, 'wf', 'success', ?, ?)",
        [
            (id, None if input is None else msgpack.packb(input, use_bin_type=True), float(i))
            for i, (id, input) in enumerate(zip(ids, inputs))
        ],
    )
    conn.close()
    return ids


def test_migration_6_fills_input_text_of_a_version_5_file_and_indexes_each_filter(tmp_path, monkeypatch):
    path = str(tmp_path / "petriflow.db")
    monkeypatch.setattr(schema, "FILL_BATCH", 3)  # ten rows: four batches
    inputs = [{"customer": f"Customer-{i}", "n": i} for i in range(9)] + [None]
    old_ids = _version_5_file(path, monkeypatch, inputs)
    store = WorkOrderStorage(SqliteBackend(path))
    page, total = store.page_work_orders(search="customer-")
    assert (ids(page), total) == (old_ids[8::-1], 9)
    assert ids(store.page_work_orders(search="CUSTOMER-4")[0]) == [old_ids[4]]
    store.close()
    conn = sqlite3.connect(path)
    texts = dict(conn.execute("SELECT id, input_text FROM work_orders"))
    assert texts == {id: schema.input_text(input) for id, input in zip(old_ids, inputs)}
    assert texts[old_ids[3]] == '{"customer":"Customer-3","n":3}' and texts[old_ids[9]] is None
    indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'work_orders'")}
    assert {
        "work_orders_created_at",
        "work_orders_state_created_at",
        "work_orders_workflow_id_created_at",
        "work_orders_trigger_id_created_at",
    } <= indexes
    assert not {"work_orders_state", "work_orders_workflow_id"} & indexes, "the prefixes of the new indexes went"
    assert max(v for (v,) in conn.execute("SELECT version FROM schema_version")) == 6
    conn.close()


def test_a_failing_backfill_leaves_the_file_at_its_version(tmp_path, monkeypatch):
    def broken(input):
        raise ValueError("cannot derive")

    path = str(tmp_path / "petriflow.db")
    _version_5_file(path, monkeypatch, [{"n": 1}])
    failing = schema.Migration(
        6,
        "fails",
        (
            schema.AddColumn("work_orders", schema.Column("input_text", "text")),
            schema.Backfill("work_orders", "input_text", "input", broken),
        ),
    )
    monkeypatch.setattr("petriflow.storage.sqlite.MIGRATIONS", [*schema.MIGRATIONS[:5], failing])
    with pytest.raises(ValueError, match="cannot derive"):
        SqliteBackend(path)
    conn = sqlite3.connect(path)
    assert max(v for (v,) in conn.execute("SELECT version FROM schema_version")) == 5
    assert "input_text" not in [c[1] for c in conn.execute("PRAGMA table_info(work_orders)")], "all or nothing"
    conn.close()


def test_the_backfill_step_rewrites_rows_through_either_adapter(url, monkeypatch):
    """The memory adapter never holds rows from before a migration; the step
    still runs on it as on SQLite, through the same seam."""
    monkeypatch.setattr(schema, "FILL_BATCH", 2)
    (step,) = [s for s in schema.MIGRATIONS[5].steps if isinstance(s, schema.Backfill)]
    backend = open_backend(url)
    rows = [{"id": f"w{i}", "input": {"i": i}} for i in range(5)] + [{"id": "w5", "input": None}]
    with backend.transaction() as tx:
        tx.insert_many("work_orders", rows)
        step.fill(tx)
    with backend.transaction(write=False) as tx:
        assert [r["input_text"] for r in tx.find("work_orders")] == [f'{{"i":{i}}}' for i in range(5)] + [None]
    backend.close()


# -- through the Engine ---------------------------------------------------------------------------

FLOW = workflow("flow", ["start", "end"], [{"id": "t", "executor": "noop"}], ["start -> t", "t -> end"])
OTHER = workflow("other", ["start", "end"], [{"id": "t", "executor": "noop"}], ["start -> t", "t -> end"])


def test_a_client_pages_the_history_through_the_engine(tmp_path):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        client.put_workflow(FLOW)
        client.put_workflow(OTHER)
        submitted = [client.submit("flow" if i % 2 else "other", {"order": f"Order-{i}"}) for i in range(5)]
        for s in submitted:
            client.wait_work_order(s.work_order_id)
        newest = [s.work_order_id for s in reversed(submitted)]

        page = client.page_work_orders(limit=2)
        assert ([o.id for o in page.work_orders], page.total) == (newest[:2], 5)
        page = client.page_work_orders(limit=2, offset=4)
        assert ([o.id for o in page.work_orders], page.total) == (newest[4:], 5)
        page = client.page_work_orders(workflow_id="flow", states=["success"])
        assert [o.id for o in page.work_orders] == [submitted[3].work_order_id, submitted[1].work_order_id]
        page = client.page_work_orders(search="ORDER-2")
        assert ([o.id for o in page.work_orders], page.total) == ([submitted[2].work_order_id], 1)
        assert page.work_orders[0].input == {"order": "Order-2"}

        with pytest.raises(Invalid, match="unknown WorkOrderState 'sleeping'"):
            client.page_work_orders(states=["sleeping"])
        with pytest.raises(Invalid, match="limit must be 1..500"):
            client.page_work_orders(limit=0)
