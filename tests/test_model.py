"""The pure model: state machines, join/split routing, executors, the codec."""

from __future__ import annotations

import dataclasses
import typing

import msgpack
import pytest

from petriflow.engine import codec, messages, routing, wire
from petriflow.engine.errors import ExecutorNotFound, IllegalTransition, Invalid
from petriflow.engine.executors import Completed, ExecutionContext, Failed, Started, merge_payloads, resolve_executor
from petriflow.engine.records import TokenRecord
from petriflow.engine.states import (
    TRANSITIONS,
    CaseState,
    RunState,
    TaskState,
    TokenState,
    WorkitemState,
    WorkOrderState,
    advance,
    is_terminal,
    machine_name,
    predecessors,
)
from petriflow.engine.workflow import Arc, ArcDirection, JoinType, Place, PlaceType, SplitType, Transition, Workflow

# -- state machines -------------------------------------------------------------

LEGAL = [
    (CaseState.CREATED, CaseState.ACTIVE),
    (CaseState.ACTIVE, CaseState.FINISHED),
    (CaseState.CREATED, CaseState.TERMINATED),
    (CaseState.ACTIVE, CaseState.TERMINATED),
    (TokenState.FREE, TokenState.LOCKED),
    (TokenState.LOCKED, TokenState.CONSUMED),
    (TaskState.STARTED, TaskState.ALLOCATED),
    (TaskState.ALLOCATED, TaskState.EXECUTING),
    (TaskState.EXECUTING, TaskState.COMPLETED),
    (TaskState.STARTED, TaskState.ABANDONED),
    (TaskState.ALLOCATED, TaskState.ABANDONED),
    (TaskState.EXECUTING, TaskState.ABANDONED),
    (WorkitemState.CREATED, WorkitemState.STARTED),
    (WorkitemState.STARTED, WorkitemState.COMPLETED),
    (WorkitemState.CREATED, WorkitemState.ABANDONED),
    (WorkitemState.STARTED, WorkitemState.ABANDONED),
    (WorkitemState.STARTED, WorkitemState.FAILED),
    (RunState.AVAILABLE, RunState.CLAIMED),
    (RunState.CLAIMED, RunState.STARTED),
    (RunState.STARTED, RunState.SUCCESS),
    (RunState.AVAILABLE, RunState.CANCELLED),
    (WorkOrderState.PENDING, WorkOrderState.RUNNING),
    (WorkOrderState.RUNNING, WorkOrderState.SUCCESS),
    (WorkOrderState.PENDING, WorkOrderState.CANCELLED),
    (WorkOrderState.FAILED, WorkOrderState.PENDING),  # a retry adds a run
]
ILLEGAL = [
    (CaseState.FINISHED, CaseState.ACTIVE),
    (CaseState.CREATED, CaseState.FINISHED),
    (CaseState.TERMINATED, CaseState.ACTIVE),
    (TokenState.CONSUMED, TokenState.FREE),
    (TokenState.FREE, TokenState.CONSUMED),
    (TokenState.LOCKED, TokenState.FREE),
    (TaskState.STARTED, TaskState.EXECUTING),
    (TaskState.COMPLETED, TaskState.ABANDONED),
    (TaskState.ABANDONED, TaskState.STARTED),
    (TaskState.STARTED, TaskState.COMPLETED),
    (WorkitemState.COMPLETED, WorkitemState.STARTED),
    (WorkitemState.CREATED, WorkitemState.COMPLETED),
    (WorkitemState.FAILED, WorkitemState.COMPLETED),
    (RunState.AVAILABLE, RunState.SUCCESS),
    (RunState.SUCCESS, RunState.STARTED),
    (WorkOrderState.REJECTED, WorkOrderState.PENDING),
    (WorkOrderState.SUCCESS, WorkOrderState.RUNNING),
    (WorkOrderState.SUCCESS, WorkOrderState.FAILED),
]


@pytest.mark.parametrize("current,target", LEGAL)
def test_state_machines_allow_the_designed_transitions(current, target):
    assert advance(current, target) is target
    assert current in predecessors(target)


@pytest.mark.parametrize("current,target", ILLEGAL)
def test_state_machines_refuse_everything_else(current, target):
    with pytest.raises(IllegalTransition, match=f"{current.value} -> {target.value}"):
        advance(current, target)


def test_every_machine_is_checked_the_same_way():
    """Walk every pair of states of all six machines: what the table allows
    passes, everything else is refused naming the machine and both states."""
    assert set(TRANSITIONS) == {CaseState, TokenState, TaskState, WorkitemState, RunState, WorkOrderState}
    for machine, table in TRANSITIONS.items():
        assert set(table) == set(machine)
        for current in machine:
            for target in machine:
                if target in table[current]:
                    assert advance(current, target) is target
                else:
                    expected = f"^{machine_name(machine)}: illegal transition {current.value} -> {target.value}$"
                    with pytest.raises(IllegalTransition, match=expected):
                        advance(current, target)


def test_machines_are_named_in_errors_as_users_say_them():
    assert [machine_name(m) for m in TRANSITIONS] == ["case", "token", "task", "workitem", "run", "work order"]


def test_terminal_states_are_exactly_the_designed_ones():
    terminal = {s for machine in TRANSITIONS for s in machine if is_terminal(s)}
    assert terminal == {
        CaseState.FINISHED,
        CaseState.TERMINATED,
        TokenState.CONSUMED,
        TaskState.COMPLETED,
        TaskState.ABANDONED,
        WorkitemState.COMPLETED,
        WorkitemState.ABANDONED,
        WorkitemState.FAILED,
        *(RunState(s) for s in ("success", "failed", "crashed", "cancelled", "killed", "exception", "lost")),
        WorkOrderState.REJECTED,
    }


# -- join and split -------------------------------------------------------------


def _net(join: JoinType, split: SplitType) -> Workflow:
    places = (Place("start", PlaceType.START), Place("a"), Place("b"), Place("end", PlaceType.END))
    transitions = (Transition("split", split=split), Transition("join", join=join))
    arcs = (
        Arc("start", "split", ArcDirection.IN),
        Arc("a", "split", ArcDirection.OUT),
        Arc("b", "split", ArcDirection.OUT),
        Arc("a", "join", ArcDirection.IN),
        Arc("b", "join", ArcDirection.IN),
        Arc("end", "join", ArcDirection.OUT),
    )
    return Workflow("net", 1, places, transitions, arcs)


def _token(place: str, created_at: float = 1.0, state: TokenState = TokenState.FREE) -> TokenRecord:
    return TokenRecord(
        id=f"{place}-{created_at}", case_id="c", workflow_id="net", place_id=place, state=state, created_at=created_at
    )


def test_and_join_needs_a_token_in_every_in_place():
    net = _net(JoinType.AND, SplitType.AND)
    assert routing.tokens_to_lock(net, "join", [_token("a")]) is None
    chosen = routing.tokens_to_lock(net, "join", [_token("a", 2), _token("a", 1), _token("b", 3)])
    assert [t.id for t in chosen] == ["a-1", "b-3"]


def test_none_join_takes_the_oldest_free_token_of_any_in_place():
    net = _net(JoinType.NONE, SplitType.AND)
    chosen = routing.tokens_to_lock(net, "join", [_token("b", 5), _token("a", 7), _token("a", 1, TokenState.LOCKED)])
    assert [t.id for t in chosen] == ["b-5"]
    assert routing.tokens_to_lock(net, "join", []) is None


def test_and_split_issues_a_token_to_every_out_place_and_none_to_one():
    issued = routing.issue_tokens(
        _net(JoinType.AND, SplitType.AND), "split", case_id="c", task_id="t", payload={"x": 1}
    )
    assert sorted(t.place_id for t in issued) == ["a", "b"]
    assert all(t.payload == {"x": 1} and t.produced_by_task_id == "t" for t in issued)
    single = routing.issue_tokens(_net(JoinType.AND, SplitType.NONE), "split", case_id="c", task_id="t", payload={})
    assert [t.place_id for t in single] == ["a"]


def test_a_case_is_finished_only_with_the_end_token_alone():
    net = _net(JoinType.AND, SplitType.AND)
    assert routing.is_finished(net, [_token("end")])
    assert not routing.is_finished(net, [_token("end"), _token("a")])
    assert not routing.is_finished(net, [_token("a")])
    assert routing.is_finished(net, [_token("end"), _token("a", state=TokenState.CONSUMED)])


# -- executors ----------------------------------------------------------------------


def _ctx(**overrides) -> ExecutionContext:
    values = dict(
        workitem_id="w",
        case_id="c",
        task_id="t",
        workflow_id="wf",
        transition_id="tr",
        attempt=1,
        input={"a": 1},
        params={},
    )
    values.update(overrides)
    return ExecutionContext(**values)


def test_builtin_executors_answer_as_documented():
    assert resolve_executor("noop").execute(_ctx()) == Completed({"a": 1})
    assert resolve_executor("echo").execute(_ctx(params={"b": 2})) == Completed({"a": 1, "b": 2})
    assert resolve_executor("sleep").execute(_ctx(params={"seconds": 0.01})) == Completed({"a": 1})
    assert resolve_executor("manual").execute(_ctx()) == Started()
    assert resolve_executor("fail").execute(_ctx(params={"reason": "boom"})) == Failed("boom")
    flaky = resolve_executor("fail")
    assert isinstance(flaky.execute(_ctx(params={"times": 1}, attempt=1)), Failed)
    assert flaky.execute(_ctx(params={"times": 1}, attempt=2)) == Completed({"a": 1})


def test_module_attribute_executors_resolve_functions_and_classes():
    fn = resolve_executor("tests.executors:double")
    assert fn.execute(_ctx(input={"n": 4})) == Completed({"n": 8})
    cls = resolve_executor("tests.executors:Journal")
    assert cls.blocking is True and isinstance(cls.execute(_ctx()), Completed)


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("nope", "unknown executor 'nope'"),
        ("no_such_module_xyz:run", "cannot import module 'no_such_module_xyz'"),
        ("tests.executors:missing", "has no attribute 'missing'"),
        ("", "non-empty string"),
    ],
)
def test_unresolvable_executors_are_named_in_the_error(name, fragment):
    with pytest.raises(ExecutorNotFound, match=fragment):
        resolve_executor(name)


def test_build_token_payload_merges_outputs_in_order():
    assert resolve_executor("noop").build_token_payload([{"a": 1, "b": 1}, {"b": 2}], {}) == {"a": 1, "b": 2}
    assert merge_payloads([]) == {}


# -- messages and the codec ---------------------------------------------------------------


def _sample(hint):
    """A non-default value for a field type, so a round trip exercises it."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, __import__("types").UnionType):
        return _sample(next(a for a in typing.get_args(hint) if a is not type(None)))
    if origin is list:
        return [_sample(typing.get_args(hint)[0])]
    if origin is dict or hint is dict:
        return {"k": [1, "two", {"three": 3.5}], "none": None}
    if dataclasses.is_dataclass(hint):
        return _instance(hint)
    if isinstance(hint, type) and issubclass(hint, __import__("enum").Enum):
        return list(hint)[-1]
    return {str: "s-é", int: 7, float: 2.5, bool: True}.get(hint, "any")


def _instance(cls):
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls)})


@pytest.mark.parametrize("cls", sorted(codec.registered().values(), key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_message_type_round_trips_through_msgpack(cls):
    message = _instance(cls)
    assert codec.decode(codec.encode(message)) == message


def _dataclasses_of(module) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if dataclasses.is_dataclass(value) and value.__module__ == module.__name__
    }


def test_every_wire_type_is_registered_and_no_internal_message_is():
    assert _dataclasses_of(wire) <= set(codec.registered())
    assert not _dataclasses_of(messages) & set(codec.registered())
    assert {"CaseRecord", "TokenRecord", "TaskRecord", "WorkitemRecord", "Failure"} <= set(codec.registered())


@pytest.mark.parametrize(
    "data,fragment",
    [
        (b"\xc1", "not valid msgpack"),
        (codec.encode(wire.StartCase("wf"))[:-3], "not valid msgpack"),
        (msgpack.packb([1, 2]), "expected a map"),
        (msgpack.packb({"~": "Shutdown"}), "unknown message type 'Shutdown'"),
        (msgpack.packb({"~": "StartCase"}), "StartCase: missing field 'workflow_id'"),
        (msgpack.packb({"~": "StartCase", "workflow_id": 5}), "StartCase.workflow_id: expected a string"),
        (msgpack.packb({"~": "StartCase", "workflow_id": "w", "evil": 1}), "unknown field 'evil'"),
        (msgpack.packb({"~": "StartCase", "workflow_id": "w", "input": [1]}), "StartCase.input: expected a map"),
        (
            msgpack.packb(
                {"~": "TokenRecord", "id": "k", "case_id": "c", "workflow_id": "w", "place_id": "p", "state": "done"}
            ),
            "'done' is not one of",
        ),
        ("text", "expected bytes"),
    ],
)
def test_malformed_messages_are_refused_with_what_is_wrong(data, fragment):
    with pytest.raises(Invalid, match=fragment):
        codec.decode(data)


def test_unencodable_values_are_refused():
    with pytest.raises(Invalid, match="keys must be strings"):
        codec.encode(wire.StartCase("wf", {1: "x"}))
    with pytest.raises(Invalid, match="not a registered message type"):
        codec.encode(object())
    with pytest.raises(Invalid, match="64 bits at most"):
        codec.encode(wire.StartCase("wf", {"n": 2**64}))
