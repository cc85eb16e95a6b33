"""Prometheus metrics: each moves by what happened, read back from the
exposition as a scraper would. Embedded, they live in this process's
default registry, shared by every test: each test compares before and
after, on workflows of its own. The multiprocess test runs a daemon-like
keeper in a subprocess, so its variable is set before prometheus_client is
imported there, and proves that what node processes count reaches the scrape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from petriflow import metrics
from petriflow.storage.errors import StorageFull
from petriflow.supervision import processes
from tests.engines import awaiting_workitem, running_engine, wait_for, workflow

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("work_order", "case", "task", "workitem", "node")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape() -> Samples:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return _parse(body.decode())


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _live(samples: Samples) -> dict[str, float]:
    return {kind: _value(samples, "petriflow_live_actors", kind=kind) for kind in KINDS}


def _sequence(name: str, *executors: dict) -> dict:
    steps = [{"id": f"s{n}", **e} for n, e in enumerate(executors)]
    places = ["start", *[f"p{n}" for n in range(len(steps) - 1)], "end"]
    arcs = []
    for n, step in enumerate(steps):
        arcs += [f"{places[n]} -> {step['id']}", f"{step['id']} -> {places[n + 1]}"]
    return workflow(name, places, steps, arcs)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(tmp_path):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db", idle_timeout_s=0.2) as client:
        yield client


def test_every_metric_is_listed_with_its_help_embedded():
    body, content_type = metrics.exposition()
    text = body.decode()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    names = {family.name for family in text_string_to_metric_families(text)}
    for name in (
        "petriflow_work_orders_created",
        "petriflow_work_orders_finished",
        "petriflow_step_duration_seconds",
        "petriflow_actor_restarts",
        "petriflow_actor_give_ups",
        "petriflow_live_actors",
        "petriflow_ingress_queue_depth",
        "petriflow_storage_commit_seconds",
        "petriflow_storage_unavailable",
        "petriflow_storage_outages",
        "petriflow_timers_waiting",
        "petriflow_runs_waiting_for_slot",
    ):
        assert name in names
        assert f"# HELP {name}" in text
    metrics.set_ingress_queue_depth(7)
    assert _value(_scrape(), "petriflow_ingress_queue_depth") == 7
    metrics.set_ingress_queue_depth(0)
    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n")


def test_a_finished_workflow_moves_created_finished_steps_and_commits(client):
    name = _name("counted")
    client.put_workflow(_sequence(name, {"executor": "echo"}, {"executor": "noop"}, {"executor": "echo"}))
    wait_for(lambda: client.ping() and _live(_scrape())["node"] >= 1)
    before = _scrape()
    ids = [client.submit(name, {"n": n}).work_order_id for n in range(3)]
    assert all(client.wait_work_order(i).work_order.state.value == "success" for i in ids)
    after = _scrape()
    created = ("petriflow_work_orders_created_total", {"workflow": name, "trigger_type": "manual"})
    assert _value(after, created[0], **created[1]) - _value(before, created[0], **created[1]) == 3
    finished = {"workflow": name, "state": "success"}
    assert _value(after, "petriflow_work_orders_finished_total", **finished) == 3
    for transition in ("s0", "s1", "s2"):
        labels = {"workflow": name, "transition": transition}
        assert _value(after, "petriflow_step_duration_seconds_count", **labels) == 3
        assert _value(after, "petriflow_step_duration_seconds_sum", **labels) >= 0
        assert _value(after, "petriflow_step_duration_seconds_bucket", **labels, le="+Inf") == 3
    commits = ("petriflow_storage_commit_seconds_count", {"backend": "sqlite"})
    assert _value(after, commits[0], **commits[1]) > _value(before, commits[0], **commits[1])
    # every entity actor of those work orders exited: the live gauges are back where they were
    wait_for(lambda: client.ping() and _live(_scrape()) == _live(before))


def test_a_failing_workflow_counts_failed(client):
    name = _name("failing")
    client.put_workflow(_sequence(name, {"executor": "echo"}, {"executor": "fail", "params": {"reason": "no"}}))
    order = client.submit(name, {}).work_order_id
    assert client.wait_work_order(order).work_order.state.value == "failed"
    after = _scrape()
    assert _value(after, "petriflow_work_orders_finished_total", workflow=name, state="failed") == 1
    assert _value(after, "petriflow_work_orders_finished_total", workflow=name, state="success") == 0
    assert _value(after, "petriflow_step_duration_seconds_count", workflow=name, transition="s1") == 1


def test_live_actors_count_a_waiting_work_order_until_it_passivates_and_after_it_ends(client):
    name = _name("waiting")
    client.put_workflow(_sequence(name, {"executor": "echo"}, {"executor": "manual"}))
    wait_for(lambda: client.ping() and _live(_scrape())["node"] >= 1)
    before = _live(_scrape())
    order = client.submit(name, {}).work_order_id
    case_id = client.get_work_order(order).runs[0].run.case_id
    workitem = awaiting_workitem(client, case_id, "s1")
    live = _live(_scrape())
    assert {k: live[k] - before[k] for k in KINDS} == {"work_order": 1, "case": 1, "task": 1, "workitem": 1, "node": 0}
    wait_for(lambda: client.ping().live_work_orders == 0)  # passivated: idle past 0.2 s
    assert _live(_scrape()) == before
    client.complete_workitem(workitem, {"ok": True})  # restored, finished, exited
    assert client.wait_work_order(order).work_order.state.value == "success"
    wait_for(lambda: client.ping() and _live(_scrape()) == before)
    assert _value(_scrape(), "petriflow_step_duration_seconds_count", workflow=name, transition="s1") == 1


def test_a_work_order_killed_past_the_intensity_counts_restarts_a_give_up_and_crashed(tmp_path):
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        name = _name("killed")
        client.put_workflow(_sequence(name, {"executor": "manual"}))
        order = client.submit(name, {}).work_order_id
        awaiting_workitem(client, client.get_work_order(order).runs[0].run.case_id, "s0")
        before = _scrape()
        for _ in range(4):  # three restarts, then its supervisor gives up
            incarnation = client.get_work_order(order).work_order.incarnation
            client.kill(order)
            wait_for(lambda: client.get_work_order(order).work_order.incarnation > incarnation)
        wait_for(lambda: client.get_work_order(order).work_order.state.value == "crashed")
        after = _scrape()
    delta = {
        name: _value(after, name, kind="work_order") - _value(before, name, kind="work_order")
        for name in ("petriflow_actor_restarts_total", "petriflow_actor_give_ups_total")
    }
    assert delta == {"petriflow_actor_restarts_total": 3, "petriflow_actor_give_ups_total": 1}
    assert _value(after, "petriflow_work_orders_finished_total", workflow=name, state="crashed") == 1


def test_closing_an_embedded_system_stops_counting_its_actors_as_live(tmp_path):
    before = _live(_scrape())
    with running_engine("simpleSystemBase", f"sqlite:///{tmp_path}/petriflow.db") as client:
        name = _name("closed")
        client.put_workflow(_sequence(name, {"executor": "manual"}))
        order = client.submit(name, {}).work_order_id
        awaiting_workitem(client, client.get_work_order(order).runs[0].run.case_id, "s0")
        live = _live(_scrape())
        assert all(live[k] - before[k] == 1 for k in KINDS), live
    assert _live(_scrape()) == before


def test_a_storage_outage_shows_while_it_lasts_and_counts_once(tmp_path):
    flag = tmp_path / "flag"
    with running_engine("simpleSystemBase", f"faulty+sqlite:///{tmp_path}/petriflow.db#{flag}") as client:
        name = _name("outage")
        client.put_workflow(_sequence(name, {"executor": "echo"}))
        before = _scrape()
        flag.write_text("full *\n")
        for _ in range(3):  # the first fails, the others are refused at once: one outage
            with pytest.raises(StorageFull):
                client.submit(name, {})
        during = _scrape()
        counted = ("petriflow_storage_outages_total", {"part": "engine", "code": "storage_full"})
        assert _value(during, counted[0], **counted[1]) - _value(before, counted[0], **counted[1]) == 1
        assert _value(during, "petriflow_storage_unavailable", part="engine") == 1
        flag.unlink()
        wait_for(lambda: _accepted(client, name))
        assert _value(_scrape(), "petriflow_storage_unavailable", part="engine") == 0


def _accepted(client, name: str) -> bool:
    try:
        client.submit(name, {})
    except StorageFull:
        return False
    return True


def test_waiting_timers_and_runs_held_back_by_a_concurrency_show_as_gauges(client):
    name = _name("held")
    client.put_workflow({**_sequence(name, {"executor": "timer", "params": {"seconds": 60}}), "concurrency": 1})
    orders = [client.submit(name, {}).work_order_id for _ in range(3)]

    def shown() -> tuple[float, float]:
        samples = _scrape()
        client.ping()  # embedded, the Engine's scan runs only inside a client's call
        return _value(samples, "petriflow_timers_waiting"), _value(
            samples, "petriflow_runs_waiting_for_slot", workflow=name
        )

    wait_for(lambda: shown() == (1, 2), timeout_s=10)
    client.cancel(orders[0])
    wait_for(lambda: shown() == (1, 1), timeout_s=10)  # the next one started, and its timer waits
    for order in orders[1:]:
        client.cancel(order)
    wait_for(lambda: shown() == (0, 0), timeout_s=10)


def test_use_directory_refuses_once_prometheus_client_was_imported_without_it(tmp_path, monkeypatch):
    monkeypatch.delenv(metrics.ENV, raising=False)
    assert "prometheus_client" in sys.modules  # this module imported it
    with pytest.raises(RuntimeError, match="before prometheus_client is imported"):
        metrics.use_directory(tmp_path / "metrics")
    assert metrics.ENV not in os.environ
    assert not (tmp_path / "metrics").exists()


def _python(code: str, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != metrics.ENV}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
        env=env,
    )


def test_importing_petriflow_and_its_daemon_does_not_import_prometheus_client():
    """The daemon must be able to call use_directory after its imports."""
    done = _python(
        """
        import sys
        import petriflow, petriflow.metrics, petriflow.daemon.keeper, petriflow.cli
        print("prometheus_client" in sys.modules)
        """
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"


KEEPER = """
import json, os, signal, sys
from petriflow import metrics
from petriflow.storage.errors import StorageFull

metrics.use_directory(sys.argv[1])
from petriflow.system import system_session
from tests.engines import running_engine, wait_for, workflow

WF = workflow(
    "spread",
    ["start", "p", "end"],
    [{"id": "first", "executor": "echo"}, {"id": "second", "executor": "noop"}],
    ["start -> first", "first -> p", "p -> second", "second -> end"],
)
with running_engine("multiprocTCPBase", "sqlite:///" + sys.argv[2], nodes=2) as client:
    with open(sys.argv[3], "w") as f:
        f.write(str(system_session(client.asys).sid))
    client.put_workflow(WF)
    ids = [client.submit("spread", {"n": n}).work_order_id for n in range(4)]
    states = [client.wait_work_order(i).work_order.state.value for i in ids]
    info = client.ping()
    during = metrics.exposition()[0].decode()
    files = sorted(os.listdir(sys.argv[1]))
    os.kill(info.nodes["node-0"], signal.SIGKILL)  # its live gauges stay in its files, its process is gone
    wait_for(lambda: (nodes := client.ping().nodes).get("node-0", info.nodes["node-0"]) != info.nodes["node-0"]
             and len(nodes) == 2)
    restarted = metrics.exposition()[0].decode()
after = metrics.exposition()[0].decode()
print(json.dumps({"states": states, "nodes": info.nodes, "engine": info.pid, "keeper": os.getpid(),
                  "during": during, "restarted": restarted, "after": after, "files": files}))
"""


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.timeout(150)
def test_node_processes_metrics_reach_the_scrape_in_multiprocess_mode(tmp_path):
    directory, session_file = tmp_path / "metrics", tmp_path / "session"
    directory.mkdir()
    (directory / "counter_1.db").write_bytes(b"stale")  # an earlier run's: emptied at start
    try:
        done = _python(KEEPER, str(directory), str(tmp_path / "petriflow.db"), str(session_file), timeout_s=120)
    finally:
        if session_file.exists():  # whatever happened, no process of it outlives the test
            processes.wait_until_gone(processes.kill_session(int(session_file.read_text())))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["states"] == ["success"] * 4
    node_pids = set(result["nodes"].values())
    assert len(node_pids) == 2 and result["keeper"] not in node_pids and result["engine"] not in node_pids
    # each node wrote files of its own: steps and work-order ends are counted only there
    assert all(f"histogram_{pid}.db" in result["files"] for pid in node_pids), result["files"]
    assert "counter_1.db" not in result["files"]
    during, after = _parse(result["during"]), _parse(result["after"])
    for transition in ("first", "second"):
        assert _value(during, "petriflow_step_duration_seconds_count", workflow="spread", transition=transition) == 4
    assert _value(during, "petriflow_work_orders_finished_total", workflow="spread", state="success") == 4
    assert _value(during, "petriflow_work_orders_created_total", workflow="spread", trigger_type="manual") == 4
    assert _value(during, "petriflow_storage_commit_seconds_count", backend="sqlite") > 0
    assert _value(during, "petriflow_live_actors", kind="node") == 2
    # a SIGKILLed node's live gauges left the sum with its process; the Engine counted its restart
    restarted = _parse(result["restarted"])
    assert _value(restarted, "petriflow_live_actors", kind="node") == 2
    assert _value(restarted, "petriflow_actor_restarts_total", kind="node") == 1
    assert _value(restarted, "petriflow_work_orders_finished_total", workflow="spread", state="success") == 4
    # the nodes are gone: their live gauges left the sum, their counters stayed
    assert _value(after, "petriflow_live_actors", kind="node") == 0
    assert _value(after, "petriflow_work_orders_finished_total", workflow="spread", state="success") == 4
