"""petriflow.workorders.audit: stored states built by hand, a clean one and one per broken rule."""

from __future__ import annotations

from collections import Counter

import pytest

from petriflow.engine import routing
from petriflow.engine.document import workflow_from_document
from petriflow.engine.records import FINISHER, Failure, TokenRecord, new_id
from petriflow.engine.states import CaseState, RunState, TaskState, TokenState, WorkitemState, WorkOrderState
from petriflow.engine.validation import validate
from petriflow.storage import open_backend
from petriflow.storage.store import Fence, WorkOrderStorage
from petriflow.workorders import runs
from petriflow.workorders.audit import Violation, audit, firing_bounds
from tests.engines import workflow

SEQUENCE = workflow(
    "seq", ["start", "mid", "end"], [{"id": "a"}, {"id": "b"}], ["start -> a", "a -> mid", "mid -> b", "b -> end"]
)
PARALLEL = workflow(
    "par",
    ["start", "l", "r", "l2", "r2", "end"],
    [{"id": "split", "split": "and"}, {"id": "left"}, {"id": "right"}, {"id": "join", "join": "and"}],
    [
        "start -> split",
        "split -> l",
        "split -> r",
        "l -> left",
        "r -> right",
        "left -> l2",
        "right -> r2",
        "l2 -> join",
        "r2 -> join",
        "join -> end",
    ],
)
CHOICE = workflow(
    "choice", ["start", "end"], [{"id": "x"}, {"id": "y"}], ["start -> x", "start -> y", "x -> end", "y -> end"]
)
LOOP = workflow(
    "loop",
    ["start", "q", "p", "end"],
    [{"id": "go"}, {"id": "again"}, {"id": "done"}],
    ["start -> go", "go -> q", "q -> again", "again -> p", "p -> done", "p -> again", "done -> end"],
)


@pytest.fixture
def store():
    storage = WorkOrderStorage(open_backend(f"memory://audit-{new_id()}"))
    for document in (SEQUENCE, PARALLEL, CHOICE, LOOP):
        storage.put_workflow(validate(workflow_from_document(document)))
    yield storage
    storage.close()


class Case:
    """Drives one work order's case through its net as the actors would."""

    def __init__(self, store: WorkOrderStorage, workflow_id: str) -> None:
        self.store = store
        self.workflow = store.get_workflow(workflow_id)
        first = runs.submit(store, self.workflow, {"n": 1})
        self.order_id, self.run_id, self.id = first.run.work_order_id, first.run.id, first.case.id
        store.advance_run(self.run_id, RunState.CLAIMED)
        case = store.claim_case(self.id)
        self.fence = Fence("cases", case.id, case.incarnation)
        case = store.claim_case(self.id, activate=True)
        self.fence = Fence("cases", case.id, case.incarnation)
        store.advance_run(self.run_id, RunState.STARTED)
        store.set_work_order_state(self.order_id, WorkOrderState.RUNNING)

    def fire(self, transition_id: str, *, complete: bool = True) -> tuple[str, str]:
        """Lock the tokens enabling the transition, run its workitem and (by
        default) complete its task; returns (task id, workitem id)."""
        task = self.store.claim_task(self.store.create_task(self.fence, transition_id).id)
        task_fence = Fence("tasks", task.id, task.incarnation)
        free = self.store.tokens(self.id, [TokenState.FREE])
        chosen = routing.tokens_to_lock(self.workflow, transition_id, free)
        assert chosen, f"{transition_id} is not enabled"
        workitem = self.store.claim_workitem(self.store.allocate(task_fence, [t.id for t in chosen], {}).id)
        item_fence = Fence("workitems", workitem.id, workitem.incarnation)
        self.store.begin_attempt(item_fence)
        if complete:
            self.store.finish_workitem(item_fence, WorkitemState.COMPLETED, output={transition_id: True})
            tokens = routing.issue_tokens(
                self.workflow, transition_id, case_id=self.id, task_id=task.id, payload={transition_id: True}
            )
            self.store.complete_task(self.fence, task.id, {transition_id: True}, tokens)
        return task.id, workitem.id

    def finish(self) -> None:
        self.store.finish_case(self.fence, self.workflow.end_place.id)
        self._end(RunState.SUCCESS)

    def fail(self, transition_id: str, workitem_id: str, task_id: str) -> None:
        failure = Failure(
            kind="failed", reason="it raised", transition_id=transition_id, task_id=task_id, workitem_id=workitem_id
        )
        workitem = self.store.get_workitem(workitem_id)
        self.store.finish_workitem(
            Fence("workitems", workitem.id, workitem.incarnation), WorkitemState.FAILED, failure=failure
        )
        self.store.terminate_case(self.fence, failure)
        self._end(RunState.FAILED, failure)

    def _end(self, state: RunState, failure: Failure | None = None) -> None:
        self.store.advance_run(self.run_id, state, failure)
        self.store.set_work_order_state(self.order_id, WorkOrderState(state.value))

    def write(self, table: str, id: str, **changes) -> None:
        """A change no engine operation would make: the break under test."""
        with self.store.backend.transaction() as tx:
            tx.update(table, id, changes)

    def insert(self, table: str, row: dict) -> None:
        with self.store.backend.transaction() as tx:
            tx.insert(table, row)

    def token(self, **where) -> TokenRecord:
        (token,) = [t for t in self.store.tokens(self.id) if all(getattr(t, k) == v for k, v in where.items())]
        return token


def finished(store, workflow_id: str = "seq") -> Case:
    case = Case(store, workflow_id)
    for transition in {"seq": ["a", "b"], "par": ["split", "left", "right", "join"], "choice": ["x"]}[workflow_id]:
        case.fire(transition)
    case.finish()
    return case


def kinds(violations: list[Violation]) -> Counter:
    return Counter(v.kind for v in violations)


# -- clean states ------------------------------------------------------------------------


@pytest.mark.parametrize("workflow_id", ["seq", "par", "choice"])
def test_a_clean_finished_case_reports_nothing(store, workflow_id):
    case = finished(store, workflow_id)
    assert store.get_case(case.id).state is CaseState.FINISHED
    assert audit(store) == []
    assert audit(store, [case.order_id]) == []


def test_a_clean_failed_case_reports_nothing(store):
    case = Case(store, "par")
    case.fire("split")
    case.fire("left")
    task_id, workitem_id = case.fire("right", complete=False)
    case.fail("right", workitem_id, task_id)
    assert audit(store) == []


def test_a_running_work_order_is_unfinished_but_its_net_is_sound(store):
    case = Case(store, "seq")
    case.fire("a")
    found = audit(store)
    assert kinds(found) == {"work_order_unfinished": 1, "run_unfinished": 1}
    assert {v.entity_id for v in found} == {case.order_id, case.run_id}
    assert audit(store, require_final=False) == []


def test_only_the_given_work_orders_are_audited_and_unknown_ones_are_reported(store):
    clean, running = finished(store), Case(store, "seq")
    assert audit(store, [clean.order_id]) == []
    assert kinds(audit(store, [clean.order_id, running.order_id, "nope"])) == {
        "work_order_unfinished": 2,
        "run_unfinished": 1,
    }


def test_firing_bounds_follow_the_net_and_a_loop_has_none(store):
    assert firing_bounds(store.get_workflow("par"), Counter({"start": 1})) == {
        "split": 1,
        "left": 1,
        "right": 1,
        "join": 1,
    }
    assert firing_bounds(store.get_workflow("choice"), Counter({"start": 1})) == {"x": 1, "y": 1}
    assert firing_bounds(store.get_workflow("par"), Counter({"l": 1, "r2": 1})) == {
        "split": 0,
        "left": 1,
        "right": 0,
        "join": 1,
    }
    assert firing_bounds(store.get_workflow("loop"), Counter({"start": 1})) is None


# -- work orders and runs -----------------------------------------------------------------------


def test_a_work_order_whose_state_is_not_its_latest_runs(store):
    case = finished(store)
    case.write("work_orders", case.order_id, state="failed")
    assert [(v.kind, v.entity_id) for v in audit(store)] == [("work_order_state", case.order_id)]


def test_a_run_whose_case_is_missing_unless_the_run_is_lost(store):
    case = finished(store)
    case.write("runs", case.run_id, case_id="gone")
    assert kinds(audit(store)) == {"run_case_missing": 1}
    case.write("runs", case.run_id, state="lost")
    case.write("work_orders", case.order_id, state="lost")
    assert audit(store) == []


def test_a_run_and_its_case_must_name_each_other(store):
    case, other = finished(store), finished(store)
    case.write("cases", case.id, run_id=other.run_id, work_order_id=other.order_id)
    found = kinds(audit(store))
    assert found["run_case_link"] == 1 and found["case_run_link"] == 1


def test_a_standalone_case_naming_a_missing_run(store):
    case = finished(store)
    case.write("cases", case.id, run_id="missing")
    assert {"run_case_link", "case_run_link"} <= set(kinds(audit(store)))


def test_a_run_state_that_does_not_follow_from_its_case(store):
    case = finished(store)
    case.write("runs", case.run_id, state="failed")
    case.write("work_orders", case.order_id, state="failed")
    assert [(v.kind, v.entity_id) for v in audit(store)] == [("run_case_state", case.run_id)]


# -- tokens ---------------------------------------------------------------------------------------------


def test_a_token_locked_or_consumed_by_a_foreign_task(store):
    case, other = finished(store), finished(store)
    foreign = store.tasks(other.id)[0].id
    token = case.token(place_id="mid")
    case.write("tokens", token.id, locked_by_task_id=foreign, consumed_by_task_id=foreign)
    assert "token_link" in kinds(audit(store))


def test_token_states_that_contradict_their_links(store):
    case = finished(store)
    token = case.token(place_id="mid")
    case.write("tokens", token.id, state="free")
    assert {"token_state", "token_live_in_finished_case"} <= set(kinds(audit(store)))
    case.write("tokens", token.id, state="locked", consumed_by_task_id=None, locked_by_task_id=None)
    assert "token_state" in kinds(audit(store))


def test_a_token_consumed_by_a_task_that_did_not_complete(store):
    case = Case(store, "seq")
    case.fire("a")
    task_id, workitem_id = case.fire("b", complete=False)
    token = case.token(place_id="mid")
    case.write("tokens", token.id, state="consumed", consumed_by_task_id=task_id)
    assert kinds(audit(store, require_final=False)) == {"token_consumed_by_unfinished_task": 1}


def test_a_task_completed_twice_for_the_same_tokens(store):
    """The second completion consumed nothing (the tokens were the first's)
    and issued a second token: a duplicated step."""
    case = Case(store, "seq")
    first, _ = case.fire("a")
    twin = store.claim_task(store.create_task(case.fence, "a").id)
    twin_fence = Fence("tasks", twin.id, twin.incarnation)
    case.write("tasks", twin.id, state="allocated")
    workitem = store.claim_workitem(store.create_workitem(twin_fence, {}).id)
    store.begin_attempt(Fence("workitems", workitem.id, workitem.incarnation))
    store.finish_workitem(Fence("workitems", workitem.id, workitem.incarnation), WorkitemState.COMPLETED, output={})
    store.complete_task(
        case.fence, twin.id, {}, routing.issue_tokens(case.workflow, "a", case_id=case.id, task_id=twin.id, payload={})
    )
    found = kinds(audit(store, require_final=False))
    assert found["task_consumed"] == 1 and found["transition_completed_twice"] == 1
    assert found["workitem_completed_twice"] == 1


def test_a_task_that_issued_its_tokens_twice(store):
    case = finished(store)
    task = next(t for t in store.tasks(case.id) if t.transition_id == "a")
    case.insert(
        "tokens",
        {
            "id": new_id(),
            "case_id": case.id,
            "workflow_id": "seq",
            "place_id": "mid",
            "state": "consumed",
            "produced_by_task_id": task.id,
            "payload": {},
            "locked_by_task_id": store.tasks(case.id)[1].id,
            "consumed_by_task_id": store.tasks(case.id)[1].id,
            "created_at": 0.0,
        },
    )
    found = kinds(audit(store))
    assert found["task_issued"] == 1 and found["task_consumed"] == 1  # b consumed two tokens


def test_an_and_split_that_issued_one_token_and_a_join_that_took_one(store):
    case = Case(store, "par")
    task_id, _ = case.fire("split")
    case.write("tokens", case.token(place_id="r").id, produced_by_task_id="genesis")
    assert [v.kind for v in audit(store, require_final=False)] == ["task_issued"]


def test_an_abandoned_task_that_issued_tokens(store):
    case = Case(store, "seq")
    task_id, _ = case.fire("a")
    case.write("tasks", task_id, state="abandoned")
    found = kinds(audit(store, require_final=False))
    assert found["task_issued"] == 1 and found["token_consumed_by_unfinished_task"] == 1


# -- workitems and ended cases ----------------------------------------------------------------------------


def test_a_completed_task_whose_workitem_did_not_complete(store):
    case = finished(store)
    workitem = store.workitems(case_id=case.id)[0]
    case.write("workitems", workitem.id, state="failed")
    assert kinds(audit(store)) == {"task_workitems": 1}


def test_a_completed_task_without_workitems(store):
    case = finished(store)
    workitem = store.workitems(case_id=case.id)[0]
    case.write("workitems", workitem.id, task_id="elsewhere")
    assert kinds(audit(store)) == {"task_workitems": 1}


def test_a_live_token_in_a_finished_case(store):
    case = finished(store)
    case.insert(
        "tokens",
        {
            "id": new_id(),
            "case_id": case.id,
            "workflow_id": "seq",
            "place_id": "mid",
            "state": "free",
            "produced_by_task_id": "genesis",
            "payload": {},
            "created_at": 0.0,
        },
    )
    assert kinds(audit(store)) == {"token_live_in_finished_case": 1}


def test_a_finished_case_needs_consumed_end_tokens_each_issued_by_a_task(store):
    case = finished(store)
    end = case.token(place_id="end")
    case.write("tokens", end.id, consumed_by_task_id=end.locked_by_task_id)
    assert "end_token" in kinds(audit(store))
    case.write("tokens", end.id, consumed_by_task_id=FINISHER)
    case.insert(
        "tokens",
        {
            "id": new_id(),
            "case_id": case.id,
            "workflow_id": "seq",
            "place_id": "end",
            "state": "consumed",
            "produced_by_task_id": "genesis",
            "payload": {},
            "consumed_by_task_id": FINISHER,
            "created_at": 0.0,
        },
    )
    assert "end_token" in kinds(audit(store))


def test_an_end_token_consumed_in_a_case_that_did_not_finish(store):
    case = Case(store, "seq")
    case.write("tokens", case.token(place_id="start").id, state="consumed", consumed_by_task_id=FINISHER)
    assert kinds(audit(store, require_final=False)) == {"end_token": 1}


def test_tasks_and_workitems_left_live_in_an_ended_case(store):
    case = Case(store, "par")
    case.fire("split")
    left_task, left_item = case.fire("left", complete=False)
    right_task, right_item = case.fire("right", complete=False)
    case.fail("right", right_item, right_task)
    assert audit(store) == []  # terminating abandoned the left branch
    case.write("tasks", left_task, state="executing")
    case.write("workitems", left_item, state="started")
    found = audit(store)
    assert sorted((v.kind, v.entity_id) for v in found) == sorted(
        [("task_live_in_ended_case", left_task), ("workitem_live_in_ended_case", left_item)]
    )
    assert all(case.id in v.detail for v in found)


def test_a_finished_case_with_a_live_task(store):
    case = finished(store, "choice")
    loser = store.create_task(case.fence, "y")
    found = audit(store)
    assert [(v.kind, v.entity_id) for v in found] == [("task_live_in_ended_case", loser.id)]
    assert store.get_task(loser.id).state is TaskState.STARTED
