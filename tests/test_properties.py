"""Property-based bad input (hypothesis): whatever arrives at the codec, the
workflow document parser, the webhook endpoint or the Engine gets a clear
error with a stable code or a proper answer, never a crash, and a refused
request changes nothing stored."""

from __future__ import annotations

import dataclasses
import http.client

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from petriflow.engine import codec, wire
from petriflow.engine.document import workflow_from_document
from petriflow.engine.errors import Invalid, InvalidWorkflow, NotFound, PetriflowError
from petriflow.engine.validation import validate
from petriflow.ingress.gate import EngineGate
from petriflow.ingress.server import IngressServer
from tests.engines import awaiting_workitem, running_engine, storage_dump, workflow

pytestmark = pytest.mark.timeout(300)

PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(st.text(max_size=10) | st.integers(-(2**63), 2**64 - 1), inner, max_size=5)
    ),
    max_leaves=30,
)
type_names = st.sampled_from(sorted(codec.registered())) | st.text(max_size=15)


@PROPERTY
@given(st.binary(max_size=300))
def test_the_codec_refuses_arbitrary_bytes_with_invalid(data):
    try:
        decoded = codec.decode(data)
    except Invalid:
        return
    assert dataclasses.is_dataclass(decoded)


@PROPERTY
@given(type_names, st.dictionaries(st.text(max_size=15), msgpack_values, max_size=6))
def test_the_codec_refuses_wrong_fields_of_any_message_type(name, fields):
    data = msgpack.packb({"~": name, **fields}, use_bin_type=True)
    try:
        decoded = codec.decode(data)
    except Invalid as error:
        assert error.code == "invalid" and error.message
        return
    assert type(decoded).__name__ == name
    assert codec.decode(codec.encode(decoded)) == decoded


VALID = workflow(
    "valid",
    ["start", "p", "end"],
    [{"id": "a", "executor": "echo"}, {"id": "b"}],
    ["start -> a", "a -> p", "p -> b", "b -> end"],
)


@st.composite
def mutated_documents(draw):
    """A valid document with some of its parts replaced by anything."""
    document = dict(VALID)
    for key in draw(
        st.lists(
            st.sampled_from(["id", "version", "places", "transitions", "arcs", "triggers", "metadata"]),
            max_size=3,
            unique=True,
        )
    ):
        if draw(st.booleans()):
            document.pop(key, None)
        else:
            document[key] = draw(json_values)
    return document


@PROPERTY
@given(st.one_of(json_values, mutated_documents()))
def test_workflow_documents_are_accepted_or_refused_naming_the_problem(document):
    try:
        validate(workflow_from_document(document))
    except InvalidWorkflow as error:
        assert error.problems and all(isinstance(p, str) and p for p in error.problems)


@pytest.fixture(scope="module")
def webhook():
    submitted = []

    class Link:
        def submit(self, trigger_id: str, body: dict, auth: dict) -> str:
            submitted.append(body)
            return f"wo-{len(submitted)}"

        def trigger_auth(self, trigger_id: str) -> dict:
            if trigger_id != "known":
                raise NotFound(f"no trigger {trigger_id!r}")
            return {"type": "none"}

        def work_order(self, work_order_id: str) -> dict:
            return {"work_order_id": work_order_id}

        def close(self) -> None:
            pass

    gate = EngineGate(Link, size=16, workers=1)
    gate.start()
    server = IngressServer(gate, max_body_bytes=4096)
    server.start()
    yield server
    server.stop()
    gate.stop()


@PROPERTY
@given(
    st.sampled_from(["known", "unknown", "k%FFnown", "", "x" * 300]),
    st.binary(max_size=6000),
    st.sampled_from(["POST", "GET", "PUT", "DELETE"]),
)
def test_the_webhook_answers_any_request_with_json_and_never_500(webhook, trigger, body, method):
    connection = http.client.HTTPConnection("127.0.0.1", webhook.port, timeout=10)
    try:
        connection.request(method, f"/hooks/{trigger}", body=body)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    assert response.status < 500
    assert response.getheader("Content-Type", "").startswith("application/json")
    assert payload.startswith(b"{")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    home = tmp_path_factory.mktemp("properties")
    with running_engine("simpleSystemBase", f"sqlite:///{home}/petriflow.db") as client:
        client.put_workflow(
            workflow("flow", ["start", "end"], [{"id": "t", "executor": "manual"}], ["start -> t", "t -> end"])
        )
        submitted = client.submit("flow", {"kept": True})
        case_id = client.get_work_order(submitted.work_order_id).runs[0].run.case_id
        workitem_id = awaiting_workitem(client, case_id, "t")
        task_id = client.get_workitem(workitem_id).task_id
        ids = [submitted.work_order_id, submitted.run_id, case_id, workitem_id, task_id, "flow"]
        yield client, home / "petriflow.db", ids


ID_REQUESTS = [
    wire.GetCase,
    wire.GetTask,
    wire.GetWorkitem,
    wire.GetWorkOrder,
    wire.TerminateCase,
    wire.CancelWorkOrder,
    wire.Preexecute,
    wire.AbandonWorkitem,
    wire.GetWorkflow,
    wire.DiscardWorkflow,
    wire.WaitCase,
]


@PROPERTY
@given(st.sampled_from(ID_REQUESTS), st.data())
def test_ids_of_other_entities_are_refused_and_change_nothing(engine, request_type, data):
    """Every id-taking request gets the id of another kind of entity (or a
    made-up one): a not_found or invalid answer, and storage is unchanged."""
    client, db, ids = engine
    before = storage_dump(db)
    entity_id = data.draw(st.sampled_from(ids) | st.text(min_size=1, max_size=40))
    (field,) = [f.name for f in dataclasses.fields(request_type) if f.name.endswith("_id")]
    own_kind = {"case_id": 2, "task_id": 4, "workitem_id": 3, "work_order_id": 0, "workflow_id": 5}[field]
    if entity_id == ids[own_kind]:
        return  # the right id: not bad input
    try:
        client.request(request_type(**{field: entity_id}), timeout_s=10)
    except PetriflowError as error:
        assert error.code in ("not_found", "invalid") and error.message
    else:
        pytest.fail(f"{request_type.__name__}({entity_id!r}) was accepted")
    assert storage_dump(db) == before


@PROPERTY
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=4), st.integers(0, 3))
def test_huge_and_deep_payloads_are_stored_or_refused_whole(engine, payload, depth):
    client, db, ids = engine
    for _ in range(depth * 40):
        payload = {"nested": payload}
    try:
        client.request(wire.StartCase("no-such-flow", payload), timeout_s=10)
    except PetriflowError as error:
        assert error.code in ("not_found", "invalid")
