"""Routing by outcome and data, end to end on both bases: arc conditions,
`xor` and `or` splits, `no_route`, and failure arcs (Lightning's edges)."""

from __future__ import annotations

import pytest

from petriflow.engine.errors import InvalidWorkflow
from petriflow.workorders.audit import audit
from tests.engines import BASES, running_engine, workflow

pytestmark = pytest.mark.timeout(90)


def arc(source: str, target: str, when: str | None = None) -> dict[str, str]:
    return {"from": source, "to": target, **({"when": when} if when else {})}


def with_arcs(document: dict, arcs: list[dict[str, str]]) -> dict:
    return {**document, "arcs": arcs}


# An exclusive choice (WCP-4) on the step's output: big amounts go to a manager.
EXCLUSIVE = with_arcs(
    workflow(
        "exclusive",
        ["start", "big", "small", "end"],
        [
            {"id": "check", "executor": "noop", "split": "xor"},
            {"id": "manager", "executor": "echo", "params": {"lane": "manager"}},
            {"id": "auto", "executor": "echo", "params": {"lane": "auto"}},
        ],
        [],
    ),
    [
        arc("start", "check"),
        arc("check", "big", "output.amount > 1000 and not input.dry_run"),
        arc("check", "small"),
        arc("big", "manager"),
        arc("small", "auto"),
        arc("manager", "end"),
        arc("auto", "end"),
    ],
)

# A multi-choice (WCP-6): every channel the input asks for; none is no route.
MULTI = with_arcs(
    workflow(
        "multi",
        ["start", "by_mail", "by_sms", "end"],
        [
            {"id": "notify", "executor": "noop", "split": "or"},
            {"id": "mail", "executor": "echo", "params": {"mailed": True}},
            {"id": "sms", "executor": "echo", "params": {"texted": True}},
        ],
        [],
    ),
    [
        arc("start", "notify"),
        arc("notify", "by_mail", "input.email == true"),
        arc("notify", "by_sms", "'sms' in input.channels"),
        arc("by_mail", "mail"),
        arc("by_sms", "sms"),
        arc("mail", "end"),
        arc("sms", "end"),
    ],
)

# A failing step whose failure is handled: the run goes on and succeeds.
HANDLED = with_arcs(
    workflow(
        "handled",
        ["start", "charged", "declined", "end"],
        [
            {"id": "charge", "executor": "fail", "params": {"reason": "card declined"}},
            {"id": "ship", "executor": "echo", "params": {"shipped": True}},
            {"id": "refund", "executor": "echo", "params": {"refunded": True}},
        ],
        [],
    ),
    [
        arc("start", "charge"),
        arc("charge", "charged"),
        arc("charge", "declined", "failure"),
        arc("charged", "ship"),
        arc("declined", "refund"),
        arc("ship", "end"),
        arc("refund", "end"),
    ],
)

# A step that outlives its timeout, handled; and a handler that fails itself.
TIMED_OUT = with_arcs(
    workflow(
        "timed-out",
        ["start", "late", "end"],
        [
            {"id": "slow", "executor": "sleep", "params": {"seconds": 30}, "timeout_s": 0.3},
            {"id": "alert", "executor": "echo", "params": {"alerted": True}},
        ],
        [],
    ),
    [
        arc("start", "slow"),
        arc("slow", "end"),
        arc("slow", "late", "failure"),
        arc("late", "alert"),
        arc("alert", "end"),
    ],
)

FAILING_HANDLER = with_arcs(
    workflow(
        "failing-handler",
        ["start", "oops", "end"],
        [
            {"id": "first", "executor": "fail", "params": {"reason": "first failed"}},
            {"id": "handler", "executor": "fail", "params": {"reason": "the handler failed too"}},
        ],
        [],
    ),
    [
        arc("start", "first"),
        arc("first", "end"),
        arc("first", "oops", "failure"),
        arc("oops", "handler"),
        arc("handler", "end"),
    ],
)

# `always`: a step's success and its failure both go on to the same place.
ALWAYS = with_arcs(
    workflow(
        "always",
        ["start", "after", "end"],
        [{"id": "try", "executor": "fail", "params": {"reason": "no luck"}}, {"id": "log", "executor": "noop"}],
        [],
    ),
    [arc("start", "try"), arc("try", "after", "always"), arc("after", "log"), arc("log", "end")],
)

# A step whose process dies every time crashes past the restart intensity: also handled.
CRASHING = with_arcs(
    workflow(
        "crashing",
        ["start", "down", "end"],
        [
            {"id": "native", "executor": "tests.executors:ExitAbruptly", "isolate": True},
            {"id": "page", "executor": "echo", "params": {"paged": True}},
        ],
        [],
    ),
    [
        arc("start", "native"),
        arc("native", "end"),
        arc("native", "down", "failure"),
        arc("down", "page"),
        arc("page", "end"),
    ],
)

DOCUMENTS = (EXCLUSIVE, MULTI, HANDLED, TIMED_OUT, FAILING_HANDLER, ALWAYS, CRASHING)


@pytest.fixture(params=BASES)
def client(request, tmp_path):
    with running_engine(request.param, f"sqlite:///{tmp_path}/petriflow.db") as client:
        for document in DOCUMENTS:
            client.put_workflow(document)
        client.storage_path = tmp_path / "petriflow.db"
        yield client


def finished(client, workflow_id: str, input: dict):
    view = client.wait_work_order(client.submit(workflow_id, input).work_order_id)
    (run,) = view.runs
    return view, run, {step.transition_id: step for step in run.steps}


def test_an_exclusive_choice_takes_the_first_arc_whose_condition_holds(client):
    view, run, steps = finished(client, "exclusive", {"amount": 5000})
    assert view.work_order.state.value == "success"
    assert set(steps) == {"check", "manager"} and steps["manager"].output["lane"] == "manager"
    _, _, steps = finished(client, "exclusive", {"amount": 10})
    assert set(steps) == {"check", "auto"}
    _, _, steps = finished(client, "exclusive", {"amount": 5000, "dry_run": True})
    assert set(steps) == {"check", "auto"}, "the expression reads the input too"
    _, _, steps = finished(client, "exclusive", {})
    assert set(steps) == {"check", "auto"}, "a missing key is null, and null > 1000 is false"


def test_a_multi_choice_takes_every_arc_whose_condition_holds(client):
    _, run, steps = finished(client, "multi", {"email": True, "channels": ["sms"]})
    assert run.run.state.value == "success" and set(steps) == {"notify", "mail", "sms"}
    _, run, steps = finished(client, "multi", {"email": True, "channels": []})
    assert run.run.state.value == "success" and set(steps) == {"notify", "mail"}


def test_when_no_arc_holds_the_run_fails_with_no_route_naming_the_transition(client):
    view, run, steps = finished(client, "multi", {"email": False, "channels": ["fax"]})
    assert view.work_order.state.value == "failed" and run.run.state.value == "failed"
    assert run.run.failure.kind == "no_route"
    assert "notify" in run.run.failure.reason and run.run.failure.transition_id == "notify"
    assert steps["notify"].state == "completed", "the step itself succeeded; its output had nowhere to go"


def test_a_handled_failure_goes_along_the_failure_arc_and_the_run_succeeds(client):
    view, run, steps = finished(client, "handled", {"order": 7})
    assert view.work_order.state.value == "success" and run.run.state.value == "success"
    assert run.run.failure is None
    assert steps["charge"].state == "failed", "the failed step keeps its own state"
    assert set(steps) == {"charge", "refund"}
    assert steps["refund"].input == {"error": {"kind": "failed", "reason": "card declined"}, "input": {"order": 7}}


def test_a_timeout_is_a_failure_a_failure_arc_takes(client):
    _, run, steps = finished(client, "timed-out", {"n": 1})
    assert run.run.state.value == "success"
    assert steps["slow"].state == "failed" and steps["alert"].input["error"]["kind"] == "timeout"


def test_a_step_that_crashes_past_the_restart_intensity_is_handled_too(client):
    _, run, steps = finished(client, "crashing", {"n": 2})
    assert run.run.state.value == "success"
    assert steps["native"].state == "failed" and steps["page"].input["error"]["kind"] == "crashed"
    assert steps["page"].input["input"] == {"n": 2}


def test_a_handler_that_fails_without_its_own_failure_arc_fails_the_run(client):
    view, run, steps = finished(client, "failing-handler", {})
    assert view.work_order.state.value == "failed"
    assert run.run.failure.reason == "the handler failed too" and run.run.failure.transition_id == "handler"
    assert steps["first"].state == "failed" and steps["handler"].state == "failed"


def test_an_always_arc_is_taken_on_failure_too(client):
    _, run, steps = finished(client, "always", {"x": 1})
    assert run.run.state.value == "success"
    assert steps["log"].input == {"error": {"kind": "failed", "reason": "no luck"}, "input": {"x": 1}}


def test_routed_runs_keep_the_petri_net_rules(client):
    for workflow_id, input in [
        ("exclusive", {"amount": 2000}),
        ("multi", {"email": True, "channels": ["sms"]}),
        ("multi", {}),
        ("handled", {}),
        ("always", {}),
    ]:
        finished(client, workflow_id, input)
    from petriflow.storage.store import open_storage

    storage = open_storage(f"sqlite:///{client.storage_path}")
    try:
        assert audit(storage) == []
    finally:
        storage.backend.close()


def test_retry_from_a_handled_failure_runs_the_failed_step_again(client):
    _, run, steps = finished(client, "handled", {"order": 8})
    new_run = client.retry(run.run.id, steps["charge"].step_id)
    view = client.wait_work_order(run.run.work_order_id)
    retried = next(r for r in view.runs if r.run.id == new_run)
    assert {s.transition_id: s.state for s in retried.steps} == {"charge": "failed", "refund": "completed"}


@pytest.mark.parametrize(
    ("arcs", "split", "problem"),
    [
        ([arc("t", "end", "output.x >")], "none", "arc 1 (t -> end): when 'output.x >' is not a valid condition"),
        ([arc("t", "end", "outptu.x == 1")], "none", "arc 1 (t -> end): when 'outptu.x == 1' is not a valid condition"),
        ([arc("t", "end", "failure")], "none", "every out-arc is a failure arc"),
        ([arc("t", "end"), arc("t", "p", "output.ok")], "none", "split 'none' issues one token per outcome"),
    ],
)
def test_a_bad_condition_or_split_is_refused_when_loaded_naming_the_arc(client, arcs, split, problem):
    document = workflow("bad", ["start", "p", "end"], [{"id": "t", "split": split}, {"id": "u"}], [])
    document["arcs"] = [arc("start", "t"), *arcs, arc("p", "u"), arc("u", "end")]
    with pytest.raises(InvalidWorkflow) as refused:
        client.put_workflow(document)
    assert problem in str(refused.value)


def test_a_when_on_an_arc_into_a_transition_is_refused(client):
    document = with_arcs(EXCLUSIVE, [{**EXCLUSIVE["arcs"][0], "when": "always"}, *EXCLUSIVE["arcs"][1:]])
    document["id"] = "bad-in-arc"
    with pytest.raises(InvalidWorkflow, match="arc 0 \\(start -> check\\): when is only for arcs from a transition"):
        client.put_workflow(document)


def test_workflow_show_gives_the_conditions_and_splits_back(client):
    shown = client.get_workflow("exclusive")
    assert shown["arcs"][1] == {"from": "check", "to": "big", "when": "output.amount > 1000 and not input.dry_run"}
    assert shown["arcs"][2] == {"from": "check", "to": "small"}, "the default `success` is not written"
    assert next(t for t in shown["transitions"] if t["id"] == "check")["split"] == "xor"
