"""The workflow document: the JSON a user writes becomes the workflow they meant,
and a document of the wrong shape is refused with a message naming the element."""

from __future__ import annotations

import copy
import json

import pytest

from petriflow.engine.document import load_workflow, parse_workflow_json, workflow_from_document, workflow_to_document
from petriflow.engine.errors import InvalidWorkflow
from petriflow.engine.workflow import (
    Arc,
    ArcDirection,
    JoinType,
    Place,
    PlaceType,
    RetryPolicy,
    SplitType,
    Transition,
    Trigger,
    Workflow,
    WorkflowState,
)

# The example of the README's "Workflows" section.
INVOICE = {
    "id": "invoice-flow",
    "version": 1,
    "places": [{"id": "start", "type": "start"}, {"id": "fetched"}, {"id": "end", "type": "end"}],
    "transitions": [
        {"id": "fetch", "executor": "echo", "params": {"source": "erp"}},
        {
            "id": "post",
            "executor": "sleep",
            "params": {"seconds": 0.1},
            "join": "none",
            "split": "none",
            "timeout_s": 30,
        },
    ],
    "arcs": [
        {"from": "start", "to": "fetch"},
        {"from": "fetch", "to": "fetched"},
        {"from": "fetched", "to": "post"},
        {"from": "post", "to": "end"},
    ],
    "triggers": [{"id": "invoice-hook", "type": "webhook"}, {"id": "nightly", "type": "cron", "cron": "0 2 * * *"}],
}

INVOICE_NORMALISED = {
    "id": "invoice-flow",
    "version": 1,
    "state": "active",
    "places": [{"id": "start", "type": "start"}, {"id": "fetched", "type": "normal"}, {"id": "end", "type": "end"}],
    "transitions": [
        {
            "id": "fetch",
            "executor": "echo",
            "params": {"source": "erp"},
            "join": "none",
            "split": "none",
            "timeout_s": None,
            "retry": {"max_attempts": 1, "backoff_s": 0.0},
        },
        {
            "id": "post",
            "executor": "sleep",
            "params": {"seconds": 0.1},
            "join": "none",
            "split": "none",
            "timeout_s": 30,
            "retry": {"max_attempts": 1, "backoff_s": 0.0},
        },
    ],
    "arcs": INVOICE["arcs"],
    "triggers": [
        {"id": "invoice-hook", "type": "webhook", "cron": None},
        {"id": "nightly", "type": "cron", "cron": "0 2 * * *"},
    ],
    "metadata": {},
}


def problems_of(doc: object) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        workflow_from_document(doc)  # type: ignore[arg-type]
    return caught.value.problems


def changed(**changes: object) -> dict:
    """INVOICE with top-level keys replaced (None removes the key)."""
    doc = copy.deepcopy(INVOICE)
    for key, value in changes.items():
        if value is None:
            del doc[key]
        else:
            doc[key] = value
    return doc


def test_design_example_becomes_the_workflow_it_describes() -> None:
    wf = workflow_from_document(INVOICE)

    assert wf.id == "invoice-flow" and wf.version == 1 and wf.state is WorkflowState.ACTIVE
    assert wf.places == (
        Place("start", PlaceType.START),
        Place("fetched", PlaceType.NORMAL),
        Place("end", PlaceType.END),
    )
    assert wf.transition("fetch") == Transition("fetch", executor="echo", params={"source": "erp"})
    assert wf.transition("post").timeout_s == 30
    assert wf.arcs == (
        Arc("start", "fetch", ArcDirection.IN),
        Arc("fetched", "fetch", ArcDirection.OUT),
        Arc("fetched", "post", ArcDirection.IN),
        Arc("end", "post", ArcDirection.OUT),
    )
    assert wf.in_places("post") == ["fetched"] and wf.out_places("fetch") == ["fetched"]
    assert wf.triggers == (Trigger("invoice-hook", "webhook"), Trigger("nightly", "cron", "0 2 * * *"))
    assert wf.metadata == {}


def test_omitted_fields_take_the_documented_defaults() -> None:
    wf = workflow_from_document({"id": "w", "places": [{"id": "p"}], "transitions": [{"id": "t"}], "arcs": []})

    assert wf.version == 1 and wf.triggers == () and wf.state is WorkflowState.ACTIVE
    assert wf.place("p").type is PlaceType.NORMAL
    assert wf.transition("t") == Transition(
        "t",
        executor="noop",
        params={},
        join=JoinType.NONE,
        split=SplitType.NONE,
        timeout_s=None,
        retry=RetryPolicy(1, 0.0),
    )


def test_document_round_trip_gives_the_normalised_document() -> None:
    document = workflow_to_document(workflow_from_document(INVOICE))

    assert document == INVOICE_NORMALISED
    assert json.loads(json.dumps(document)) == document  # plain JSON values only
    assert workflow_to_document(workflow_from_document(document)) == document


def test_workflow_round_trip_keeps_every_field() -> None:
    wf = Workflow(
        id="full",
        version=3,
        state=WorkflowState.DISCARDED,
        metadata={"owner": "ops", "tags": ["a"]},
        places=(Place("in", PlaceType.START), Place("left"), Place("right"), Place("out", PlaceType.END)),
        transitions=(
            Transition(
                "split",
                executor="mymodule:Split",
                params={"n": 2},
                split=SplitType.AND,
                timeout_s=2.5,
                retry=RetryPolicy(max_attempts=4, backoff_s=0.5),
            ),
            Transition("join", executor="echo", join=JoinType.AND),
        ),
        arcs=(
            Arc("in", "split", ArcDirection.IN),
            Arc("left", "split", ArcDirection.OUT),
            Arc("right", "split", ArcDirection.OUT),
            Arc("left", "join", ArcDirection.IN),
            Arc("right", "join", ArcDirection.IN),
            Arc("out", "join", ArcDirection.OUT),
        ),
        triggers=(Trigger("hook", "webhook"), Trigger("daily", "cron", "0 2 * * *")),
    )

    assert workflow_from_document(workflow_to_document(wf)) == wf
    assert workflow_from_document(json.loads(json.dumps(workflow_to_document(wf)))) == wf


def test_workflow_does_not_share_mutable_values_with_its_document() -> None:
    doc = changed(metadata={"owner": "ops"})
    wf = workflow_from_document(doc)
    doc["transitions"][0]["params"]["source"] = "changed"
    doc["metadata"]["owner"] = "changed"
    workflow_to_document(wf)["transitions"][0]["params"]["source"] = "changed again"

    assert wf.transition("fetch").params == {"source": "erp"}
    assert wf.metadata == {"owner": "ops"}


def test_unknown_keys_are_ignored() -> None:
    doc = changed(description="annotated")
    doc["places"][1]["label"] = "Fetched"
    doc["arcs"][0]["comment"] = "first"

    assert workflow_from_document(doc) == workflow_from_document(INVOICE)


def test_a_document_that_is_not_an_object_is_refused() -> None:
    assert problems_of([INVOICE]) == ["workflow document must be a JSON object, got array"]


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (changed(id=None), "workflow: id is missing"),
        (changed(id=7), "workflow: id must be a string, got number"),
        (changed(version="1"), "workflow 'invoice-flow': version must be an integer, got string"),
        (changed(version=True), "workflow 'invoice-flow': version must be an integer, got boolean"),
        (changed(state="paused"), "workflow 'invoice-flow': state must be 'active' or 'discarded', got 'paused'"),
        (changed(places={"start": "start"}), "workflow 'invoice-flow': places must be an array, got object"),
        (changed(transitions=None), "workflow 'invoice-flow': transitions is missing"),
        (changed(arcs="start->fetch"), "workflow 'invoice-flow': arcs must be an array, got string"),
        (changed(metadata=[]), "workflow 'invoice-flow': metadata must be an object, got array"),
        (changed(triggers=[{"id": "nightly"}]), "trigger 'nightly': type is missing"),
        (
            changed(triggers=[{"id": "n", "type": "cron", "cron": 2}]),
            "trigger 'n': cron must be a string or null, got number",
        ),
    ],
)
def test_workflow_level_shape_errors_name_the_field(doc: dict, problem: str) -> None:
    assert problem in problems_of(doc)


def with_element(kind: str, index: int, **fields: object) -> dict:
    """INVOICE with fields of one place/transition/arc replaced."""
    doc = copy.deepcopy(INVOICE)
    doc[kind][index].update(fields)
    return doc


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        (
            changed(places=[{"id": "start", "type": "start"}, {"type": "normal"}, {"id": "end", "type": "end"}]),
            "place 1: id is missing",
        ),
        (
            changed(places=[{"id": "start", "type": "start"}, "fetched", {"id": "end", "type": "end"}]),
            "place 1: must be an object, got string",
        ),
        (
            with_element("places", 1, type="middle"),
            "place 'fetched': type must be 'start', 'normal' or 'end', got 'middle'",
        ),
        (with_element("transitions", 1, join="xor"), "transition 'post': join must be 'none' or 'and', got 'xor'"),
        (
            with_element("transitions", 1, split="AND"),
            "transition 'post': split must be 'none', 'and', 'xor' or 'or', got 'AND'",
        ),
        (with_element("transitions", 1, id=None), "transition 1: id must be a string, got null"),
        (with_element("transitions", 0, executor=["echo"]), "transition 'fetch': executor must be a string, got array"),
        (
            with_element("transitions", 0, params="source=erp"),
            "transition 'fetch': params must be an object, got string",
        ),
        (
            with_element("transitions", 1, timeout_s="30s"),
            "transition 'post': timeout_s must be a number or null, got string",
        ),
        (with_element("transitions", 1, retry=3), "transition 'post': retry must be an object, got number"),
        (
            with_element("transitions", 1, retry={"max_attempts": "3"}),
            "transition 'post': retry: max_attempts must be an integer, got string",
        ),
        (
            with_element("transitions", 1, retry={"backoff_s": None}),
            "transition 'post': retry: backoff_s must be a number, got null",
        ),
        (with_element("arcs", 2, to="nowhere"), "arc 2 (fetched -> nowhere): unknown node 'nowhere'"),
        (with_element("arcs", 1, to="post"), "arc 1 (fetch -> post): both ends are transitions"),
        (with_element("arcs", 0, to="fetched"), "arc 0 (start -> fetched): both ends are places"),
        (changed(arcs=[{"from": "start"}]), "arc 0: to is missing"),
        (changed(arcs=[{"from": "start", "to": 3}]), "arc 0: to must be a string, got number"),
    ],
)
def test_element_shape_errors_name_the_element(doc: dict, problem: str) -> None:
    assert any(p.startswith(problem) for p in problems_of(doc)), problems_of(doc)


def test_every_shape_problem_is_listed_at_once() -> None:
    doc = with_element("transitions", 1, join="xor", timeout_s="soon")
    doc["arcs"][2]["to"] = "nowhere"

    problems = problems_of(doc)

    assert problems == [
        "transition 'post': join must be 'none' or 'and', got 'xor'",
        "transition 'post': timeout_s must be a number or null, got string",
        "arc 2 (fetched -> nowhere): unknown node 'nowhere'",
    ]


def test_arcs_are_not_reported_unknown_when_places_themselves_are_malformed() -> None:
    assert problems_of(changed(places="start fetched end")) == [
        "workflow 'invoice-flow': places must be an array, got string"
    ]


JUNK = [None, True, 0, -1.5, "", "x", [], [1], {}, {"id": 1}]


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    if isinstance(value, dict):
        return [path] + [p for key, v in value.items() for p in _paths(v, path + (key,))]
    if isinstance(value, list):
        return [path] + [p for i, v in enumerate(value) for p in _paths(v, path + (i,))]
    return [path]


@pytest.mark.parametrize("path", _paths(INVOICE)[1:], ids=lambda path: ".".join(map(str, path)))
def test_junk_anywhere_gives_a_workflow_or_invalid_workflow_never_a_crash(path: tuple) -> None:
    for junk in JUNK:
        doc = copy.deepcopy(INVOICE)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = junk
        try:
            workflow_from_document(doc)
        except InvalidWorkflow as exc:
            assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


def test_json_text_parses_and_invalid_json_is_an_invalid_workflow() -> None:
    assert parse_workflow_json(json.dumps(INVOICE)) == workflow_from_document(INVOICE)

    with pytest.raises(InvalidWorkflow) as caught:
        parse_workflow_json('{"id": "w", "places": [}')
    assert caught.value.problems[0].startswith("not valid JSON: ")
    assert "line 1 column 24" in caught.value.problems[0]


def test_load_workflow_reads_a_json_file(tmp_path) -> None:
    path = tmp_path / "invoice.json"
    path.write_text(json.dumps(INVOICE), encoding="utf-8")

    assert load_workflow(path) == workflow_from_document(INVOICE)
    assert load_workflow(str(path)) == workflow_from_document(INVOICE)


def test_load_workflow_problems_name_the_file(tmp_path) -> None:
    bad_shape = tmp_path / "bad.json"
    bad_shape.write_text(json.dumps(with_element("transitions", 1, join="xor")), encoding="utf-8")
    not_json = tmp_path / "broken.json"
    not_json.write_bytes(b"\xff\xfe\x00garbage")

    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow(bad_shape)
    assert caught.value.problems == [f"{bad_shape}: transition 'post': join must be 'none' or 'and', got 'xor'"]
    with pytest.raises(InvalidWorkflow) as caught:
        load_workflow(not_json)
    assert caught.value.problems[0].startswith(f"{not_json}: not valid JSON")


def test_a_missing_file_is_an_os_error_not_an_invalid_workflow(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        load_workflow(tmp_path / "absent.json")
