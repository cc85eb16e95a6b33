"""retry_many from a named transition (Lightning's `retry_many(workorders,
job_id)`): each work order is retried from the last step of that transition
in its latest run, every new run enqueued in one transaction, and what cannot
be retried is discarded with its reason. Through the Client on an engine in
this process, and through `petriflow retry-many --from` against the daemon."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from petriflow.engine import codec
from petriflow.engine.states import RunState, WorkOrderState
from petriflow.engine.wire import Discard, RetryMany, RetryManyResult, RunStep
from tests.daemons import ROOT, RunningDaemon, daemon_in
from tests.engines import BASES, running_engine, workflow

pytestmark = pytest.mark.timeout(120)

JOURNAL = "tests.executors:Journal"

# step2 fails until the file `release` exists beside the journal: the first
# runs fail there, their retries pass. The journal counts executions.
FLAKY = workflow(
    "flaky",
    ["start", "p1", "p2", "end"],
    [
        {"id": "step1", "executor": JOURNAL},
        {"id": "step2", "executor": JOURNAL, "params": {"fail_unless_exists": "release"}},
        {"id": "step3", "executor": JOURNAL},
    ],
    ["start -> step1", "step1 -> p1", "p1 -> step2", "step2 -> p2", "p2 -> step3", "step3 -> end"],
)
WAITS = workflow(
    "waits", ["start", "end"], [{"id": "approve", "executor": "manual"}], ["start -> approve", "approve -> end"]
)
OTHER = workflow("other", ["start", "end"], [{"id": "step2", "executor": "echo"}], ["start -> step2", "step2 -> end"])


def _executions(journal_dir: Path) -> Counter:
    path = journal_dir / "journal.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return Counter(json.loads(line)["transition"] for line in lines)


def _steps(run_view: Any) -> dict[str, str]:
    return {step.transition_id: step.step_id for step in run_view.steps}


@pytest.fixture(params=BASES)
def client(request, home):
    with running_engine(request.param, f"sqlite:///{home}/petriflow.db") as client:
        for document in (FLAKY, WAITS, OTHER):
            client.put_workflow(document)
        yield client


@pytest.fixture
def embedded(home):
    with running_engine("simpleSystemBase", f"sqlite:///{home}/petriflow.db") as client:
        for document in (FLAKY, WAITS, OTHER):
            client.put_workflow(document)
        yield client


def _failed_at_step2(client, n: int) -> list[Any]:
    views = [client.wait_work_order(client.submit("flaky", {"i": i}).work_order_id) for i in range(n)]
    for view in views:
        (run,) = view.runs
        assert run.run.state is RunState.FAILED and run.run.failure.transition_id == "step2"
        assert set(_steps(run)) == {"step1", "step2"}
    return views


# -- the embedded base --------------------------------------------------------------------


def test_retry_many_from_step2_keeps_step1_and_reruns_step2_and_step3(client, home):
    failed = _failed_at_step2(client, 3)
    assert _executions(home) == {"step1": 3}
    (home / "release").touch()

    result = client.retry_many_detailed([v.work_order.id for v in failed], from_transition="step2")

    assert result == RetryManyResult(enqueued=3, discarded=0, discards=[])
    for first in failed:
        view = client.wait_work_order(first.work_order.id)
        assert view.work_order.state is WorkOrderState.SUCCESS
        old, new = view.runs
        assert new.run.state is RunState.SUCCESS
        assert new.run.retried_from_run_id == old.run.id
        assert new.run.retried_from_step_id == _steps(old)["step2"]
        assert {s.transition_id: s.step_id for s in new.steps if s.kept} == {"step1": _steps(old)["step1"]}
        rerun = {s.transition_id: s for s in new.steps if not s.kept}
        assert set(rerun) == {"step2", "step3"} and all(s.state == "completed" for s in rerun.values())
        assert rerun["step2"].step_id != _steps(old)["step2"]
    assert _executions(home) == {"step1": 3, "step2": 3, "step3": 3}, "kept steps are not executed again"


def test_a_step_kept_from_an_earlier_run_counts_as_a_step_of_the_latest_run(embedded, home):
    (first,) = _failed_at_step2(embedded, 1)
    (home / "release").touch()
    assert embedded.retry_many([first.work_order.id], from_transition="step2") == (1, 0)
    second = embedded.wait_work_order(first.work_order.id).runs[1]
    kept_step1 = next(s for s in second.steps if s.transition_id == "step1")
    assert kept_step1.kept and kept_step1.step_id == _steps(first.runs[0])["step1"]

    assert embedded.retry_many([first.work_order.id], from_transition="step1") == (1, 0)
    view = embedded.wait_work_order(first.work_order.id)
    third = view.runs[2]
    assert third.run.state is RunState.SUCCESS
    assert third.run.retried_from_run_id == second.run.id
    assert third.run.retried_from_step_id == kept_step1.step_id
    assert not [s for s in third.steps if s.kept]
    assert _executions(home) == {"step1": 2, "step2": 2, "step3": 2}


def test_what_cannot_be_retried_is_discarded_with_its_reason(embedded, home):
    (never_reached,) = _failed_at_step2(embedded, 1)  # step3 never ran
    (home / "release").touch()
    done = embedded.wait_work_order(embedded.submit("flaky", {"ok": True}).work_order_id)
    assert done.work_order.state is WorkOrderState.SUCCESS
    busy = embedded.submit("waits", {})
    f, d, b = never_reached.work_order.id, done.work_order.id, busy.work_order_id
    old_run_of = {o.work_order.id: o.runs[-1].run.id for o in (never_reached, done)}

    result = embedded.retry_many_detailed([d, f, b, "no-such-order", d], from_transition="step3")

    assert (result.enqueued, result.discarded) == (1, 4)
    assert [x.work_order_id for x in result.discards] == [f, b, "no-such-order", d]
    assert result.discards[0].reason == (
        f"the latest run {old_run_of[f]} of work order {f} has no step of transition 'step3'"
    )
    assert result.discards[1].reason.startswith(f"work order {b} has a run in progress")
    assert result.discards[2:] == [
        Discard("no-such-order", "work order 'no-such-order' not found"),
        Discard(d, f"work order {d} is named more than once"),
    ]
    assert all(x.run_id is None for x in result.discards)

    view = embedded.wait_work_order(d)
    assert len(view.runs) == 2 and view.runs[1].run.state is RunState.SUCCESS
    assert {s.transition_id for s in view.runs[1].steps if s.kept} == {"step1", "step2"}
    assert {s.transition_id for s in view.runs[1].steps if not s.kept} == {"step3"}
    assert len(embedded.get_work_order(f).runs) == 1, "a discarded work order gets no run"
    assert len(embedded.get_work_order(b).runs) == 1
    embedded.cancel(b)


def test_an_unknown_transition_and_a_discarded_workflow_are_discards(embedded):
    (failed,) = _failed_at_step2(embedded, 1)
    other = embedded.wait_work_order(embedded.submit("other", {}).work_order_id)
    embedded.discard_workflow("other")

    result = embedded.retry_many_detailed([failed.work_order.id, other.work_order.id], from_transition="nosuch")

    assert (result.enqueued, result.discarded) == (0, 2)
    assert result.discards[0] == Discard(failed.work_order.id, "workflow 'flaky' has no transition 'nosuch'")
    assert result.discards[1].work_order_id == other.work_order.id
    assert "workflow 'other' is discarded" in result.discards[1].reason
    assert embedded.retry_many([other.work_order.id], from_transition="step2") == (0, 1)
    assert len(embedded.get_work_order(failed.work_order.id).runs) == 1


def test_without_from_work_orders_are_retried_from_the_first_step_and_discards_have_reasons(embedded, home):
    (failed,) = _failed_at_step2(embedded, 1)
    (home / "release").touch()
    step2 = _steps(failed.runs[0])["step2"]

    result = embedded.retry_many_detailed(
        [failed.work_order.id, "nope", failed.work_order.id], steps=[(failed.runs[0].run.id, step2), ("no-run", "x")]
    )

    assert (result.enqueued, result.discarded) == (1, 4)
    wo = failed.work_order.id
    assert result.discards == [
        Discard("nope", "work order 'nope' not found"),
        Discard(wo, f"work order {wo} is named more than once"),
        Discard(wo, f"work order {wo} is named more than once", run_id=failed.runs[0].run.id),
        Discard(None, "run 'no-run' not found", run_id="no-run"),
    ]
    new = embedded.wait_work_order(wo).runs[1]
    assert new.run.state is RunState.SUCCESS and new.run.retried_from_run_id is None
    assert not [s for s in new.steps if s.kept]
    assert _executions(home) == {"step1": 2, "step2": 1, "step3": 1}


def test_the_request_and_its_result_round_trip_through_the_codec():
    result = RetryManyResult(
        enqueued=1,
        discarded=2,
        discards=[Discard("wo-1", "work order 'wo-1' not found"), Discard(None, "run 'r' not found", run_id="r")],
    )
    assert codec.decode(codec.encode(result)) == result
    request = RetryMany(["wo-1", "wo-2"], [RunStep("r", "s")], from_transition="step2")
    assert codec.decode(codec.encode(request)) == request
    older = {"~": "RetryMany", "work_order_ids": ["wo-1"], "steps": []}  # a client from before from_transition
    assert codec.decode(msgpack.packb(older)) == RetryMany(["wo-1"])
    bare = {"~": "RetryManyResult", "enqueued": 0, "discarded": 0}
    assert codec.decode(msgpack.packb(bare)) == RetryManyResult(0, 0, [])


# -- the daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    base = tmp_path_factory.mktemp("retry-many-from")
    journal = base / "journal.jsonl"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # tests.executors importable
    with daemon_in(base / "home", PETRIFLOW_TEST_JOURNAL=str(journal), PYTHONPATH=path) as running:
        started = running.cli("start", "--http-port", str(running.http_port), "--nodes", "2")
        assert started.returncode == 0, started.stderr
        for document in (FLAKY, WAITS):
            path = base / f"{document['id']}.json"
            path.write_text(json.dumps(document))
            loaded = running.cli("workflow", "load", str(path))
            assert loaded.returncode == 0, loaded.stderr
        yield running


def _json(daemon: RunningDaemon, *args: str) -> tuple[int, dict[str, Any]]:
    result = daemon.cli(*args, "--json")
    return result.returncode, json.loads(result.stdout)


def _settled(daemon: RunningDaemon, work_order_id: str, runs: int, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code, order = _json(daemon, "show", work_order_id)
        assert code == 0, order
        if len(order["runs"]) == runs and all(
            r["state"] not in ("available", "claimed", "started") for r in order["runs"]
        ):
            return order
        time.sleep(0.2)
    raise AssertionError(f"work order {work_order_id} has not {runs} finished runs within {timeout}s")


@pytest.mark.slow
@pytest.mark.multiproc
def test_cli_retry_many_from_a_transition_and_its_discards(daemon: RunningDaemon) -> None:
    release = Path(daemon.env["PETRIFLOW_TEST_JOURNAL"]).with_name("release")
    failed = []
    for _ in range(3):
        code, order = _json(daemon, "submit", "flaky", "--wait", "--timeout", "30")
        assert code == 1 and order["state"] == "failed", order
        failed.append(order)
    release.touch()

    text = daemon.cli("retry-many", "--from", "step2", *[o["work_order_id"] for o in failed])
    assert text.returncode == 0, text.stderr
    assert text.stdout.strip() == "enqueued 3, discarded 0"
    for order in failed:
        [old, new] = _settled(daemon, order["work_order_id"], 2)["runs"]
        assert new["state"] == "success" and new["retried_from_step_id"] == old["steps"][1]["step_id"]
        steps = {s["transition_id"]: s for s in new["steps"]}
        assert steps["step1"]["kept"] and steps["step1"]["step_id"] == old["steps"][0]["step_id"]
        assert not steps["step2"]["kept"] and not steps["step3"]["kept"]

    busy = _json(daemon, "submit", "waits")[1]["work_order_id"]
    first = failed[0]["work_order_id"]
    discarding = daemon.cli("retry-many", "--from", "step3", first, busy, "no-such-order", first)
    assert discarding.returncode == 0, discarding.stderr
    lines = discarding.stdout.strip().splitlines()
    assert lines[0] == "enqueued 1, discarded 3"
    assert lines[1] == f"discarded {busy}: " + lines[1].split(": ", 1)[1]
    assert f"work order {busy} has a run in progress" in lines[1]
    assert lines[2:] == [
        "discarded no-such-order: work order 'no-such-order' not found",
        f"discarded {first}: work order {first} is named more than once",
    ]
    _settled(daemon, first, 3)


@pytest.mark.slow
@pytest.mark.multiproc
def test_cli_retry_many_json_gives_the_counts_and_each_discard(daemon: RunningDaemon) -> None:
    Path(daemon.env["PETRIFLOW_TEST_JOURNAL"]).with_name("release").unlink(missing_ok=True)
    code, failed = _json(daemon, "submit", "flaky", "--wait", "--timeout", "30")
    assert code == 1, failed
    order_id, run_id = failed["work_order_id"], failed["runs"][0]["run_id"]

    code, data = _json(daemon, "retry-many", "--from", "step3", order_id, "no-such-order")
    assert code == 0, data
    assert data == {
        "enqueued": 0,
        "discarded": 2,
        "discards": [
            {
                "work_order_id": order_id,
                "reason": f"the latest run {run_id} of work order {order_id} has no step of transition 'step3'",
            },
            {"work_order_id": "no-such-order", "reason": "work order 'no-such-order' not found"},
        ],
    }
    code, data = _json(daemon, "retry-many", "--from", "nosuch", order_id)
    assert (code, data["discards"]) == (
        0,
        [{"work_order_id": order_id, "reason": "workflow 'flaky' has no transition 'nosuch'"}],
    )
    code, data = _json(daemon, "retry-many", order_id)  # no --from: from the first step, as before
    assert (code, data) == (0, {"enqueued": 1, "discarded": 0, "discards": []})
    _settled(daemon, order_id, 2)
