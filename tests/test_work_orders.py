"""Work orders through the Engine: runs, steps, every run state, retry from a
step, retry_many, cancel, events and cron (after Lightning.WorkOrders)."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from datetime import UTC, datetime

import pytest

from petriflow.engine import codec
from petriflow.engine.errors import AlreadyCompleted, Invalid, NotFound, WorkflowDiscarded
from petriflow.engine.states import RunState, WorkOrderState
from petriflow.engine.wire import SubmitWorkOrder
from tests.engines import BASES, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(90)

JOURNAL = "tests.executors:Journal"

# s splits into two branches joined below: b1 -> j and b2 -> j. b1 is slow, so b2
# has completed when b1 fails for want of the release file.
BRANCHES = workflow(
    "branches",
    ["start", "p1", "p2", "q1", "q2", "end"],
    [
        {"id": "s", "executor": JOURNAL, "split": "and"},
        {"id": "b1", "executor": JOURNAL, "params": {"fail_unless_exists": "release", "seconds": 0.3}},
        {"id": "b2", "executor": JOURNAL},
        {"id": "j", "executor": JOURNAL, "join": "and"},
    ],
    [
        "start -> s",
        "s -> p1",
        "s -> p2",
        "p1 -> b1",
        "p2 -> b2",
        "b1 -> q1",
        "b2 -> q2",
        "q1 -> j",
        "q2 -> j",
        "j -> end",
    ],
)

STATES = {
    "success": [{"id": "t", "executor": "echo"}],
    "failed": [{"id": "t", "executor": "fail", "params": {"reason": "no"}}],
    "killed": [{"id": "t", "executor": "sleep", "params": {"seconds": 20}, "timeout_s": 0.2}],
    "exception": [{"id": "t", "executor": "tests.executors:BadPayload"}],
    "manual": [{"id": "t", "executor": "manual"}],
}


@pytest.fixture
def client(home):
    with running_engine("simpleSystemBase", f"sqlite:///{home}/petriflow.db") as client:
        client.put_workflow(BRANCHES)
        for name, transitions in STATES.items():
            client.put_workflow(workflow(name, ["start", "end"], transitions, ["start -> t", "t -> end"]))
        yield client


def _executions(home) -> Counter:
    path = home / "journal.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["transition"] for line in lines)


def _steps(run_view) -> dict[str, str]:
    return {step.transition_id: step.step_id for step in run_view.steps}


def test_a_submission_makes_a_work_order_with_one_successful_run(client):
    submitted = client.submit("success", {"order": 1})
    view = client.wait_work_order(submitted.work_order_id)
    assert view.work_order.state is WorkOrderState.SUCCESS
    assert view.work_order.trigger_type == "manual" and view.work_order.input == {"order": 1}
    (run,) = view.runs
    assert run.run.id == submitted.run_id and run.run.state is RunState.SUCCESS
    assert run.run.claimed_at <= run.run.started_at <= run.run.finished_at
    (step,) = run.steps
    assert (step.transition_id, step.state, step.attempt) == ("t", "completed", 1)
    assert step.input == {"order": 1} and step.output == {"order": 1}
    assert step.step_id == step.workitem_id and step.started_at <= step.finished_at


@pytest.mark.parametrize(
    "name,run_state",
    [
        ("failed", RunState.FAILED),
        ("killed", RunState.KILLED),
        ("exception", RunState.EXCEPTION),
    ],
)
def test_each_ending_of_a_case_is_a_run_state_and_the_work_order_state(client, name, run_state):
    view = client.wait_work_order(client.submit(name, {}).work_order_id)
    (run,) = view.runs
    assert run.run.state is run_state
    assert view.work_order.state.value == run_state.value
    assert run.run.failure is not None and run.run.failure.transition_id == "t"


def test_cancel_ends_a_waiting_run_as_cancelled(client):
    submitted = client.submit("manual", {})
    wait_for(lambda: client.get_work_order(submitted.work_order_id).work_order.state is WorkOrderState.RUNNING)
    client.cancel(submitted.work_order_id)
    view = client.wait_work_order(submitted.work_order_id)
    assert view.work_order.state is WorkOrderState.CANCELLED
    assert view.runs[0].run.state is RunState.CANCELLED
    with pytest.raises(AlreadyCompleted):
        client.cancel(submitted.work_order_id)


def test_a_run_whose_workflow_vanished_from_storage_is_lost_on_restore(home):
    """On fresh processes (multiproc): a process caches the workflows it read."""
    url = f"sqlite:///{home}/petriflow.db"
    with running_engine("multiprocTCPBase", url) as client:
        client.put_workflow(workflow("manual", ["start", "end"], STATES["manual"], ["start -> t", "t -> end"]))
        submitted = client.submit("manual", {})
        wait_for(lambda: client.get_work_order(submitted.work_order_id).work_order.state is WorkOrderState.RUNNING)
    with sqlite3.connect(f"{home}/petriflow.db") as db:
        db.execute("DELETE FROM workflows")
    with running_engine("multiprocTCPBase", url) as client:
        view = client.wait_work_order(submitted.work_order_id)
    assert view.runs[0].run.state is RunState.LOST and view.work_order.state is WorkOrderState.LOST
    assert "cannot be restored" in view.runs[0].run.failure.reason


def test_retry_from_a_failed_branch_reruns_it_and_the_join_and_keeps_the_rest(client, home):
    first = client.wait_work_order(client.submit("branches", {"n": 1}).work_order_id)
    (old,) = first.runs
    assert old.run.state is RunState.FAILED
    assert _executions(home) == {"s": 1, "b2": 1}
    (home / "release").touch()
    new_run_id = client.retry(old.run.id, _steps(old)["b1"])
    view = client.wait_work_order(first.work_order.id)
    assert view.work_order.id == first.work_order.id and len(view.runs) == 2
    new = view.runs[1]
    assert new.run.id == new_run_id and new.run.state is RunState.SUCCESS
    assert view.work_order.state is WorkOrderState.SUCCESS
    assert new.run.retried_from_run_id == old.run.id
    kept = {s.transition_id: s for s in new.steps if s.kept}
    assert {t: s.step_id for t, s in kept.items()} == {"s": _steps(old)["s"], "b2": _steps(old)["b2"]}
    rerun = {s.transition_id: s.step_id for s in new.steps if not s.kept}
    assert set(rerun) == {"b1", "j"} and rerun["b1"] != _steps(old)["b1"]
    assert _executions(home) == {"s": 1, "b2": 1, "b1": 1, "j": 1}, "kept steps are not executed again"
    join = next(s for s in new.steps if s.transition_id == "j")
    assert join.input == {"n": 1, "s": True, "b1": True, "b2": True}


def test_retry_of_a_successful_run_from_a_branch_feeds_the_join_the_kept_branch_output(client, home):
    (home / "release").touch()
    first = client.wait_work_order(client.submit("branches", {"n": 2}).work_order_id)
    assert first.work_order.state is WorkOrderState.SUCCESS
    old = first.runs[0]
    client.retry(old.run.id, _steps(old)["b1"])
    new = client.wait_work_order(first.work_order.id).runs[1]
    assert {s.transition_id for s in new.steps if s.kept} == {"s", "b2"}
    assert {s.transition_id for s in new.steps if not s.kept} == {"b1", "j"}
    assert _executions(home) == {"s": 1, "b1": 2, "b2": 1, "j": 2}


def test_retry_from_a_kept_step_of_a_retried_run(client, home):
    first = client.wait_work_order(client.submit("branches", {"n": 3}).work_order_id)
    (home / "release").touch()
    client.retry(first.runs[0].run.id, _steps(first.runs[0])["b1"])
    second = client.wait_work_order(first.work_order.id).runs[1]
    kept_b2 = next(s.step_id for s in second.steps if s.transition_id == "b2")
    client.retry(second.run.id, kept_b2)
    third = client.wait_work_order(first.work_order.id).runs[2]
    assert third.run.state is RunState.SUCCESS
    assert {s.transition_id for s in third.steps if s.kept} == {"s", "b1"}
    assert _executions(home) == {"s": 1, "b1": 1, "b2": 2, "j": 2}


def test_retry_refuses_what_cannot_be_retried(client):
    submitted = client.submit("manual", {})
    with pytest.raises(NotFound):
        client.retry("no-such-run", "no-such-step")
    with pytest.raises(Invalid, match="run in progress"):
        client.retry(submitted.run_id, "whatever")
    done = client.wait_work_order(client.submit("success", {}).work_order_id)
    with pytest.raises(NotFound, match="is not a step of run"):
        client.retry(done.runs[0].run.id, "no-such-step")
    client.discard_workflow("success")
    with pytest.raises(WorkflowDiscarded):
        client.retry(done.runs[0].run.id, done.runs[0].steps[0].step_id)
    assert len(client.get_work_order(done.work_order.id).runs) == 1


def test_retry_many_enqueues_finished_work_orders_and_discards_the_rest(client):
    failed = [client.wait_work_order(client.submit("failed", {"i": i}).work_order_id) for i in range(2)]
    busy = client.submit("manual", {})
    enqueued, discarded = client.retry_many([f.work_order.id for f in failed] + [busy.work_order_id, "nope"])
    assert (enqueued, discarded) == (2, 2)
    for order in failed:
        view = client.wait_work_order(order.work_order.id)
        assert [r.run.state for r in view.runs] == [RunState.FAILED, RunState.FAILED]
        assert view.runs[1].steps[0].input == view.work_order.input


def test_subscribers_receive_work_order_and_run_events(client):
    stream = client.events(timeout_s=10)
    client.asys.tell(client.engine, codec.encode(SubmitWorkOrder("success", {})))
    seen = []
    for event in stream:
        seen.append((event.kind, event.run.state.value if event.run else None, event.work_order.state.value))
        if event.kind == "work_order_updated" and event.work_order.state is WorkOrderState.SUCCESS:
            break
    stream.close()
    assert seen == [
        ("work_order_created", None, "pending"),
        ("run_created", "available", "pending"),
        ("run_updated", "claimed", "pending"),
        ("run_updated", "started", "running"),
        ("work_order_updated", "started", "running"),
        ("run_updated", "success", "success"),
        ("work_order_updated", "success", "success"),
    ]


def test_cron_triggers_fire_once_per_tick_and_missed_ticks_once(client):
    client.put_workflow(
        workflow("nightly", ["start", "end"], [{"id": "t", "executor": "echo"}], ["start -> t", "t -> end"])
        | {"triggers": [{"id": "every-5", "type": "cron", "cron": "*/5 * * * *"}]}
    )
    t0 = datetime(2026, 1, 1, 10, 2, tzinfo=UTC).timestamp()
    assert client.fire_cron(t0) == [], "the first look only starts the clock"
    assert client.fire_cron(t0 + 60) == []
    (fired,) = client.fire_cron(t0 + 4 * 60)
    order = client.get_work_order(fired).work_order
    assert (order.trigger_type, order.trigger_id, order.input) == (
        "cron",
        "every-5",
        {"tick": "2026-01-01T10:05:00+00:00"},
    )
    assert client.fire_cron(t0 + 5 * 60) == []
    after_downtime = client.fire_cron(t0 + 3 * 3600)
    assert len(after_downtime) == 1, "missed ticks run at most once"
    assert client.get_work_order(after_downtime[0]).work_order.input == {"tick": "2026-01-01T13:00:00+00:00"}


def test_webhook_triggers_submit_their_workflow(client):
    client.put_workflow(
        workflow("hooked", ["start", "end"], [{"id": "t", "executor": "echo"}], ["start -> t", "t -> end"])
        | {"triggers": [{"id": "hook-1", "type": "webhook"}]}
    )
    submitted = client.submit_webhook("hook-1", {"body": [1, 2]})
    view = client.wait_work_order(submitted.work_order_id)
    assert view.work_order.state is WorkOrderState.SUCCESS and view.work_order.trigger_type == "webhook"
    with pytest.raises(NotFound, match="no active workflow has a webhook trigger 'nope'"):
        client.submit_webhook("nope", {})
    with pytest.raises(Invalid, match="already belongs to workflow 'hooked'"):
        client.put_workflow(
            workflow("thief", ["start", "end"], [{"id": "t", "executor": "echo"}], ["start -> t", "t -> end"])
            | {"triggers": [{"id": "hook-1", "type": "webhook"}]}
        )


def test_work_orders_are_listed_by_state_workflow_and_time(client):
    done = client.wait_work_order(client.submit("success", {}).work_order_id)
    waiting = client.submit("manual", {})
    assert [o.id for o in client.list_work_orders(["success"])] == [done.work_order.id]
    assert [o.id for o in client.list_work_orders(workflow_id="manual")] == [waiting.work_order_id]
    assert client.list_work_orders(since=done.work_order.created_at + 3600) == []
    kinds = {a.kind for a in client.list_actors()}
    assert {"engine", "work_order", "case"} <= kinds


@pytest.mark.parametrize("base", BASES)
def test_the_work_order_actor_tree_on_both_bases(base, home):
    with running_engine(base, f"sqlite:///{home}/petriflow.db") as client:
        client.put_workflow(workflow("success", ["start", "end"], STATES["success"], ["start -> t", "t -> end"]))
        orders = [client.submit("success", {"i": i}).work_order_id for i in range(3)]
        views = [client.wait_work_order(o) for o in orders]
    assert all(v.work_order.state is WorkOrderState.SUCCESS for v in views)
    assert [v.runs[0].steps[0].output for v in views] == [{"i": i} for i in range(3)]


def test_a_work_order_whose_runs_all_ended_is_settled_on_restore(home):
    """A crash between recording a run's end and its work order's state."""
    url = f"sqlite:///{home}/petriflow.db"
    with running_engine("simpleSystemBase", url) as client:
        client.put_workflow(workflow("success", ["start", "end"], STATES["success"], ["start -> t", "t -> end"]))
        done = client.wait_work_order(client.submit("success", {}).work_order_id)
    with sqlite3.connect(f"{home}/petriflow.db") as db:
        db.execute("UPDATE work_orders SET state = 'running' WHERE id = ?", (done.work_order.id,))
    with running_engine("simpleSystemBase", url) as client:
        settled = client.wait_work_order(done.work_order.id, 20)
    assert settled.work_order.state is WorkOrderState.SUCCESS


def test_a_run_whose_case_ended_unrecorded_is_settled_when_its_work_order_restarts(home):
    """Killed after the case finished but before its work order recorded the run."""
    url = f"sqlite:///{home}/petriflow.db"
    with running_engine("simpleSystemBase", url) as client:
        client.put_workflow(workflow("success", ["start", "end"], STATES["success"], ["start -> t", "t -> end"]))
        done = client.wait_work_order(client.submit("success", {}).work_order_id)
    with sqlite3.connect(f"{home}/petriflow.db") as db:
        db.execute("UPDATE runs SET state = 'started', finished_at = NULL WHERE id = ?", (done.runs[0].run.id,))
        db.execute("UPDATE work_orders SET state = 'running' WHERE id = ?", (done.work_order.id,))
    with running_engine("simpleSystemBase", url) as client:
        settled = client.wait_work_order(done.work_order.id, 20)
    assert settled.work_order.state is WorkOrderState.SUCCESS and settled.runs[0].run.state is RunState.SUCCESS
