"""Workflow validation: the nets of the usual patterns pass, and each broken rule
is reported with the element a user has to fix, all problems at once."""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path

import pytest

from petriflow.engine.document import load_workflow, workflow_from_document
from petriflow.engine.errors import ExecutorNotFound, InvalidWorkflow
from petriflow.engine.validation import validate
from petriflow.engine.workflow import Arc, ArcDirection, Place, PlaceType, RetryPolicy, Transition, Workflow

WORKFLOWS = Path(__file__).parent / "workflows"
BUILTINS = {"noop", "echo", "sleep", "manual", "fail"}


def resolver(name: str) -> object:
    """Built-in names, or `module:attribute` that imports; like the engine's."""
    if name in BUILTINS:
        return name
    module, _, attribute = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ExecutorNotFound(f"unknown executor {name!r}") from exc


def net(places: str, transitions: str, arcs: str, **transition_fields: dict) -> Workflow:
    """A workflow from a compact spec: places "start p end" (start and end get
    their types), transitions "a b", arcs "start>a a>p ...";
    transition_fields={"a": {"join": "and"}} adds document fields."""
    types = {"start": "start", "end": "end"}
    return workflow_from_document(
        {
            "id": "w",
            "places": [{"id": p, "type": types.get(p, "normal")} for p in places.split()],
            "transitions": [{"id": t, **transition_fields.get(t, {})} for t in transitions.split()],
            "arcs": [dict(zip(("from", "to"), arc.split(">"))) for arc in arcs.split()],
        }
    )


def problems_of(wf: Workflow, resolve=resolver) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        validate(wf, resolve)
    assert str(caught.value) == "invalid workflow: " + "; ".join(caught.value.problems)
    return caught.value.problems


SEQUENCE = net("start p end", "a b", "start>a a>p p>b b>end")


# -- valid patterns -----------------------------------------------------------


@pytest.mark.parametrize(
    "wf",
    [
        SEQUENCE,
        pytest.param(
            net(
                "start l1 l2 l3 r1 r2 r3 end",
                "split w1 w2 w3 join",
                "start>split split>l1 split>l2 split>l3 l1>w1 l2>w2 l3>w3 "
                "w1>r1 w2>r2 w3>r3 r1>join r2>join r3>join join>end",
                split={"split": "and"},
                join={"join": "and"},
            ),
            id="and-split-join-3-branches",
        ),
        pytest.param(
            net("start end", "approve reject", "start>approve start>reject approve>end reject>end"),
            id="deferred-choice-into-end",
        ),
        pytest.param(
            net(
                "start p merged end",
                "first left right last",
                "start>first first>p p>left p>right left>merged right>merged merged>last last>end",
            ),
            id="deferred-choice-then-simple-merge",
        ),
    ],
)
def test_usual_patterns_are_valid(wf: Workflow) -> None:
    assert validate(wf, resolver) is wf


@pytest.mark.parametrize("name", ["sequence.json", "parallel.json", "choice.json"])
def test_example_workflow_files_load_and_validate(name: str) -> None:
    wf = validate(load_workflow(WORKFLOWS / name), resolver)

    assert wf.id == name.removesuffix(".json")
    assert wf.start_place.id == "start" and wf.end_place.id == "end"


def test_example_files_have_the_shapes_their_names_promise() -> None:
    sequence = load_workflow(WORKFLOWS / "sequence.json")
    parallel = load_workflow(WORKFLOWS / "parallel.json")
    choice = load_workflow(WORKFLOWS / "choice.json")

    assert [t.executor for t in sequence.transitions] == ["echo", "echo", "echo"]
    assert len(parallel.out_places("fan_out")) == 3 and parallel.transition("fan_out").split == "and"
    assert len(parallel.in_places("fan_in")) == 3 and parallel.transition("fan_in").join == "and"
    assert choice.transitions_fed_by("pending") == ["approve", "reject"]
    assert choice.out_places("approve") == choice.out_places("reject") == ["decided"]


def test_executors_are_resolved_by_module_and_attribute() -> None:
    wf = net("start end", "t", "start>t t>end", t={"executor": "json:loads"})
    assert validate(wf, resolver) is wf


def test_default_resolver_is_the_engines() -> None:
    good = net("start end", "t", "start>t t>end", t={"executor": "sleep"})
    bad = net("start end", "t", "start>t t>end", t={"executor": "no_such_module_xyz:run"})

    assert validate(good) is good
    with pytest.raises(InvalidWorkflow) as caught:
        validate(bad)
    assert caught.value.problems[0].startswith("transition 't': executor 'no_such_module_xyz:run' cannot be resolved")


# -- broken rules, one at a time ----------------------------------------------


def replace_transition(wf: Workflow, transition_id: str, **changes: object) -> Workflow:
    transitions = tuple(dataclasses.replace(t, **changes) if t.id == transition_id else t for t in wf.transitions)
    return dataclasses.replace(wf, transitions=transitions)


@pytest.mark.parametrize(
    ("wf", "problem"),
    [
        (
            net("begin p end", "a b", "begin>a a>p p>b b>end"),
            "no start place: a workflow needs exactly one place of type 'start'",
        ),
        (
            net("start p finish", "a b", "start>a a>p p>b b>finish"),
            "no end place: a workflow needs exactly one place of type 'end'",
        ),
        (
            dataclasses.replace(SEQUENCE, places=SEQUENCE.places + (Place("start2", PlaceType.START),)),
            "2 start places ('start', 'start2'): a workflow needs exactly one",
        ),
        (
            dataclasses.replace(SEQUENCE, places=SEQUENCE.places + (Place("end2", PlaceType.END),)),
            "2 end places ('end', 'end2'): a workflow needs exactly one",
        ),
        (
            dataclasses.replace(SEQUENCE, places=SEQUENCE.places + (Place("p"),)),
            "place 'p': defined 2 times; ids must be unique",
        ),
        (
            dataclasses.replace(SEQUENCE, transitions=SEQUENCE.transitions + (Transition("a"),)),
            "transition 'a': defined 2 times; ids must be unique",
        ),
        (
            net("start review end", "review b", "start>review review>end"),
            "'review' names both a place and a transition; ids must be unique",
        ),
        (
            dataclasses.replace(SEQUENCE, arcs=SEQUENCE.arcs + (Arc("nowhere", "b", ArcDirection.IN),)),
            "arc 4 (nowhere -> b): unknown place 'nowhere'",
        ),
        (
            dataclasses.replace(SEQUENCE, arcs=SEQUENCE.arcs + (Arc("p", "ghost", ArcDirection.OUT),)),
            "arc 4 (ghost -> p): unknown transition 'ghost'",
        ),
        (net("start p end", "a b", "start>a a>p p>b b>end p>b"), "arc 4 (p -> b): duplicates arc 2"),
        (
            dataclasses.replace(SEQUENCE, arcs=SEQUENCE.arcs + (Arc("p", "b", "sideways"),)),
            "arc 4: direction must be 'in' or 'out', got 'sideways'",
        ),
        (
            net("start p end", "a b c", "start>a a>p p>b b>end c>end"),
            "transition 'c': no in-arc, so nothing can enable it",
        ),
        (
            net("start p end", "a b c", "start>a a>p p>b b>end p>c"),
            "transition 'c': no out-arc, so its tokens go nowhere",
        ),
        (
            net("start p end", "a b back", "start>a a>p p>b b>end p>back back>start"),
            "start place 'start': has an incoming arc from transition 'back'; tokens only leave the start place",
        ),
        (
            net("start p end", "a b again", "start>a a>p p>b b>end end>again again>p"),
            "end place 'end': has an outgoing arc to transition 'again'; a token in the end place finishes the case",
        ),
        (
            net("start p orphan end", "a b", "start>a a>p p>b b>end"),
            "place 'orphan': not reachable from start place 'start'",
        ),
        (net("start p orphan end", "a b", "start>a a>p p>b b>end"), "place 'orphan': cannot reach end place 'end'"),
        (
            net("start p sink end", "a b", "start>a a>p a>sink p>b b>end", a={"split": "and"}),
            "place 'sink': cannot reach end place 'end'",
        ),
        (
            net("start p q end", "a b c", "start>a a>p p>b b>end q>c c>end"),
            "transition 'c': not reachable from start place 'start'",
        ),
        (
            net("start p q end", "a b c", "start>a a>p p>b b>end p>c c>q"),
            "transition 'c': cannot reach end place 'end'",
        ),
        (
            net("start p q end", "a b", "start>a a>p a>q p>b q>b b>end"),
            "transition 'a': split 'none' issues one token per outcome, but on success it has 2 out-arcs "
            "('p', 'q'); use split 'and' to feed them all, or 'xor' or 'or' to choose by their conditions",
        ),
        (replace_transition(SEQUENCE, "b", join="xor"), "transition 'b': join must be 'none' or 'and', got 'xor'"),
        (
            replace_transition(SEQUENCE, "b", split="and"),
            "transition 'b': split must be SplitType('and'), not the plain string 'and'",
        ),
        (
            replace_transition(SEQUENCE, "b", timeout_s=0),
            "transition 'b': timeout_s must be a positive number of seconds or null, got 0",
        ),
        (
            replace_transition(SEQUENCE, "b", timeout_s=-5.0),
            "transition 'b': timeout_s must be a positive number of seconds or null, got -5.0",
        ),
        (
            replace_transition(SEQUENCE, "b", retry=RetryPolicy(max_attempts=0)),
            "transition 'b': retry.max_attempts must be an integer >= 1, got 0",
        ),
        (
            replace_transition(SEQUENCE, "b", retry=RetryPolicy(backoff_s=-1)),
            "transition 'b': retry.backoff_s must be a number >= 0, got -1",
        ),
        (dataclasses.replace(SEQUENCE, version=0), "workflow 'w': version must be an integer >= 1, got 0"),
        (dataclasses.replace(SEQUENCE, id=""), "workflow: id must be a non-empty string, got ''"),
        (
            dataclasses.replace(SEQUENCE, places=SEQUENCE.places + (Place(" "),)),
            "place 3: id must be a non-empty string, got ' '",
        ),
        (
            dataclasses.replace(SEQUENCE, transitions=SEQUENCE.transitions + (Transition(""),)),
            "transition 2: id must be a non-empty string, got ''",
        ),
        (
            replace_transition(SEQUENCE, "b", executor="teleport"),
            "transition 'b': executor 'teleport' cannot be resolved: unknown executor 'teleport'",
        ),
        (
            replace_transition(SEQUENCE, "b", executor="no_such_module_xyz:run"),
            "transition 'b': executor 'no_such_module_xyz:run' cannot be resolved",
        ),
    ],
)
def test_broken_rule_is_reported_naming_the_element(wf: Workflow, problem: str) -> None:
    problems = problems_of(wf)
    assert any(p.startswith(problem) for p in problems), problems


def test_every_problem_is_listed_at_once() -> None:
    wf = net(
        "start p orphan end",
        "a b",
        "start>a a>p p>b b>end",
        a={"executor": "teleport", "timeout_s": -1},
        b={"join": "and", "retry": {"max_attempts": 0}},
    )

    assert problems_of(wf) == [
        "transition 'a': timeout_s must be a positive number of seconds or null, got -1",
        "transition 'a': executor 'teleport' cannot be resolved: unknown executor 'teleport'",
        "transition 'b': retry.max_attempts must be an integer >= 1, got 0",
        "place 'orphan': not reachable from start place 'start'",
        "place 'orphan': cannot reach end place 'end'",
    ]


def test_an_executor_that_crashes_while_resolving_is_a_problem_not_a_crash() -> None:
    def exploding(name: str) -> object:
        raise RuntimeError("import-time failure")

    assert problems_of(SEQUENCE, exploding) == [
        "transition 'a': executor 'noop' cannot be resolved: RuntimeError: import-time failure",
        "transition 'b': executor 'noop' cannot be resolved: RuntimeError: import-time failure",
    ]
