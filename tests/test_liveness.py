"""Liveness: a hung Engine or node (SIGSTOP) is noticed by its heartbeats,
webhooks are refused 503 meanwhile, `status` names it, and it is replaced
with its work finished."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.daemons import RunningDaemon, daemon_in
from tests.engines import wait_for, workflow

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(240)]

TIMEOUT_S = 8  # heartbeat timeout: not answering after 3 missed beats, replaced after 8 s

STEPPED = workflow(
    "stepped",
    ["start", "p", "end"],
    [
        {"id": "first", "executor": "sleep", "params": {"seconds": 1.0}},
        {"id": "second", "executor": "sleep", "params": {"seconds": 1.0}},
    ],
    ["start -> first", "first -> p", "p -> second", "second -> end"],
) | {"triggers": [{"id": "stepped-hook", "type": "webhook"}]}


def post(running: RunningDaemon, body: dict[str, Any]) -> tuple[int, dict, dict[str, str]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{running.http_port}/hooks/stepped-hook", data=json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, json.loads(refused.read()), dict(refused.headers)


def health(running: RunningDaemon) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{running.http_port}/health", timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as refused:
        with refused:
            return json.loads(refused.read())


def started(running: RunningDaemon, tmp_path) -> list[str]:
    """The daemon up with the workflow loaded and four work orders accepted."""
    assert running.start().returncode == 0
    path = tmp_path / "stepped.json"
    path.write_text(json.dumps(STEPPED))
    assert running.cli("workflow", "load", str(path)).returncode == 0
    accepted = []
    for n in range(4):
        status, body, _ = post(running, {"n": n})
        assert status == 201, body
        accepted.append(body["work_order_id"])
    return accepted


def all_succeed(running: RunningDaemon, work_order_ids: list[str]) -> None:
    client = running.client()
    for work_order_id in work_order_ids:
        assert client.wait_work_order(work_order_id, timeout_s=90).work_order.state.value == "success"


def daemon_log(running: RunningDaemon) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (running.home / "petriflow.log").read_text().splitlines() if line.strip()]


def test_a_stopped_engine_is_refused_503_named_by_status_then_replaced_and_its_work_finished(tmp_path) -> None:
    with daemon_in(tmp_path / "home", PETRIFLOW_HEARTBEAT_TIMEOUT=str(TIMEOUT_S), PETRIFLOW_NODES="2") as running:
        accepted = started(running, tmp_path)
        engine_pid = health(running)["engine"]["pid"]
        os.kill(engine_pid, signal.SIGSTOP)
        try:
            time.sleep(4)  # past three missed beats
            began = time.monotonic()
            status, body, headers = post(running, {"n": "while stopped"})
            assert time.monotonic() - began < 3
            assert status == 503 and body["error"]["code"] in ("engine_unavailable", "engine_timeout")
            assert int(headers["Retry-After"]) > 0
            told = running.cli("status")
            assert told.returncode == 1 and f"the engine (pid {engine_pid}) has not answered" in told.stdout
            as_json = json.loads(running.cli("status", "--json").stdout)
            assert as_json["healthy"] is False and any("engine" in p for p in as_json["problems"])
            wait_for(lambda: health(running)["engine"]["pid"] != engine_pid, timeout_s=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(engine_pid, signal.SIGCONT)  # should it still be there, it is not left stopped
        wait_for(lambda: health(running)["ok"], timeout_s=30)
        status, body, _ = post(running, {"n": "after"})
        assert status == 201
        all_succeed(running, [*accepted, body["work_order_id"]])
        assert running.cli("status").returncode == 0
        killed = [e for e in daemon_log(running) if e["event"] == "engine_unresponsive"]
        assert [e["pid"] for e in killed] == [engine_pid] and killed[0]["silent_s"] >= TIMEOUT_S


def test_a_stopped_node_is_named_by_status_then_replaced_and_its_work_finished(tmp_path) -> None:
    with daemon_in(tmp_path / "home", PETRIFLOW_HEARTBEAT_TIMEOUT=str(TIMEOUT_S), PETRIFLOW_NODES="2") as running:
        accepted = started(running, tmp_path)
        before = health(running)
        node_pid = before["nodes"]["node-0"]["pid"]
        os.kill(node_pid, signal.SIGSTOP)
        try:
            seen: dict[str, Any] = {}

            def unhealthy() -> bool:
                told = running.cli("status", "--json")
                seen.update(json.loads(told.stdout), returncode=told.returncode)
                return told.returncode == 1

            wait_for(unhealthy, timeout_s=TIMEOUT_S)
            assert seen["healthy"] is False
            assert (
                [p for p in seen["problems"] if "node-0" in p]
                == [p for p in seen["problems"] if p.startswith(f"node node-0 (pid {node_pid}) has not answered for")]
                != []
            )
            wait_for(lambda: health(running)["nodes"]["node-0"]["pid"] not in (None, node_pid), timeout_s=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(node_pid, signal.SIGCONT)
        after = health(running)
        assert after["engine"]["pid"] == before["engine"]["pid"]  # the Engine served on
        assert after["nodes"]["node-1"]["pid"] == before["nodes"]["node-1"]["pid"]  # the other node undisturbed
        all_succeed(running, accepted)
        wait_for(lambda: running.cli("status").returncode == 0, timeout_s=10)
        killed = [e for e in daemon_log(running) if e["event"] == "node_unresponsive"]
        assert [(e["node_id"], e["pid"]) for e in killed] == [("node-0", node_pid)]
