"""The daemon from bin/: start, stop, status, settings, refusals, the keeper,
and restore of everything after the whole daemon is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import urllib.request
from collections import Counter

import pytest

from petriflow import daemon
from petriflow.engine.states import WorkOrderState
from petriflow.storage import open_backend
from petriflow.supervision import processes
from tests.daemons import daemon_in
from tests.engines import wait_for, workflow

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(180)]

HOOKED = workflow(
    "hooked",
    ["start", "p", "end"],
    [
        {"id": "fetch", "executor": "tests.executors:Journal", "params": {"seconds": 0.3}},
        {"id": "post", "executor": "tests.executors:Journal", "params": {"seconds": 0.3}},
    ],
    ["start -> fetch", "fetch -> p", "p -> post", "post -> end"],
) | {"triggers": [{"id": "invoice-hook", "type": "webhook"}]}


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_settings_come_from_flags_then_environment_then_defaults(tmp_path):
    env = {
        "PETRIFLOW_HOME": str(tmp_path / "env-home"),
        "PETRIFLOW_PORT": "20001",
        "PETRIFLOW_STORAGE": "sqlite:////tmp/x.db",
    }
    from_env = daemon.resolve_config(env=env)
    assert (from_env.home, from_env.port, from_env.storage_url) == (
        str(tmp_path / "env-home"),
        20001,
        "sqlite:////tmp/x.db",
    )
    flags = daemon.resolve_config(home=str(tmp_path / "flag-home"), port=20002, env=env)
    assert (flags.home, flags.port) == (str(tmp_path / "flag-home"), 20002)
    defaults = daemon.resolve_config(env={})
    assert (defaults.port, defaults.http_port) == (daemon.DEFAULT_PORT, daemon.DEFAULT_HTTP_PORT)
    assert defaults.home.endswith(".petriflow") and defaults.storage_url.endswith(".petriflow/petriflow.db")
    with pytest.raises(daemon.DaemonError, match="PETRIFLOW_PORT must be a port number, got 'x'"):
        daemon.resolve_config(env={"PETRIFLOW_PORT": "x"})


def test_two_daemons_run_side_by_side_and_stop_leaves_no_process(tmp_path):
    with daemon_in(tmp_path / "a") as a, daemon_in(tmp_path / "b") as b:
        assert a.start().returncode == 0 and b.start().returncode == 0
        status_a, status_b = a.status(), b.status()
        assert status_a["running"] and status_b["running"] and status_a["pid"] != status_b["pid"]
        assert status_a["port"] == a.port and status_a["http_url"] == f"http://127.0.0.1:{a.http_port}"
        tree = [status_a["pid"]] + daemon.processes_of(status_a["pid"])
        assert len(tree) >= 3, "admin, logger and engine descend from the daemon's process"
        a.client().put_workflow(HOOKED)
        assert [w["id"] for w in a.client().list_workflows()] == ["hooked"]
        assert b.client().list_workflows() == []
        stopped = a.cli("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert processes.wait_until_gone(tree, 10) == []
        assert a.cli("status").returncode == 3 and b.status()["running"]


def test_a_busy_port_or_home_is_refused_with_a_clear_message(tmp_path):
    with daemon_in(tmp_path / "a") as a, daemon_in(tmp_path / "b") as b:
        assert a.start().returncode == 0
        same_home = a.cli("start", "--http-port", str(b.http_port))
        assert same_home.returncode == 2 and "already runs for home" in same_home.stderr
        b.port = a.port
        busy_port = b.start()
        assert busy_port.returncode == 2 and f"port {a.port}" in busy_port.stderr
        assert a.status()["running"]


def test_a_stale_pid_file_is_detected_and_replaced(tmp_path):
    with daemon_in(tmp_path / "home") as d:
        d.home.mkdir()
        dead = os.fork()
        if dead == 0:
            os._exit(0)
        os.waitpid(dead, 0)
        (d.home / "daemon.pid").write_text(str(dead))
        assert d.cli("status").returncode == 3
        started = d.cli("start", "--http-port", str(d.http_port), "--json")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["started"] is True  # stdout is one JSON object: log lines go to stderr
        assert "stale_daemon_cleared" in started.stderr
        assert int((d.home / "daemon.pid").read_text()) == d.pid() != dead


def test_the_keeper_restarts_a_killed_engine_which_restores_running_work(tmp_path):
    with daemon_in(tmp_path / "home", PETRIFLOW_TEST_JOURNAL=str(tmp_path / "journal.jsonl")) as d:
        assert d.start().returncode == 0
        client = d.client()
        client.put_workflow(HOOKED)
        submitted = client.submit("hooked", {"n": 1})
        engine_pid = client.ping().pid
        os.kill(engine_pid, signal.SIGKILL)
        wait_for(lambda: d.status().get("engine_pid") not in (None, engine_pid), 20)
        view = d.client().wait_work_order(submitted.work_order_id, 60)
        assert view.work_order.state is WorkOrderState.SUCCESS
        status, created = _post(f"http://127.0.0.1:{d.http_port}/hooks/invoice-hook", b'{"after": "restart"}')
        assert status == 201, "the webhook reaches the new Engine"
        assert _get(f"http://127.0.0.1:{d.http_port}/workorders/{created['work_order_id']}")["workflow_id"] == "hooked"
        # the daemon configured logging once; its actor processes, forked after, write to the same file
        events = [json.loads(line) for line in (d.home / "petriflow.log").read_text().splitlines()]
        assert any(e["event"] == "engine_restarted" for e in events)
        done = [
            e for e in events if e["event"] == "workitem_completed" and e.get("case_id") == view.runs[0].run.case_id
        ]
        assert done and all(e["level"] == "info" and "timestamp" in e for e in done)


def test_webhook_then_sigkill_of_the_whole_daemon_mid_run_then_all_finish_once(tmp_path):
    journal = tmp_path / "journal.jsonl"
    with daemon_in(tmp_path / "home", PETRIFLOW_TEST_JOURNAL=str(journal)) as d:
        assert d.start().returncode == 0
        client = d.client()
        client.put_workflow(HOOKED)
        base = f"http://127.0.0.1:{d.http_port}"
        status, created = _post(f"{base}/hooks/invoice-hook", b'{"invoice": 0}')
        assert status == 201
        wait_for(lambda: _get(f"{base}/workorders/{created['work_order_id']}")["state"] == "success", 30)
        assert _post(f"{base}/hooks/invoice-hook", b"{not json")[0] == 400
        assert _post(f"{base}/hooks/no-such-hook", b"{}")[0] == 404

        orders = [client.submit("hooked", {"invoice": n}).work_order_id for n in range(1, 11)]
        orders += [
            _post(f"{base}/hooks/invoice-hook", json.dumps({"invoice": n}).encode())[1]["work_order_id"]
            for n in range(11, 21)
        ]
        wait_for(
            lambda: (
                any(o.state is WorkOrderState.SUCCESS for o in d.client().list_work_orders() if o.id in orders)
                or journal.exists()
            ),
            30,
        )
        killed = d.kill_everything()
        assert len(killed) > 5
        unfinished = [o for o in orders if _stored_state(d, o) not in ("success",)]
        assert unfinished, "the kill landed after every work order had finished"

        restarted = d.start()
        assert restarted.returncode == 0, restarted.stderr
        client = d.client()
        views = [client.wait_work_order(o, 120) for o in orders]
    for n, view in enumerate(views, start=1):
        assert view.work_order.state is WorkOrderState.SUCCESS
        (run,) = view.runs
        completed = Counter(s.transition_id for s in run.steps if s.state == "completed")
        assert completed == {"fetch": 1, "post": 1}, "each step completed once in engine state"
        assert run.steps[-1].output == {"invoice": n, "fetch": True, "post": True}


def _stored_state(d, work_order_id: str) -> str:
    from petriflow.storage.store import open_storage

    store = open_storage(d.config.storage_url)
    try:
        return store.get_work_order(work_order_id).state.value
    finally:
        store.close()


def test_it_refuses_storage_it_cannot_read_and_never_overwrites_it(tmp_path):
    with daemon_in(tmp_path / "garbage") as d:
        d.home.mkdir()
        (d.home / "petriflow.db").write_bytes(b"not a database, but someone's data\n" * 200)
        before = (d.home / "petriflow.db").read_bytes()
        refused = d.start()
        assert refused.returncode == 2 and "cannot open storage" in refused.stderr
        assert "left untouched" in refused.stderr
        assert (d.home / "petriflow.db").read_bytes() == before and d.pid() is None
    with daemon_in(tmp_path / "newer") as d:
        d.home.mkdir()
        db = d.home / "petriflow.db"
        open_backend(f"sqlite:///{db}").close()
        with sqlite3.connect(db) as raw:
            raw.execute("INSERT INTO schema_version VALUES (99, 'from a newer petriflow', 0)")
        with sqlite3.connect(db) as raw:
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file: compare its bytes
        before = db.read_bytes()
        refused = d.start()
        assert refused.returncode == 2 and "upgrade petriflow" in refused.stderr
        assert db.read_bytes() == before


def test_it_refuses_a_home_it_cannot_write_and_a_webhook_port_it_cannot_bind(tmp_path):
    with daemon_in(tmp_path / "x") as d:
        d.home = tmp_path / "a-file" / "home"
        (tmp_path / "a-file").write_text("a file, not a directory")
        refused = d.start()
        assert refused.returncode == 2 and "cannot write to home" in refused.stderr
    with daemon_in(tmp_path / "a") as a, daemon_in(tmp_path / "b") as b:
        assert a.start().returncode == 0
        b.http_port = a.http_port
        refused = b.start()
        assert (
            refused.returncode == 2
            and f"cannot serve HTTP on 127.0.0.1 port {a.http_port}: Address already in use" in refused.stderr
        )
        assert not b.pid() and processes.session_pids(_actor_sid(b)) == [] if _actor_sid(b) else True


def _actor_sid(d) -> int | None:
    try:
        return json.loads(d.config.state_file.read_text())["actor_sid"]
    except OSError:
        return None
