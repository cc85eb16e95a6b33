"""Durable timers end to end on both bases: a deadline stored when the step
is enabled, a timer that loses (or wins) a deferred choice against a person,
a deadline already past, and a passivated case the Engine wakes."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime

import pytest

from petriflow.engine import timers
from petriflow.engine.errors import InvalidWorkflow, TaskNotEnabled
from petriflow.engine.workflow import Transition
from tests.engines import BASES, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(90)

WAIT = workflow(
    "wait",
    ["start", "waiting", "end"],
    [
        {"id": "receive", "executor": "echo", "params": {"received": True}},
        {"id": "cool_off", "executor": "timer", "params": {"seconds": 1.5}},
    ],
    ["start -> receive", "receive -> waiting", "waiting -> cool_off", "cool_off -> end"],
)

# "approve within 1.5 s, else escalate" (a deferred choice, WCP-16).
APPROVE_OR_ESCALATE = workflow(
    "approve-or-escalate",
    ["start", "asked", "approved", "escalated", "end"],
    [
        {"id": "ask", "executor": "noop"},
        {"id": "approve", "executor": "manual"},
        {"id": "escalate", "executor": "timer", "params": {"seconds": 1.5}},
        {"id": "record", "executor": "echo", "params": {"outcome": "approved"}},
        {"id": "page", "executor": "echo", "params": {"outcome": "escalated"}},
    ],
    [
        "start -> ask",
        "ask -> asked",
        "asked -> approve",
        "asked -> escalate",
        "approve -> approved",
        "escalate -> escalated",
        "approved -> record",
        "escalated -> page",
        "record -> end",
        "page -> end",
    ],
)

PAST = workflow(
    "past",
    ["start", "end"],
    [{"id": "at", "executor": "timer", "params": {"until": "2020-01-01T00:00:00Z"}}],
    ["start -> at", "at -> end"],
)

LONG = workflow(
    "long",
    ["start", "end"],
    [{"id": "later", "executor": "timer", "params": {"seconds": 3}}],
    ["start -> later", "later -> end"],
)


@pytest.fixture(params=BASES)
def client(request, tmp_path):
    with running_engine(request.param, f"sqlite:///{tmp_path}/petriflow.db") as client:
        for document in (WAIT, APPROVE_OR_ESCALATE, PAST):
            client.put_workflow(document)
        client.storage_path = tmp_path / "petriflow.db"
        yield client


def steps_of(view):
    (run,) = view.runs
    return run, {step.transition_id: step for step in run.steps}


def task_of(client, case_id: str, transition_id: str):
    return next(t for t in client.get_case(case_id).tasks if t.transition_id == transition_id)


def test_a_timer_fires_at_the_deadline_stored_when_its_step_was_enabled(client):
    submitted = client.submit("wait", {"n": 1})
    timer = wait_for(lambda: client.get_work_order(submitted.work_order_id).runs[0].timers)
    (shown,) = timer
    assert shown.transition_id == "cool_off"
    task = client.get_task(shown.task_id)
    assert task.wake_at == shown.due_at and shown.due_at == pytest.approx(task.created_at + 1.5, abs=0.01)
    view = client.wait_work_order(submitted.work_order_id)
    run, steps = steps_of(view)
    assert run.run.state.value == "success" and run.timers == []
    fired = steps["cool_off"]
    assert fired.started_at == task.created_at, "the step began when its deadline was set: its wait is the step"
    assert fired.finished_at >= shown.due_at, "never before its deadline"
    assert fired.finished_at - shown.due_at < 1.0
    assert fired.output == {"n": 1, "received": True}, "a timer passes its input through"


def test_nobody_approves_in_time_so_the_timer_escalates_and_the_approval_is_abandoned(client):
    submitted = client.submit("approve-or-escalate", {"ticket": 3})
    view = client.wait_work_order(submitted.work_order_id)
    run, steps = steps_of(view)
    assert run.run.state.value == "success"
    assert set(steps) == {"ask", "escalate", "page"} and steps["page"].output["outcome"] == "escalated"
    approve = task_of(client, run.run.case_id, "approve")
    assert approve.state.value == "abandoned"


def test_an_approval_in_time_wins_and_the_timer_is_abandoned(client):
    submitted = client.submit("approve-or-escalate", {"ticket": 4})
    case_id = client.get_work_order(submitted.work_order_id).runs[0].run.case_id
    approve = wait_for(lambda: next((t for t in client.get_case(case_id).tasks if t.transition_id == "approve"), None))
    assert approve.state.value == "started", "a manual step in a deferred choice waits for a person to take it"
    client.preexecute(approve.id)
    workitem = next(w for w in client.get_case(case_id).workitems if w.transition_id == "approve")
    client.complete_workitem(workitem.id, {"by": "ada"})
    view = client.wait_work_order(submitted.work_order_id)
    run, steps = steps_of(view)
    assert set(steps) == {"ask", "approve", "record"} and steps["record"].output["by"] == "ada"
    escalate = task_of(client, case_id, "escalate")
    assert escalate.state.value == "abandoned"
    with sqlite3.connect(client.storage_path) as db:  # the Engine's scan reads only timers still waiting
        assert db.execute("SELECT waiting FROM timers WHERE id = ?", (escalate.id,)).fetchone() == (0,)
    time.sleep(1.8)  # past the deadline: an abandoned timer never fires
    assert "escalate" not in steps_of(client.get_work_order(submitted.work_order_id))[1]


def test_show_names_the_manual_step_waiting_in_a_deferred_choice_and_complete_task_takes_it(client):
    submitted = client.submit("approve-or-escalate", {"ticket": 5})
    run = wait_for(lambda: (r := client.get_work_order(submitted.work_order_id).runs[0]).choices and r)
    (choice,) = run.choices
    assert choice.transition_id == "approve" and [t.transition_id for t in run.timers] == ["escalate"]
    workitem_id = client.complete_task(choice.task_id, {"by": "grace"})
    assert client.get_workitem(workitem_id).output == {"by": "grace"}
    run, steps = steps_of(client.wait_work_order(submitted.work_order_id))
    assert set(steps) == {"ask", "approve", "record"} and run.choices == [] and run.timers == []


def test_a_timer_cannot_be_taken_before_its_deadline(client):
    submitted = client.submit("wait", {})
    case_id = client.get_work_order(submitted.work_order_id).runs[0].run.case_id
    timer = wait_for(lambda: client.get_work_order(submitted.work_order_id).runs[0].timers)[0]
    with pytest.raises(TaskNotEnabled, match="is a timer due at"):
        client.preexecute(timer.task_id)
    assert client.wait_work_order(submitted.work_order_id).runs[0].run.state.value == "success"
    assert task_of(client, case_id, "cool_off").state.value == "completed"


@pytest.mark.parametrize(
    "until",
    ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00", "2030-01-01T01:00:00+01:00"],  # no offset: UTC, as documented
)
def test_until_is_an_iso_instant_read_as_utc_unless_it_says_otherwise(until):
    transition = Transition(id="t", executor="timer", params={"until": until})
    assert timers.param_problems(transition.params) == []
    assert timers.deadline(transition, now=0.0) == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


def test_a_deadline_already_past_fires_at_once(client):
    started = time.time()
    view = client.wait_work_order(client.submit("past", {"late": True}).work_order_id)
    run, steps = steps_of(view)
    assert run.run.state.value == "success" and steps["at"].finished_at - started < 5
    task = task_of(client, run.run.case_id, "at")
    assert datetime.fromtimestamp(task.wake_at, UTC) == datetime(2020, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"seconds": -1},
        {"seconds": "soon"},
        {"until": "tomorrow"},
        {"until": 1767225600},
        {"seconds": 1, "until": "2026-12-24T18:00:00Z"},
    ],
)
def test_a_timer_with_bad_params_is_refused_when_loaded(client, params):
    document = workflow(
        "bad-timer", ["start", "end"], [{"id": "t", "executor": "timer", "params": params}], ["start -> t", "t -> end"]
    )
    with pytest.raises(InvalidWorkflow, match="transition 't': .*timer"):
        client.put_workflow(document)


@pytest.mark.parametrize("base", BASES)
def test_the_engine_wakes_a_passivated_case_when_its_timer_is_due(base, tmp_path):
    with running_engine(base, f"sqlite:///{tmp_path}/petriflow.db", idle_timeout_s=0.3) as client:
        client.put_workflow(LONG)
        submitted = client.submit("long", {})
        case_id = client.get_work_order(submitted.work_order_id).runs[0].run.case_id
        due = wait_for(lambda: client.get_work_order(submitted.work_order_id).runs[0].timers)[0].due_at
        wait_for(lambda: not any(a.entity_id == case_id for a in client.list_actors()), timeout_s=2.5)
        assert time.time() < due, "the case passivated while its timer waits"
        view = client.wait_work_order(submitted.work_order_id)
        _, steps = steps_of(view)
        assert due <= steps["later"].finished_at < due + 2.0
