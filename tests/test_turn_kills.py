"""A node SIGKILLed at the worst moments of a turn, on the daemon's base
(multiprocTCPBase), seen through the public Client API.

The faulty backend's flag file (`faulty+<url>#<flag>`, storage.faults) has
the node kill itself just before it commits a turn that wrote a case
(`kill-before-commit`), or just after the commit, before the node released
what the turn sent (`kill-after-commit`). Either way the client is not told
of a success: before the commit nothing is stored, and the completion is
done again; after it everything is stored and a second completion is
refused. The Engine starts the node again, which restores from storage,
and every work order ends once, with nothing done twice.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from petriflow.client import Client, EngineTimeout
from petriflow.engine.errors import AlreadyCompleted, PetriflowError
from petriflow.engine.states import WorkitemState
from petriflow.engine.wire import WorkOrderView
from petriflow.storage import open_backend
from petriflow.storage.store import WorkOrderStorage
from petriflow.system import free_port
from tests.engines import APPROVAL, awaiting_workitem, running_engine, wait_for, workflow

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow, pytest.mark.multiproc]

MULTIPROC = "multiprocTCPBase"
NODE = "node-0"
CLIENT_PATIENCE_S = 4.0  # how long a client waits for the answer a killed node never sends

SEQ3 = workflow(
    "seq3",
    ["start", "p1", "p2", "end"],
    [
        {"id": "one", "executor": "noop"},
        {"id": "two", "executor": "echo", "params": {"two": True}},
        {"id": "three", "executor": "noop"},
    ],
    ["start -> one", "one -> p1", "p1 -> two", "two -> p2", "p2 -> three", "three -> end"],
)


@dataclass
class Daemon:
    client: Client
    flag: Path  # the faulty backend's flag file
    db: Path  # the SQLite file under it
    port: int  # the admin port, for a second client process


@contextlib.contextmanager
def _faulty_engine(tmp_path: Path, **settings: Any) -> Iterator[Daemon]:
    """The engine on multiprocTCPBase with one node, on faulty SQLite; the
    flag file starts empty."""
    db, flag, port = tmp_path / "petriflow.db", tmp_path / "flag", free_port()
    flag.write_text("")
    with running_engine(MULTIPROC, f"faulty+sqlite:///{db}#{flag}", nodes=1, port=port, **settings) as client:
        yield Daemon(client, flag, db, port)


@pytest.fixture
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    """Default settings, or those given by indirect parametrization."""
    with _faulty_engine(tmp_path, **getattr(request, "param", {})) as running:
        yield running


# The killed turn holds the completion and, with the default 10 ms bound, often only part of what it
# sets off (the restarted node restores the rest); with a 5 s bound, everything up to the end of the
# work order.
TURNS = pytest.mark.parametrize(
    "daemon", [{}, {"turn_max_s": 5.0}], indirect=True, ids=["default-turns", "one-long-turn"]
)


def _node_pid(client: Client) -> int | None:
    """The node's pid, as the Engine reports it (None while it does not answer)."""
    nodes = {a.entity_id: a.pid for a in client.list_actors() if a.kind == "node"}
    return nodes.get(NODE)


def _restarted(client: Client, before: int) -> int:
    """Poll until the node answers from a process other than `before`."""
    return wait_for(lambda: (pid := _node_pid(client)) not in (None, before) and pid, timeout_s=60, interval_s=0.2)


def _waiting(client: Client) -> tuple[str, str, str]:
    """A work order on APPROVAL waiting at its manual step: (work order, case, workitem)."""
    order_id = client.submit("approval", {"n": 1}).work_order_id
    case_id = client.get_work_order(order_id).runs[0].run.case_id
    return order_id, case_id, awaiting_workitem(client, case_id, "approve")


def _complete_unanswered(client: Client, workitem_id: str, *, errors: tuple = (PetriflowError,)) -> BaseException:
    """Complete `workitem_id` with a client that waits only briefly: the
    call must not come back as a success (it times out, or one of `errors`)."""
    impatient = Client(client.asys, timeout_s=CLIENT_PATIENCE_S)
    with pytest.raises((EngineTimeout, *errors)) as failed:
        impatient.complete_workitem(workitem_id, {"approved": True})
    return failed.value


def _assert_done_once(view: WorkOrderView, transitions: list[str]) -> None:
    """Success, one run, and exactly one workitem per transition, completed
    at its first attempt: nothing ran twice, nothing was lost."""
    assert view.work_order.state.value == "success"
    (run,) = view.runs
    assert run.run.state.value == "success"
    assert Counter(s.transition_id for s in run.steps) == dict.fromkeys(transitions, 1)
    assert {s.state for s in run.steps} == {"completed"}
    assert {s.attempt for s in run.steps} == {1}


def _stored_nodes(db: Path) -> dict[str, int]:
    """Node id -> incarnation, straight from the file (not through the faulty wrapper)."""
    store = WorkOrderStorage(open_backend(f"sqlite://{db}"))
    try:
        with store.backend.transaction(write=False) as tx:
            return {row["id"]: row["incarnation"] for row in tx.find("nodes")}
    finally:
        store.close()


@TURNS
def test_a_node_killed_between_writing_and_committing_a_completion_stores_none_of_it(daemon):
    client, flag, db = daemon.client, daemon.flag, daemon.db
    client.put_workflow(APPROVAL)
    order_id, case_id, workitem_id = _waiting(client)
    before = _node_pid(client)
    assert before is not None

    flag.write_text(f"kill-before-commit {case_id}\n")
    failure = _complete_unanswered(client, workitem_id)
    after = _restarted(client, before)
    assert flag.read_text() == "", f"the kill fired, once (the client got {failure!r})"

    # the completion was lost with the node: the workitem still waits for it
    waiting = wait_for(
        lambda: (w := client.get_workitem(workitem_id)).state is WorkitemState.STARTED and w.awaiting and w
    )
    assert (waiting.output, waiting.attempt) == (None, 1)
    assert client.get_work_order(order_id).work_order.state.value == "running"

    client.complete_workitem(workitem_id, {"approved": True})  # done again, this time it counts
    view = client.wait_work_order(order_id, 60)
    _assert_done_once(view, ["fetch", "approve", "post"])
    approve = next(s for s in view.runs[0].steps if s.transition_id == "approve")
    assert approve.output == {"approved": True}
    assert _node_pid(client) == after, "the node died once"
    assert _stored_nodes(db)[NODE] == 2


@TURNS
def test_a_node_killed_between_committing_and_answering_keeps_the_completion(daemon):
    client, flag, db = daemon.client, daemon.flag, daemon.db
    client.put_workflow(APPROVAL)
    order_id, case_id, workitem_id = _waiting(client)
    before = _node_pid(client)
    assert before is not None

    flag.write_text(f"kill-after-commit {case_id}\n")
    # the answer was held back until the commit, and died with the node: no reply at all
    failure = _complete_unanswered(client, workitem_id, errors=())
    after = _restarted(client, before)
    assert flag.read_text() == "", f"the kill fired, once (the client got {failure!r})"

    # yet the completion was committed before the kill
    done = client.get_workitem(workitem_id)
    assert (done.state, done.output, done.attempt) == (WorkitemState.COMPLETED, {"approved": True}, 1)
    with pytest.raises(AlreadyCompleted, match=workitem_id):
        client.complete_workitem(workitem_id, {"approved": "twice"})

    view = client.wait_work_order(order_id, 60)
    _assert_done_once(view, ["fetch", "approve", "post"])
    approve = next(s for s in view.runs[0].steps if s.transition_id == "approve")
    assert approve.output == {"approved": True}, "the refused second completion changed nothing"
    assert _node_pid(client) == after, "the node died once"
    assert _stored_nodes(db)[NODE] == 2


def test_nodes_killed_before_and_after_committing_automatic_runs_lose_and_repeat_nothing(daemon):
    client, flag, db = daemon.client, daemon.flag, daemon.db
    client.put_workflow(SEQ3)
    before = _node_pid(client)
    assert before is not None

    orders = [client.submit("seq3", {"n": n}).work_order_id for n in range(2)]
    flag.write_text("kill-before-commit *\nkill-after-commit *\n")
    orders += [client.submit("seq3", {"n": n}).work_order_id for n in range(2, 6)]  # turns after the flag, for sure

    views = [client.wait_work_order(order_id, 90) for order_id in orders]
    for view in views:
        _assert_done_once(view, ["one", "two", "three"])
        (run,) = view.runs
        two = next(s for s in run.steps if s.transition_id == "two")
        assert two.output == {"n": view.work_order.input["n"], "two": True}
    assert flag.read_text() == "", "both kills fired, once each"
    after = _node_pid(client)
    assert after not in (None, before), "the Engine started the node again"
    actors = client.list_actors()
    assert all(a.pid == after for a in actors if a.kind not in ("engine",)), "every entity lives on the new node"
    assert _stored_nodes(db)[NODE] == 3, "the node died twice: before a commit, then after one"


WAITER = """
import sys
from petriflow.client import Client, EngineTimeout

client = Client.connect(int(sys.argv[1]), 30)
client.ping()
print("waiting", flush=True)
try:
    print(client.wait_work_order(sys.argv[2], float(sys.argv[3])).work_order.state.value)
except EngineTimeout:
    print("no answer")
"""


def test_a_client_already_waiting_is_answered_when_the_node_dies_after_committing_the_end(tmp_path):
    # a turn long enough that the completion and everything it sets off, up to the end of the work
    # order, commit together (with the default 10 ms bound that happens only sometimes)
    with _faulty_engine(tmp_path, turn_max_s=5.0) as daemon:
        client, flag = daemon.client, daemon.flag
        client.put_workflow(APPROVAL)
        order_id, case_id, workitem_id = _waiting(client)
        before = _node_pid(client)
        assert before is not None
        waiter = subprocess.Popen(  # another client process, waiting for the work order's end
            [sys.executable, "-c", WAITER, str(daemon.port), order_id, "10"], stdout=subprocess.PIPE, text=True
        )
        try:
            assert waiter.stdout is not None and waiter.stdout.readline() == "waiting\n"
            time.sleep(1)  # its WaitWorkOrder has reached the Engine
            assert client.get_work_order(order_id).work_order.state.value == "running"
            flag.write_text(f"kill-after-commit {case_id}\n")
            _complete_unanswered(client, workitem_id, errors=())
            _restarted(client, before)
            assert flag.read_text() == ""
            assert client.get_work_order(order_id).work_order.state.value == "success", "stored before the kill"
            answer, _ = waiter.communicate(timeout=60)
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
        assert answer.strip() == "success", "the client waiting for the end of the work order is told of it"
