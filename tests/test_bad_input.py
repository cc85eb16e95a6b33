"""Garbage at every client entry point of the Engine: each request type with
wrong types, missing fields, unknown ids and truncated bytes gets an error
with a stable code, the engine keeps serving, and nothing stored changes."""

from __future__ import annotations

import dataclasses
import types
import typing

import msgpack
import pytest

from petriflow.engine import codec, wire
from tests.engines import running_engine, storage_dump, wait_for, workflow

pytestmark = pytest.mark.timeout(120)

FLOW = workflow("flow", ["start", "end"], [{"id": "t", "executor": "manual"}], ["start -> t", "t -> end"])


def _requests() -> list[type]:
    names = [
        "Ping",
        "PutWorkflow",
        "GetWorkflow",
        "ListWorkflows",
        "DiscardWorkflow",
        "StartCase",
        "GetCase",
        "GetTask",
        "GetWorkitem",
        "WaitCase",
        "ListCases",
        "TerminateCase",
        "SubmitWorkOrder",
        "SubmitWebhook",
        "CronTick",
        "GetWorkOrder",
        "WaitWorkOrder",
        "ListWorkOrders",
        "PageWorkOrders",
        "RetryRun",
        "RetryMany",
        "CancelWorkOrder",
        "ListActors",
        "KillEntity",
        "CompleteWorkitem",
        "AbandonWorkitem",
        "Preexecute",
    ]
    return [getattr(wire, name) for name in names]


def _garbage_values(hint) -> list:
    """Values of every wrong type for a field."""
    wrong = [
        12345,
        -1.5,
        True,
        None,
        "x" * 10_000,
        [1, [2, [3]]],
        {"~": "Ping"},
        b"\xff\xfe",
        {"deep": {"er": [{}] * 50}},
    ]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(hint) if a is not type(None))
        return [v for v in _garbage_values(inner) if v is not None]
    accepted = {str: str, int: int, float: (int, float), bool: bool}.get(hint)
    if accepted:
        return [v for v in wrong if not isinstance(v, accepted) or (hint is not bool and isinstance(v, bool))]
    if origin is list:
        return [v for v in wrong if not isinstance(v, list)] + [[1, 2]]
    return [v for v in wrong if not isinstance(v, dict)]


@pytest.fixture(scope="module")
def engine_and_db(tmp_path_factory):
    home = tmp_path_factory.mktemp("bad-input")
    with running_engine("simpleSystemBase", f"sqlite:///{home}/petriflow.db") as client:
        client.put_workflow(FLOW)
        submitted = client.submit("flow", {"kept": True})
        wait_for(
            lambda: any(
                w.awaiting
                for r in client.get_work_order(submitted.work_order_id).runs
                for w in client.get_case(r.run.case_id).workitems
            )
        )
        yield client, home / "petriflow.db", submitted


def _ask(client, data: bytes):
    reply = client.asys.ask(client.engine, data, 10)
    assert reply is not None, "every request gets a reply"
    return codec.decode(reply)


@pytest.mark.parametrize("request_type", _requests(), ids=lambda t: t.__name__)
def test_wrong_types_in_every_field_are_refused_and_nothing_changes(engine_and_db, request_type):
    client, db, _ = engine_and_db
    before = storage_dump(db)
    hints = typing.get_type_hints(request_type)
    fields = {f.name: f for f in dataclasses.fields(request_type)}
    for name in fields:
        for bad in _garbage_values(hints[name]):
            plain = {"~": request_type.__name__, name: bad}
            reply = _ask(client, msgpack.packb(plain, use_bin_type=True))
            assert isinstance(reply, wire.Error) and reply.code == "invalid", (name, bad, reply)
            assert request_type.__name__ in reply.message
    assert storage_dump(db) == before
    assert client.ping().pid > 0


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


@pytest.mark.parametrize(
    "request_type",
    [t for t in _requests() if any(f.name.endswith("_id") and _required(f) for f in dataclasses.fields(t))],
    ids=lambda t: t.__name__,
)
def test_unknown_ids_get_not_found_and_nothing_changes(engine_and_db, request_type):
    client, db, submitted = engine_and_db
    before = storage_dump(db)
    hints = typing.get_type_hints(request_type)
    values = {}
    for field in dataclasses.fields(request_type):
        if not _required(field):
            continue
        hint = hints[field.name]
        values[field.name] = {str: "no-such-id", int: 1, float: 1.0}.get(
            hint, [] if typing.get_origin(hint) is list else {}
        )
    reply = _ask(client, codec.encode(request_type(**values)))
    assert isinstance(reply, wire.Error) and reply.code in ("not_found", "invalid"), reply
    assert storage_dump(db) == before


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\xc1" * 100,
        codec.encode(wire.Ping())[:-1],
        msgpack.packb({"~": "SubmitWorkOrder", "workflow_id": "flow"})[:-2],
        b"\x91" * 10_000,
        msgpack.packb("just a string"),
        msgpack.packb({"~": "SubmitWorkOrder", "workflow_id": "flow", "input": {1: 2}}, strict_types=False),
    ],
)
def test_truncated_and_hostile_bytes_are_refused(engine_and_db, data):
    client, db, _ = engine_and_db
    before = storage_dump(db)
    reply = _ask(client, data)
    assert isinstance(reply, wire.Error) and reply.code == "invalid"
    assert storage_dump(db) == before


@pytest.mark.parametrize(
    "query",
    [wire.ListCases(["object"]), wire.ListWorkOrders(["sleeping"]), wire.PageWorkOrders(["sleeping"])],
    ids=lambda r: type(r).__name__,
)
def test_unknown_states_in_filters_are_named(engine_and_db, query):
    client, _, _ = engine_and_db
    reply = _ask(client, codec.encode(query))
    assert isinstance(reply, wire.Error) and reply.code == "invalid"
    assert repr(query.states[0]) in reply.message
