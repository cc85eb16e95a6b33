"""The command line against one real daemon, driven as a user drives it:
`bin/petriflow` in a subprocess, checking exit codes, tables and `--json`."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from petriflow import daemon
from petriflow.supervision import processes
from petriflow.system import free_port
from tests.engines import workflow

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "bin" / "petriflow"
T = TypeVar("T")

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(60)]


def chain(workflow_id: str, *transitions: dict[str, Any]) -> dict[str, Any]:
    """A sequence start -> t1 -> ... -> end, so each test owns its workflow id."""
    places = (
        [{"id": "start", "type": "start"}]
        + [{"id": f"p{i}"} for i in range(1, len(transitions))]
        + [{"id": "end", "type": "end"}]
    )
    arcs = []
    for i, transition in enumerate(transitions):
        arcs += [
            {"from": places[i]["id"], "to": transition["id"]},
            {"from": transition["id"], "to": places[i + 1]["id"]},
        ]
    return {"id": workflow_id, "version": 1, "places": places, "transitions": list(transitions), "arcs": arcs}


@dataclass
class Cli:
    home: Path
    port: int
    env: dict[str, str]

    def run(self, *args: str, home: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(BIN), *args, "--home", str(home or self.home), "--port", str(self.port)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
        )

    def json(self, *args: str, timeout: float = 30) -> tuple[int, dict[str, Any]]:
        result = self.run(*args, "--json", timeout=timeout)
        return result.returncode, json.loads(result.stdout)

    def ok(self, *args: str) -> dict[str, Any]:
        code, data = self.json(*args)
        assert code == 0, data
        return data

    def load(self, document: dict[str, Any]) -> None:
        path = self.home.parent / f"{document['id']}.json"
        path.write_text(json.dumps(document))
        assert self.run("workflow", "load", str(path)).returncode == 0

    def order(self, work_order_id: str) -> dict[str, Any]:
        return self.ok("show", work_order_id)


def until(probe: Callable[[], T | None], timeout: float = 20, what: str = "a condition") -> T:
    """Poll `probe` until it gives something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s")


def waiting_step(cli: Cli, work_order_id: str, transition_id: str) -> dict[str, Any] | None:
    """The step of the latest run that waits for a person, if it does yet."""
    runs = cli.order(work_order_id)["runs"]
    return (
        next((s for s in runs[-1]["steps"] if s["transition_id"] == transition_id and s["state"] == "started"), None)
        if runs
        else None
    )


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cli]:
    """One daemon for the module; afterwards stopped, and every process of it
    that is left is SIGKILLed by pid."""
    base = tmp_path_factory.mktemp("cli")
    env = {**os.environ, "PETRIFLOW_TEST_JOURNAL": str(base / "journal.jsonl"), "PYTHONPATH": str(ROOT)}
    running = Cli(home=base / "home", port=free_port(), env=env)
    started = running.run("start", "--http-port", str(free_port()), "--nodes", "3", timeout=60)
    assert started.returncode == 0, started.stderr
    try:
        for document in (
            json.loads((ROOT / "tests" / "workflows" / "sequence.json").read_text()),
            chain("cli-manual", {"id": "approve", "executor": "manual"}),
        ):
            running.load(document)
        yield running
    finally:
        pid = json.loads(running.run("status", "--json").stdout)["pid"]
        tree = [pid] + daemon.processes_of(pid) if pid else []
        running.run("stop", timeout=60)
        for member in processes.wait_until_gone(tree, 10):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member, signal.SIGKILL)


def test_workflows_are_loaded_listed_shown_and_discarded(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    document = chain("cli-discard", {"id": "only", "executor": "noop"})
    path.write_text(json.dumps({**document, "triggers": [{"id": "hook", "type": "webhook"}]}))
    loaded = cli.run("workflow", "load", str(path))
    assert loaded.returncode == 0 and "cli-discard" in loaded.stdout and "version 1" in loaded.stdout
    assert cli.ok("workflow", "load", str(path)) == {"workflow_id": "cli-discard", "version": 1}

    table = cli.run("workflow", "list").stdout
    assert table.splitlines()[0].split() == ["ID", "VERSION", "STATE", "TRIGGERS"]
    assert any(line.split()[:3] == ["cli-discard", "1", "active"] and "hook" in line for line in table.splitlines())
    listed = {w["id"]: w for w in cli.ok("workflow", "list")["workflows"]}
    assert listed["cli-discard"]["state"] == "active" and listed["cli-discard"]["triggers"][0]["id"] == "hook"
    assert "sequence" in listed

    shown = cli.ok("workflow", "show", "cli-discard", "--version", "1")
    assert shown["id"] == "cli-discard" and [t["id"] for t in shown["transitions"]] == ["only"]
    assert json.loads(cli.run("workflow", "show", "cli-discard").stdout)["arcs"] == shown["arcs"]

    assert cli.ok("workflow", "discard", "cli-discard") == {"workflow_id": "cli-discard", "discarded": True}
    assert {w["id"]: w for w in cli.ok("workflow", "list")["workflows"]}["cli-discard"]["state"] == "discarded"
    code, refused = cli.json("submit", "cli-discard")
    assert code == 2 and refused["error"]["code"] == "workflow_discarded"


def test_submit_wait_json_follows_the_work_order_to_success(cli: Cli) -> None:
    code, order = cli.json("submit", "sequence", "--input", '{"n": 1}', "--wait", "--timeout", "30")
    assert code == 0, order
    assert order["workflow_id"] == "sequence" and order["state"] == "success" and order["work_order_id"]
    [run] = order["runs"]
    assert run["run_id"] and run["state"] == "success"
    assert [s["transition_id"] for s in run["steps"]] == ["a", "b", "c"]
    for step in run["steps"]:
        assert {
            "step_id",
            "workitem_id",
            "transition_id",
            "state",
            "attempt",
            "input",
            "output",
            "started_at",
            "finished_at",
        } <= step.keys()
        assert step["state"] == "completed" and step["attempt"] == 1
        assert step["finished_at"] >= step["started_at"]
    assert run["steps"][0]["input"] == {"n": 1} and run["steps"][-1]["output"] == {"n": 1, "step": "c"}


def test_submit_wait_prints_progress_then_the_steps(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text('{"n": 7}')
    result = cli.run("submit", "sequence", "--input", f"@{tmp_path / 'input.json'}", "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("work order ") and " run " in lines[0]
    assert any(line.endswith("success: 3/3 steps completed") for line in lines)
    assert "\r" not in result.stdout  # not a terminal: one line per change
    header = next(line for line in lines if line.startswith("STEP"))
    assert header.split() == [
        "STEP",
        "TRANSITION",
        "STATE",
        "ATTEMPT",
        "KEPT",
        "STARTED",
        "FINISHED",
        "TOOK",
        "INPUT",
        "OUTPUT",
    ]
    assert sum(" completed " in line for line in lines) == 3 and '{"n": 7}' in result.stdout

    submitted = cli.ok("submit", "sequence")
    assert submitted.keys() == {"work_order_id", "run_id"}
    assert until(lambda: cli.order(submitted["work_order_id"])["state"] == "success", what="success")


def test_a_manual_step_is_completed_from_the_command_line(cli: Cli) -> None:
    order_id = cli.ok("submit", "cli-manual")["work_order_id"]
    step = until(lambda: waiting_step(cli, order_id, "approve"), what="waiting approve step")
    done = cli.run("complete", step["workitem_id"], "--output", '{"approved_by": "cli"}')
    assert done.returncode == 0 and step["workitem_id"] in done.stdout
    finished = until(lambda: (o := cli.order(order_id))["state"] == "success" and o, what="success")
    assert finished["runs"][0]["steps"][0]["output"] == {"approved_by": "cli"}


def test_a_manual_step_in_a_deferred_choice_is_taken_and_completed_by_its_task_id(cli: Cli) -> None:
    cli.load(
        workflow(
            "cli-choice",
            ["start", "approved", "escalated", "end"],
            [
                {"id": "approve", "executor": "manual"},
                {"id": "escalate", "executor": "timer", "params": {"seconds": 60}},
                {"id": "record", "executor": "noop"},
                {"id": "page", "executor": "noop"},
            ],
            ["start -> approve", "start -> escalate", "approve -> approved", "escalate -> escalated"]
            + ["approved -> record", "escalated -> page", "record -> end", "page -> end"],
        )
    )
    order_id = cli.ok("submit", "cli-choice")["work_order_id"]
    run = until(lambda: (r := cli.order(order_id)["runs"][0])["choices"] and r, what="the waiting choice")
    (choice,) = run["choices"]
    (timer,) = run["timers"]
    assert choice["transition_id"] == "approve" and timer["transition_id"] == "escalate"
    shown = cli.run("show", order_id).stdout
    assert f"choice   approve (task {choice['task_id']}) waits for a person" in shown
    assert f"timer    escalate (task {timer['task_id']}) due" in shown
    done = cli.ok("complete", choice["task_id"], "--output", '{"approved_by": "cli"}')
    assert done["completed"] is True
    finished = until(lambda: (o := cli.order(order_id))["state"] == "success" and o, what="success")
    steps = {s["transition_id"]: s for s in finished["runs"][0]["steps"]}
    assert steps.keys() == {"approve", "record"} and steps["approve"]["step_id"] == done["workitem_id"]
    assert finished["runs"][0]["timers"] == [] and finished["runs"][0]["choices"] == []
    code, error = cli.json("complete", "no-such-id", "--output", "{}")
    assert code == 2 and error["error"]["message"] == "'no-such-id' is neither a workitem nor a task"


def test_a_failed_run_is_retried_from_its_failing_step(cli: Cli) -> None:
    cli.load(
        chain(
            "cli-flaky",
            {"id": "a", "executor": "echo", "params": {"a": 1}},
            {"id": "b", "executor": "tests.executors:Journal", "params": {"fail_unless_exists": "release"}},
            {"id": "c", "executor": "noop"},
        )
    )
    code, failed = cli.json("submit", "cli-flaky", "--wait", "--timeout", "30")
    assert code == 1 and failed["state"] == "failed"
    [run] = failed["runs"]
    steps = {s["transition_id"]: s for s in run["steps"]}
    assert steps["b"]["state"] == "failed" and "c" not in steps

    Path(cli.env["PETRIFLOW_TEST_JOURNAL"]).with_name("release").touch()
    retried = cli.run("retry", run["run_id"], "--from", steps["b"]["step_id"])
    assert retried.returncode == 0, retried.stderr
    new_run_id = retried.stdout.split()[1]
    order = until(lambda: (o := cli.order(failed["work_order_id"]))["state"] == "success" and o, what="success")
    assert [r["run_id"] for r in order["runs"]] == [run["run_id"], new_run_id]
    new_steps = {s["transition_id"]: s for s in order["runs"][1]["steps"]}
    assert new_steps["a"]["step_id"] == steps["a"]["step_id"] and new_steps["a"]["kept"]
    assert new_steps["b"]["step_id"] != steps["b"]["step_id"] and new_steps["b"]["state"] == "completed"
    assert order["runs"][1]["retried_from_step_id"] == steps["b"]["step_id"]

    code, refused = cli.json("retry", run["run_id"], "--from", "no-such-step")
    assert code == 2 and refused["error"]["code"] == "not_found"


def test_retry_many_counts_enqueued_and_discarded(cli: Cli) -> None:
    done = [cli.json("submit", "sequence", "--wait")[1]["work_order_id"] for _ in range(2)]
    assert cli.ok("retry-many", *done, "no-such-order") == {
        "enqueued": 2,
        "discarded": 1,
        "discards": [{"work_order_id": "no-such-order", "reason": "work order 'no-such-order' not found"}],
    }
    for order_id in done:
        until(lambda: (o := cli.order(order_id))["state"] == "success" and len(o["runs"]) == 2, what="second run")
    text = cli.run("retry-many", done[0])
    assert text.returncode == 0 and text.stdout.strip() == "enqueued 1, discarded 0"


def test_cancel_ends_a_waiting_work_order(cli: Cli) -> None:
    order_id = cli.ok("submit", "cli-manual")["work_order_id"]
    until(lambda: waiting_step(cli, order_id, "approve"), what="waiting approve step")
    assert cli.run("cancel", order_id).returncode == 0
    until(lambda: cli.order(order_id)["state"] == "cancelled", what="cancelled")
    code, refused = cli.json("cancel", order_id)
    assert code == 2 and refused["error"]["code"] == "already_completed"


def test_workorders_are_filtered_by_state_workflow_and_time(cli: Cli) -> None:
    cli.load(chain("cli-list", {"id": "only", "executor": "noop"}))
    order_id = cli.json("submit", "cli-list", "--wait")[1]["work_order_id"]

    def ids(*filters: str) -> list[str]:
        return [o["work_order_id"] for o in cli.ok("workorders", "--workflow", "cli-list", *filters)["work_orders"]]

    [summary] = cli.ok("workorders", "--workflow", "cli-list")["work_orders"]
    assert summary["work_order_id"] == order_id and summary["state"] == "success"
    assert summary["trigger_type"] == "manual" and summary["created_at"] <= time.time()
    assert ids("--state", "success") == [order_id] and ids("--state", "failed") == []
    assert ids("--since", "1h") == [order_id] and ids("--since", "2999-01-01T00:00:00Z") == []
    everything = [o["work_order_id"] for o in cli.ok("workorders", "--state", "success")["work_orders"]]
    assert order_id in everything and len(everything) > 1

    table = cli.run("workorders", "--workflow", "cli-list").stdout.splitlines()
    assert table[0].split() == ["ID", "WORKFLOW", "STATE", "TRIGGER", "CREATED"]
    assert table[1].split()[:4] == [order_id, "cli-list", "success", "manual"]
    code, refused = cli.json("workorders", "--since", "yesterday")
    assert code == 2 and refused["error"]["code"] == "invalid"


def test_watch_streams_one_json_object_per_event(cli: Cli) -> None:
    watcher = subprocess.Popen(
        [
            sys.executable,
            str(BIN),
            "watch",
            "--json",
            "--timeout",
            "3",
            "--home",
            str(cli.home),
            "--port",
            str(cli.port),
        ],
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        env=cli.env,
        cwd=ROOT,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout], daemon=True)
    reader.start()
    try:

        def subscribed() -> bool:
            """Submit until the watcher, subscribed meanwhile, reports an event."""
            cli.ok("submit", "sequence")
            with contextlib.suppress(queue.Empty):
                return bool(lines.get(timeout=0.5))
            return False

        until(subscribed, what="first event")
        order_id = cli.json("submit", "sequence", "--wait")[1]["work_order_id"]
        assert watcher.wait(timeout=40) == 0
        reader.join(timeout=5)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    events = [json.loads(lines.get()) for _ in range(lines.qsize())]
    assert all(e.keys() >= {"kind", "work_order_id", "state", "run_id", "run_state"} for e in events)
    ours = [e for e in events if e["work_order_id"] == order_id]
    assert [e["kind"] for e in ours[:2]] == ["work_order_created", "run_created"]
    assert ours[-1]["kind"] == "work_order_updated" and ours[-1]["state"] == "success"
    assert ours[-1]["run_state"] == "success"


def test_actors_lists_the_engine_and_a_waiting_workitem_with_live_pids(cli: Cli) -> None:
    order_id = cli.ok("submit", "cli-manual")["work_order_id"]
    step = until(lambda: waiting_step(cli, order_id, "approve"), what="waiting approve step")
    try:
        listed = cli.ok("actors")["actors"]
        assert all(a.keys() == {"kind", "entity_id", "state", "node", "pid"} for a in listed)
        [engine] = [a for a in listed if a["kind"] == "engine"]
        status = json.loads(cli.run("status", "--json").stdout)
        assert engine["pid"] == status["engine_pid"]
        nodes = {a["entity_id"]: a["pid"] for a in listed if a["kind"] == "node"}
        assert nodes == status["nodes"] and sorted(nodes) == ["node-0", "node-1", "node-2"], "started with --nodes 3"
        assert len(set(nodes.values())) == 3, "each node is a process of its own"
        assert "nodes      node-0 (pid" in cli.run("status").stdout
        [workitem] = [a for a in listed if a["entity_id"] == step["workitem_id"]]
        assert workitem["kind"] == "workitem" and workitem["state"] == "started"
        assert workitem["pid"] == nodes[workitem["node"]], "an entity's pid is its node's"
        for actor in (engine, workitem):
            assert processes.is_alive(actor["pid"])
        assert cli.run("actors").stdout.splitlines()[0].split() == ["KIND", "ENTITY", "STATE", "NODE", "PID"]
    finally:
        cli.run("cancel", order_id)


def test_kill_crashes_a_waiting_workitem_whose_supervisor_restores_it_as_a_new_incarnation(cli: Cli) -> None:
    order_id = cli.ok("submit", "cli-manual")["work_order_id"]
    step = until(lambda: waiting_step(cli, order_id, "approve"), what="waiting approve step")
    nodes = {a["entity_id"]: a["pid"] for a in cli.ok("actors")["actors"] if a["kind"] == "node"}

    def restarts() -> int:
        lines = (cli.home / "petriflow.log").read_text().splitlines()
        return sum(
            1 for e in map(json.loads, lines) if e["event"] == "child_restarted" and e.get("key") == step["workitem_id"]
        )

    assert restarts() == 0
    assert cli.ok("kill", step["workitem_id"]) == {"entity_id": step["workitem_id"], "kind": "workitem"}
    until(lambda: restarts() == 1, what="its supervisor restarting the workitem")
    after = {a["entity_id"]: a["pid"] for a in cli.ok("actors")["actors"] if a["kind"] == "node"}
    assert after == nodes, "killing one entity leaves its node running"
    restored = until(lambda: waiting_step(cli, order_id, "approve"), what="the restored step waiting again")
    assert restored["workitem_id"] == step["workitem_id"]  # a waiting step waits on: nothing runs again
    cli.ok("complete", step["workitem_id"], "--output", "{}")
    assert until(lambda: cli.order(order_id)["state"] == "success", what="success")
    text = cli.run("kill", order_id)
    assert text.returncode == 2 and "only a live entity can be killed" in text.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["kill", "no-such-entity"], "not found"),
        (["show", "no-such-order"], "not found"),
        (["submit", "sequence", "--input", "{bad"], "--input is not valid JSON"),
        (["submit", "sequence", "--input", "[1, 2]"], "--input must be a JSON object"),
        (["submit", "sequence", "--input", "@/no/such/file.json"], "cannot read /no/such/file.json"),
        (["complete", "no-such-workitem", "--output", "3"], "--output must be a JSON object"),
    ],
)
def test_errors_exit_2_with_a_message(cli: Cli, args: list[str], message: str) -> None:
    result = cli.run(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    code, error = cli.json(*args)
    assert code == 2 and message in error["error"]["message"]


def test_an_unknown_work_order_is_not_found_in_json(cli: Cli) -> None:
    assert cli.json("show", "no-such-order") == (
        2,
        {"error": {"code": "not_found", "message": "work_order 'no-such-order' not found"}},
    )


def test_a_home_without_a_daemon_gets_a_clear_message(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("workorders", home=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"no petriflow daemon runs for home {tmp_path}" in result.stderr and "petriflow start" in result.stderr
    result = cli.run("workflow", "list", "--json", home=tmp_path)
    assert result.returncode == 2 and json.loads(result.stdout)["error"]["code"] == "daemon"
