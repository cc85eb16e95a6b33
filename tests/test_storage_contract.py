"""The storage contract: every backend gives the same answers.

Locking is a compare-and-set, completion is idempotent, writes from a
stale incarnation are refused, and a refused write changes nothing.
"""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from petriflow.engine.errors import (
    AlreadyCompleted,
    IllegalTransition,
    NotFound,
    StaleIncarnation,
    TaskNotAvailable,
    TokensNotAvailable,
)
from petriflow.engine.records import CaseRecord, Failure, TokenRecord, new_id
from petriflow.engine.states import CaseState, TaskState, TokenState, WorkitemState
from petriflow.storage import open_backend
from petriflow.storage.store import Fence, Storage

BACKENDS = ["memory", "sqlite"]


@pytest.fixture(params=BACKENDS)
def storage_url(request, tmp_path):
    if request.param == "memory":
        return f"memory://contract-{new_id()}"
    return f"sqlite:///{tmp_path}/petriflow.db"


@pytest.fixture
def store(storage_url):
    storage = Storage(open_backend(storage_url))
    yield storage
    storage.close()


def _case(store: Storage, places=("start",)) -> tuple[CaseRecord, list[TokenRecord]]:
    case = CaseRecord(id=new_id(), workflow_id="wf", workflow_version=1)
    genesis = TokenRecord(id=new_id(), case_id=case.id, workflow_id="wf", place_id=places[0])
    store.create_case(case, [genesis])
    claimed = store.claim_case(case.id)
    tokens = [genesis]
    return claimed, tokens


def _fence(record, table):
    return Fence(table, record.id, record.incarnation)


def _task(store: Storage, case: CaseRecord, transition: str = "t1"):
    task = store.create_task(_fence(case, "cases"), transition)
    return store.claim_task(task.id)


def _issue(store, case, task, places):
    return [
        TokenRecord(id=new_id(), case_id=case.id, workflow_id="wf", place_id=p, produced_by_task_id=task.id)
        for p in places
    ]


# -- workflows and cases ------------------------------------------------------------------


def test_cases_are_stored_with_their_genesis_token(store):
    case, (genesis,) = _case(store)
    assert store.get_case(case.id).state is CaseState.CREATED
    assert store.tokens(case.id) == [genesis]
    assert [c.id for c in store.list_cases([CaseState.CREATED])] == [case.id]
    assert store.list_cases([CaseState.FINISHED]) == []


def test_unknown_ids_are_not_found(store):
    for read in (store.get_case, store.get_task, store.get_workitem):
        with pytest.raises(NotFound, match="'nope' not found"):
            read("nope")
    with pytest.raises(NotFound):
        store.claim_case("nope")


def test_claiming_bumps_the_incarnation_and_fences_off_the_older_one(store):
    case, _ = _case(store)
    older = _fence(case, "cases")
    newer = store.claim_case(case.id)
    assert newer.incarnation == case.incarnation + 1
    with pytest.raises(StaleIncarnation, match=f"incarnation {case.incarnation} was replaced"):
        store.terminate_case(older)
    assert store.get_case(case.id).state is CaseState.CREATED
    assert store.terminate_case(_fence(newer, "cases")).state is CaseState.TERMINATED


# -- tokens and tasks ------------------------------------------------------------------------


def test_a_case_has_at_most_one_waiting_task_per_transition(store):
    case, _ = _case(store)
    first = store.create_task(_fence(case, "cases"), "t1")
    assert store.create_task(_fence(case, "cases"), "t1").id == first.id
    assert store.create_task(_fence(case, "cases"), "t2").id != first.id


def test_locking_is_all_or_nothing(store):
    case, (genesis,) = _case(store)
    winner, loser = _task(store, case, "a"), _task(store, case, "b")
    store.allocate(_fence(winner, "tasks"), [genesis.id], {})
    with pytest.raises(TokensNotAvailable, match=f"token {genesis.id} is locked by task {winner.id}"):
        store.allocate(_fence(loser, "tasks"), [genesis.id], {})
    assert store.get_task(loser.id).state is TaskState.STARTED
    (token,) = store.tokens(case.id)
    assert (token.state, token.locked_by_task_id) == (TokenState.LOCKED, winner.id)


def test_a_refused_lock_leaves_every_token_free(store):
    case, (genesis,) = _case(store)
    holder = _task(store, case, "a")
    workitem = store.claim_workitem(store.allocate(_fence(holder, "tasks"), [genesis.id], {}).id)
    other = _task(store, case, "b")
    free = TokenRecord(id=new_id(), case_id=case.id, workflow_id="wf", place_id="p")
    store.begin_attempt(_fence(workitem, "workitems"))
    store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.COMPLETED)
    store.complete_task(_fence(case, "cases"), holder.id, {}, [free])
    with pytest.raises(TokensNotAvailable):
        store.allocate(_fence(other, "tasks"), [free.id, genesis.id], {})
    assert {t.id: t.state for t in store.tokens(case.id)}[free.id] is TokenState.FREE


def test_locking_again_is_idempotent_and_a_busy_task_refuses_other_tokens(store):
    case, (genesis,) = _case(store)
    task = _task(store, case)
    first = store.allocate(_fence(task, "tasks"), [genesis.id], {"in": 1})
    assert store.allocate(_fence(task, "tasks"), [genesis.id], {"in": 1}) == first
    assert store.get_task(task.id).state is TaskState.EXECUTING
    assert [t.locked_by_task_id for t in store.tokens(case.id)] == [task.id]
    with pytest.raises(TaskNotAvailable, match="executing, not started"):
        store.allocate(_fence(task, "tasks"), [], {})


def test_a_stale_task_cannot_lock(store):
    case, (genesis,) = _case(store)
    task = _task(store, case)
    store.claim_task(task.id)
    with pytest.raises(StaleIncarnation):
        store.allocate(_fence(task, "tasks"), [genesis.id], {})
    assert store.tokens(case.id)[0].state is TokenState.FREE


def _executed(store, case, genesis, transition="t1"):
    task = _task(store, case, transition)
    workitem = store.allocate(_fence(task, "tasks"), [genesis.id], {"in": 1})
    return task, store.claim_workitem(workitem.id)


def test_a_task_completes_once_consuming_and_issuing_atomically(store):
    case, (genesis,) = _case(store)
    task, workitem = _executed(store, case, genesis)
    with pytest.raises(TaskNotAvailable, match="is created"):
        store.complete_task(_fence(case, "cases"), task.id, {}, _issue(store, case, task, ["p"]))
    assert [t.id for t in store.tokens(case.id)] == [genesis.id]
    started = store.begin_attempt(_fence(workitem, "workitems"))
    assert (started.state, started.attempt) == (WorkitemState.STARTED, 1)
    store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.COMPLETED, output={"out": 2})
    issued = _issue(store, case, task, ["p", "q"])
    store.complete_task(_fence(case, "cases"), task.id, {"out": 2}, issued)
    with pytest.raises(AlreadyCompleted):
        store.complete_task(_fence(case, "cases"), task.id, {"out": 2}, _issue(store, case, task, ["p"]))
    tokens = {t.id: t for t in store.tokens(case.id)}
    assert len(tokens) == 3
    assert tokens[genesis.id].state is TokenState.CONSUMED and tokens[genesis.id].consumed_by_task_id == task.id
    assert {tokens[t.id].place_id for t in issued} == {"p", "q"}
    done = store.get_task(task.id)
    assert (done.state, done.token_payload) == (TaskState.COMPLETED, {"out": 2})


def test_completing_a_workitem_twice_changes_nothing(store):
    case, (genesis,) = _case(store)
    _, workitem = _executed(store, case, genesis)
    store.begin_attempt(_fence(workitem, "workitems"))
    first = store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.COMPLETED, output={"a": 1})
    with pytest.raises(AlreadyCompleted):
        store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.COMPLETED, output={"a": 2})
    with pytest.raises(IllegalTransition):
        store.finish_workitem(_fence(workitem, "workitems"), WorkitemState.FAILED)
    assert store.get_workitem(workitem.id) == first


def test_attempts_count_up_and_awaiting_is_remembered(store):
    case, (genesis,) = _case(store)
    _, workitem = _executed(store, case, genesis)
    fence = _fence(workitem, "workitems")
    store.begin_attempt(fence)
    assert store.mark_awaiting(fence).awaiting
    again = store.begin_attempt(fence)
    assert (again.attempt, again.awaiting, again.state) == (2, False, WorkitemState.STARTED)


def test_terminating_a_case_abandons_its_unfinished_tasks_and_workitems(store):
    case, (genesis,) = _case(store)
    task, workitem = _executed(store, case, genesis)
    waiting = _task(store, case, "other")
    failure = Failure(kind="failed", reason="boom", task_id=task.id)
    ended = store.terminate_case(_fence(case, "cases"), failure)
    assert (ended.state, ended.failure) == (CaseState.TERMINATED, failure)
    assert {t.state for t in store.tasks(case.id)} == {TaskState.ABANDONED}
    assert store.get_workitem(workitem.id).state is WorkitemState.ABANDONED
    assert store.get_task(waiting.id).state is TaskState.ABANDONED
    with pytest.raises(AlreadyCompleted):
        store.terminate_case(_fence(case, "cases"))


def test_finishing_a_case_consumes_its_end_token(store):
    case, (genesis,) = _case(store, places=("end",))
    case = store.claim_case(case.id, activate=True)
    waiting = _task(store, case, "lost-its-token")
    assert store.finish_case(_fence(case, "cases"), "end").state is CaseState.FINISHED
    (token,) = store.tokens(case.id)
    assert token.state is TokenState.CONSUMED
    assert store.get_task(waiting.id).state is TaskState.ABANDONED, "nothing is left live in a finished case"
    with pytest.raises(AlreadyCompleted):
        store.finish_case(_fence(case, "cases"), "end")


# -- races ----------------------------------------------------------------------------


def _race_rounds(store: Storage, rounds: int) -> list[tuple[str, str, str]]:
    """Cases each with one token and two waiting tasks competing for it."""
    plan = []
    for _ in range(rounds):
        case, (genesis,) = _case(store)
        a, b = _task(store, case, "a"), _task(store, case, "b")
        plan.append((genesis.id, f"{a.id}:{a.incarnation}", f"{b.id}:{b.incarnation}"))
    return plan


def _contend(url: str, plan, side: int, barrier, results) -> None:
    store = Storage(open_backend(url))
    for token_id, *tasks in plan:
        task_id, incarnation = tasks[side].split(":")
        barrier.wait()
        try:
            store.allocate(Fence("tasks", task_id, int(incarnation)), [token_id], {})
            results.put((token_id, task_id))
        except TokensNotAvailable:
            pass


@pytest.mark.timeout(120)
def test_two_tasks_racing_for_one_token_never_both_win(storage_url, store):
    rounds = 150
    plan = _race_rounds(store, rounds)
    if storage_url.startswith("memory"):
        barrier, results = threading.Barrier(2), __import__("queue").Queue()
        workers = [
            threading.Thread(target=_contend, args=(storage_url, plan, side, barrier, results)) for side in (0, 1)
        ]
    else:
        ctx = multiprocessing.get_context("fork")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        workers = [ctx.Process(target=_contend, args=(storage_url, plan, side, barrier, results)) for side in (0, 1)]
    for worker in workers:
        worker.start()
    wins = [results.get(timeout=60) for _ in range(rounds)]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(token for token, _ in wins) == sorted(token for token, *_ in plan)
    for _token_id, a, b in plan:
        (token,) = [t for t in store.tokens(store.get_task(a.split(":")[0]).case_id)]
        assert token.state is TokenState.LOCKED
        winners = [
            task for task in (a.split(":")[0], b.split(":")[0]) if store.get_task(task).state is TaskState.EXECUTING
        ]
        assert winners == [token.locked_by_task_id]


def test_enqueue_runs_is_one_transaction_all_or_nothing(storage_url):
    from petriflow.engine.records import RunRecord, WorkOrderRecord
    from petriflow.engine.states import WorkOrderState
    from petriflow.storage.store import WorkOrderStorage

    store = WorkOrderStorage(open_backend(storage_url))
    order = WorkOrderRecord(id=new_id(), workflow_id="wf", input={"a": 1})
    first_case = CaseRecord(id=new_id(), workflow_id="wf", workflow_version=1, work_order_id=order.id)
    first = RunRecord(id=new_id(), work_order_id=order.id, workflow_id="wf", workflow_version=1, case_id=first_case.id)
    store.create_work_order(order, first, first_case, [])

    def run_of(work_order_id):
        case = CaseRecord(id=new_id(), workflow_id="wf", workflow_version=1, work_order_id=work_order_id)
        run = RunRecord(id=new_id(), work_order_id=work_order_id, workflow_id="wf", workflow_version=1, case_id=case.id)
        token = TokenRecord(id=new_id(), case_id=case.id, workflow_id="wf", place_id="start")
        return run, case, [token]

    good, orphan = run_of(order.id), run_of("no-such-work-order")
    with pytest.raises(NotFound, match="no-such-work-order"):
        store.enqueue_runs([good, orphan], {order.id: WorkOrderState.PENDING})
    assert [r.id for r in store.runs(order.id)] == [first.id]
    with pytest.raises(NotFound):
        store.get_case(good[1].id)
    store.enqueue_runs([good], {order.id: WorkOrderState.PENDING})
    assert [r.id for r in store.runs(order.id)] == [first.id, good[0].id]
    assert store.tokens(good[1].id)[0].place_id == "start"
    store.close()
