"""Durable timers and concurrency limits on the real daemon, across a SIGKILL
of every process of it: a timer fires at the deadline stored when its step
was enabled (never the full time again after a restart, never early), one
whose deadline passed while the daemon was down fires at once when it is back;
a workflow's `concurrency` holds across the restart and hands its slot to the
oldest waiting run; `petriflow workflow show` gives routing and the limit back.

One daemon for the module; each test starts it again if an earlier one left it
down. Its log is `petriflow.log` in the module's daemon home."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, TypeVar

import pytest

from petriflow.engine.states import WorkOrderState
from tests.daemons import RunningDaemon, daemon_in
from tests.engines import workflow

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(150)]

T = TypeVar("T")


def waiting(workflow_id: str, timer: str, seconds: float) -> dict:
    """start -> receive (echo) -> waiting -> `timer` (of `seconds`) -> end."""
    return workflow(
        workflow_id,
        ["start", "waiting", "end"],
        [
            {"id": "receive", "executor": "echo", "params": {"received": True}},
            {"id": timer, "executor": "timer", "params": {"seconds": seconds}},
        ],
        ["start -> receive", "receive -> waiting", f"waiting -> {timer}", f"{timer} -> end"],
    )


WAIT_S = 4.0
WAIT = waiting("cool-off", "cool_off", WAIT_S)
SHORT_S = 1.5
SHORT = waiting("short-wait", "pause", SHORT_S)

LIMITED = {
    **workflow(
        "limited",
        ["start", "held", "end"],
        [{"id": "take", "executor": "echo", "params": {"taken": True}}, {"id": "hold", "executor": "manual"}],
        ["start -> take", "take -> held", "held -> hold", "hold -> end"],
    ),
    "concurrency": 1,
}

FAR_UNTIL = "2099-01-01T00:00:00Z"
FAR = workflow(
    "far-off",
    ["start", "end"],
    [{"id": "new_century", "executor": "timer", "params": {"until": FAR_UNTIL}}],
    ["start -> new_century", "new_century -> end"],
)

# An exclusive choice on the step's output, a failure arc, and a limit: what a user loads and checks.
ROUTED = {
    **workflow(
        "routed",
        ["start", "big", "small", "failed", "end"],
        [
            {"id": "check", "executor": "echo", "params": {"checked": True}, "split": "xor"},
            {"id": "manager", "executor": "echo", "params": {"lane": "manager"}},
            {"id": "auto", "executor": "echo", "params": {"lane": "auto"}},
            {"id": "alert", "executor": "echo", "params": {"alerted": True}},
        ],
        [],
    ),
    "arcs": [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "big", "when": "output.amount > 1000"},
        {"from": "check", "to": "small", "when": "success"},
        {"from": "check", "to": "failed", "when": "failure"},
        {"from": "big", "to": "manager"},
        {"from": "small", "to": "auto"},
        {"from": "failed", "to": "alert"},
        {"from": "manager", "to": "end"},
        {"from": "auto", "to": "end"},
        {"from": "alert", "to": "end"},
    ],
    "concurrency": 3,
}


def until(probe: Callable[[], T | None], timeout: float = 30, what: str = "a condition", pause: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(pause)
    raise AssertionError(f"no {what} within {timeout}s")


def ok_json(d: RunningDaemon, *args: str) -> Any:
    result = d.cli(*args, "--json")
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def load(d: RunningDaemon, document: dict[str, Any]) -> None:
    path = d.home.parent / f"{document['id']}.json"
    path.write_text(json.dumps(document))
    loaded = d.cli("workflow", "load", str(path))
    assert loaded.returncode == 0, loaded.stderr


def restart(d: RunningDaemon) -> float:
    """Start the daemon again; returns when the start began (time.time())."""
    began = time.time()
    started = d.start()
    assert started.returncode == 0, started.stderr
    return began


def restored_at(d: RunningDaemon, case_id: str, since: float) -> float:
    """When the daemon started after `since` brought the case back (its
    `case_active` log line with an incarnation after the first)."""
    lines = (d.home / "petriflow.log").read_text().splitlines()
    times = [
        datetime.fromisoformat(e["timestamp"]).timestamp()
        for e in map(json.loads, lines)
        if e.get("event") == "case_active" and e.get("case_id") == case_id and e.get("incarnation", 1) > 1
    ]
    later = [t for t in times if t >= since]
    assert later, f"case {case_id} was never restored after the restart"
    return min(later)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDaemon]:
    with daemon_in(tmp_path_factory.mktemp("timers-daemon") / "home") as d:
        yield d


@pytest.fixture
def d(shared: RunningDaemon) -> RunningDaemon:
    if shared.pid() is None:
        restart(shared)
    return shared


def test_timers_fire_at_their_stored_deadline_after_a_sigkill_of_the_whole_daemon(d: RunningDaemon) -> None:
    client = d.client()
    client.put_workflow(WAIT)
    client.put_workflow(SHORT)
    client.put_workflow(FAR)

    # 1. Killed a second into a 4 s wait and started again at once: each fires at its stored deadline.
    orders = [client.submit("cool-off", {"n": n}).work_order_id for n in range(3)]
    timers = {
        o: until(lambda: client.get_work_order(o).runs[0].timers, what=f"timer of {o}", pause=0.02)[0] for o in orders
    }
    assert {t.transition_id for t in timers.values()} == {"cool_off"}
    assert client.ping().timers == 3
    first_due = min(t.due_at for t in timers.values())
    time.sleep(max(0.0, first_due - WAIT_S + 1.2 - time.time()))
    killed_at = time.time()
    assert len(d.kill_everything()) >= 5
    assert killed_at < first_due - 2.0, "the kill came too late in the wait to show anything"
    restarted_at = restart(d)
    client = d.client()
    views = {o: client.wait_work_order(o, 60) for o in orders}
    for n, (order_id, view) in enumerate(views.items()):
        assert view.work_order.state is WorkOrderState.SUCCESS
        (run,) = view.runs
        assert run.run.state.value == "success" and run.timers == []
        (fired,) = [s for s in run.steps if s.transition_id == "cool_off"]
        due = timers[order_id].due_at
        assert due == client.get_task(timers[order_id].task_id).wake_at, "the deadline stored is the one shown"
        assert fired.finished_at >= due, f"fired {due - fired.finished_at:.3f}s before its deadline"
        # A task restored on boot fires itself at its deadline; the Engine's scan (every 1 s, 0.5 s
        # grace) is the slowest way. Waiting the full 4 s again would start it 4 s after its case
        # came back, which is only about 1.2 s after the deadline: that is checked on its own.
        assert fired.finished_at - due < 2.0, f"fired {fired.finished_at - due:.3f}s after its deadline"
        back = restored_at(d, run.run.case_id, restarted_at)
        assert fired.finished_at - back < WAIT_S - 1.0, (
            f"fired {fired.finished_at - back:.3f}s after its case was restored: it waited the full time again"
        )
        assert fired.output == {"n": n, "received": True}, "a timer passes its input through"

    # 2. A deadline that passes while the daemon is down: fired at once when it is back, never early.
    order_id = client.submit("short-wait", {"late": True}).work_order_id
    (timer,) = until(lambda: client.get_work_order(order_id).runs[0].timers, what="short timer", pause=0.02)
    time.sleep(max(0.0, timer.due_at - SHORT_S + 0.5 - time.time()))
    d.kill_everything()
    killed_at = time.time()
    assert killed_at < timer.due_at, "the kill came after the deadline"
    time.sleep(3.0)
    restarted_at = restart(d)
    up_at = time.time()
    view = d.client().wait_work_order(order_id, 60)
    assert view.work_order.state is WorkOrderState.SUCCESS
    (run,) = view.runs
    (fired,) = [s for s in run.steps if s.transition_id == "pause"]
    assert restarted_at > timer.due_at, "the deadline passed while the daemon was down"
    assert fired.finished_at >= timer.due_at
    assert fired.finished_at - up_at < 2.0, f"fired {fired.finished_at - up_at:.3f}s after the daemon answered again"
    back = restored_at(d, run.run.case_id, restarted_at)
    assert fired.finished_at - back < 1.0, (
        f"fired {fired.finished_at - back:.3f}s after its case was restored: it waited {SHORT_S}s again"
    )

    # 3. A waiting timer as the command line shows it, and gone once its work order is cancelled.
    order_id = ok_json(d, "submit", "far-off")["work_order_id"]
    (timer,) = until(lambda: ok_json(d, "show", order_id)["runs"][0]["timers"], what="far timer")
    assert timer["transition_id"] == "new_century"
    assert timer["due_at"] == datetime.fromisoformat(FAR_UNTIL).timestamp()
    text = d.cli("show", order_id).stdout
    due_text = datetime.fromtimestamp(timer["due_at"]).strftime("%Y-%m-%d %H:%M:%S")
    assert f"  timer    new_century (task {timer['task_id']}) due {due_text}" in text
    assert d.status()["timers"] == 1
    assert "timers     1 waiting" in d.cli("status").stdout
    assert d.cli("cancel", order_id).returncode == 0
    until(lambda: ok_json(d, "show", order_id)["state"] == "cancelled", what="cancelled")
    assert ok_json(d, "show", order_id)["runs"][0]["timers"] == []
    assert d.status()["timers"] == 0


def test_concurrency_holds_across_a_sigkill_of_the_whole_daemon_through_the_cli(d: RunningDaemon) -> None:
    load(d, LIMITED)
    orders = [ok_json(d, "submit", "limited", "--input", json.dumps({"n": n}))["work_order_id"] for n in range(3)]
    client = d.client()  # polls quickly; what a user sees is checked with the command line

    def states() -> list[str]:
        return [client.get_work_order(o).runs[-1].run.state.value for o in orders]

    def settle(expected: list[str]) -> None:
        until(lambda: states() == expected, what=f"runs {expected}")

    def shown(order_id: str) -> dict[str, Any]:
        """The latest run, as `petriflow show --json` prints it."""
        return ok_json(d, "show", order_id)["runs"][-1]

    def waiting(status: dict[str, Any]) -> dict[str, int]:
        return {workflow_id: n for workflow_id, n in status["waiting_for_slot"].items() if n}

    settle(["started", "available", "available"])
    runs = [shown(o) for o in orders]
    assert [run["state"] for run in runs] == ["started", "available", "available"]
    assert [run["queue"] for run in runs] == [
        None,
        {"concurrency": 1, "started": 1, "position": 1},
        {"concurrency": 1, "started": 1, "position": 2},
    ]
    text = d.cli("show", orders[2])
    assert text.returncode == 0 and "  waiting  for a slot: concurrency 1, 1 started, number 2 in line" in text.stdout
    assert waiting(d.status()) == {"limited": 2}
    assert "waiting    2 run(s) of limited for a concurrency slot" in d.cli("status").stdout

    assert len(d.kill_everything()) >= 5
    restart(d)
    client = d.client()
    assert states() == ["started", "available", "available"]
    time.sleep(2.5)  # two of the Engine's scans, which hand on free slots: none is free
    assert states() == ["started", "available", "available"]
    assert waiting(d.status()) == {"limited": 2}

    def release(order_id: str) -> None:
        """Complete the run's manual step from the command line, by the workitem id show gives."""
        step = until(
            lambda: next(
                (s for s in shown(order_id)["steps"] if s["transition_id"] == "hold" and s["state"] == "started"),
                None,
            ),
            what=f"waiting hold step of {order_id}",
        )
        done = d.cli("complete", step["workitem_id"], "--output", "{}")
        assert done.returncode == 0, done.stderr

    release(orders[0])
    settle(["success", "started", "available"])
    assert shown(orders[2])["queue"] == {"concurrency": 1, "started": 1, "position": 1}
    time.sleep(2.0)  # the scans after the slot was handed on start nobody else
    assert states() == ["success", "started", "available"], "one slot, and the oldest waiting run took it"
    release(orders[1])
    settle(["success", "success", "started"])
    release(orders[2])
    settle(["success", "success", "success"])
    started = [client.get_work_order(o).runs[-1].run.started_at for o in orders]
    assert started == sorted(started), "the runs started in the order they were created"
    assert waiting(d.status()) == {}


def test_workflow_show_prints_conditions_xor_and_concurrency(d: RunningDaemon) -> None:
    load(d, ROUTED)
    text = d.cli("workflow", "show", "routed")
    assert text.returncode == 0, text.stderr
    shown = json.loads(text.stdout)
    assert shown == ok_json(d, "workflow", "show", "routed")
    assert shown["concurrency"] == 3
    assert {t["id"]: t["split"] for t in shown["transitions"]} == {
        "check": "xor",
        "manager": "none",
        "auto": "none",
        "alert": "none",
    }
    assert shown["arcs"] == [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "big", "when": "output.amount > 1000"},
        {"from": "check", "to": "small"},  # `success` is the default, left out
        {"from": "check", "to": "failed", "when": "failure"},
        {"from": "big", "to": "manager"},
        {"from": "small", "to": "auto"},
        {"from": "failed", "to": "alert"},
        {"from": "manager", "to": "end"},
        {"from": "auto", "to": "end"},
        {"from": "alert", "to": "end"},
    ]
    # and the daemon routes by them: the first arc that holds, in document order
    for amount, lane in ((5000, "manager"), (10, "auto")):
        result = d.cli("submit", "routed", "--input", json.dumps({"amount": amount}), "--wait", "--json")
        assert result.returncode == 0, result.stdout
        (run,) = json.loads(result.stdout)["runs"]
        assert [s["transition_id"] for s in run["steps"]] == ["check", lane]
        assert run["steps"][-1]["output"]["lane"] == lane
