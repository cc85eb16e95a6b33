"""Who may see and act in the console, on the HTTP server alone with a fake
Engine: the token file, the public-address rule, sign-in redirects and
refused paths. What the pages show is tested on a real daemon (test_console)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import stat
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from petriflow.console.access import Access, ensure_token, read_token
from petriflow.console.live import MAX_STREAMS, RETRY_STREAM_S
from petriflow.engine.errors import NotFound
from petriflow.engine.records import RunRecord, WorkOrderRecord
from petriflow.engine.wire import RunView, WorkOrderPage, WorkOrderView
from petriflow.ingress.gate import EngineGate
from petriflow.ingress.server import IngressServer
from petriflow.system import free_port
from tests.consoles import Browser, open_stream
from tests.daemons import BIN
from tests.engines import workflow

pytestmark = pytest.mark.timeout(30)

TOKEN = "t0ken-for-tests"


class FakeClient:
    """The requests of the history page and of a run's marking stream; a run
    that waits for its slot forever, whose case does not exist yet."""

    order = WorkOrderRecord(id="wo-1", workflow_id="flow", input={"n": 1})
    run = RunRecord(id="run-1", work_order_id="wo-1", workflow_id="flow", workflow_version=1, case_id="c-1")
    asked = 0  # reads of the work order: how often the stream looked

    def page_work_orders(self, **filters: Any) -> WorkOrderPage:
        return WorkOrderPage([self.order], 1)

    def list_workflows(self) -> list[dict[str, Any]]:
        return []

    def get_work_order(self, work_order_id: str) -> WorkOrderView:
        FakeClient.asked += 1
        return WorkOrderView(self.order, [RunView(self.run)])

    def get_workflow(self, workflow_id: str, version: int | None = None) -> dict[str, Any]:
        return workflow("flow", ["start", "end"], [{"id": "t"}], ["start -> t", "t -> end"])

    def get_case(self, case_id: str) -> Any:
        raise NotFound(f"no case {case_id}")


class FakeLink:
    client = FakeClient()

    def close(self) -> None: ...


@contextlib.contextmanager
def console(public: bool, down: str | None = None, **options: Any) -> Iterator[Browser]:
    """`down`: the gate knows the Engine does not answer, and why. The queue
    holds a poll of every live page the console allows at once."""
    gate = EngineGate(FakeLink, size=64, workers=1, answer_timeout_s=2.0)
    gate.start()
    if down:
        gate.engine_down(down)
    server = IngressServer(gate, console=Access(TOKEN, public=public), **options)
    server.start()
    try:
        yield Browser(server.url)
    finally:
        server.stop()
        gate.stop()


def test_the_token_is_made_once_readable_by_its_owner_only(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        read_token(tmp_path)
    token = ensure_token(tmp_path)
    assert len(token) >= 40 and ensure_token(tmp_path) == token == read_token(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "console.token").st_mode) == 0o600


def test_on_loopback_anyone_reads_but_only_the_token_acts() -> None:
    with console(public=False) as browser:
        history = browser.get("/")
        assert history.status == 200 and 'data-work-order="wo-1"' in history.body
        assert 'name="csrf"' not in history.body and "read-only" in history.body
        refused = browser.post("/console/actions/cancel", {"work_order_id": "wo-1"})
        assert refused.status == 401 and "petriflow console-url" in refused.body


def test_on_a_public_address_reading_needs_the_token_too() -> None:
    with console(public=True) as browser:
        refused = browser.get("/")
        assert refused.status == 401 and "public address" in refused.body and "wo-1" not in refused.body
        assert browser.get("/console/static/console.css").status == 200  # the refusal page keeps its style
        assert browser.get("/", {"Authorization": f"Bearer {TOKEN}"}).status == 200
        assert browser.get(f"/console/login?token={TOKEN}").status == 200  # now with the cookie
        assert 'data-work-order="wo-1"' in browser.get("/").body


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_sign_in_only_redirects_to_a_path_of_this_server(target: str) -> None:
    with console(public=False) as browser:
        url = urllib.parse.urlsplit(browser.base_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        connection.request("GET", f"/console/login?token={TOKEN}&next={urllib.parse.quote(target)}")
        answer = connection.getresponse()
        answer.read()
        connection.close()
        assert answer.status == 303 and answer.headers["Location"] == "/"


def test_bad_paths_are_refused_with_a_page_that_names_them() -> None:
    with console(public=False) as browser:
        assert browser.get("/console/static/../access.py").status == 404
        assert browser.get("/console/static/nothing.js").status == 404
        assert browser.get("/console/work-orders/%ff").status == 400  # not UTF-8
        unknown = browser.get("/console/elsewhere")
        assert unknown.status == 404 and "/console/elsewhere" in unknown.body
        assert browser.post("/console/actions/explode", {}).status == 401
        assert browser.get("/?offset=-3").status == 422
        assert browser.get(f"/?offset={10**30}").status == 422


def test_a_form_larger_than_the_server_takes_is_refused_413_naming_the_limit() -> None:
    with console(public=False, max_body_bytes=1000) as browser:
        answer = browser.post(
            "/console/actions/complete", {"id": "w", "output": "x" * 5000}, {"Authorization": f"Bearer {TOKEN}"}
        )
        assert answer.status == 413 and "1001 bytes" in answer.body


def test_console_url_without_a_running_daemon_says_to_start_it(tmp_path) -> None:
    home = tmp_path / "home"
    answer = subprocess.run(
        [sys.executable, str(BIN), "console-url", "--home", str(home), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert answer.returncode == 2 and f"no petriflow daemon runs for home {home}" in answer.stderr


def test_while_the_engine_does_not_answer_a_page_says_so_with_retry_after() -> None:
    with console(public=False, down="it is being restarted") as browser:
        answer = browser.get("/")
        assert answer.status == 503 and answer.headers["Retry-After"] == "5"
        assert "engine_unavailable" in answer.body and "it is being restarted" in answer.body
        csrf = Access(TOKEN, public=False).csrf()
        acted = browser.post(
            "/console/actions/cancel", {"work_order_id": "wo-1", "csrf": csrf}, {"Authorization": f"Bearer {TOKEN}"}
        )
        assert acted.status == 503 and acted.headers["Retry-After"] == "5" and "engine_unavailable" in acted.body


MARKING = "/console/work-orders/wo-1/runs/run-1/marking"


def test_a_marking_stream_stops_asking_the_engine_once_its_page_is_closed() -> None:
    with console(public=False) as browser:
        connection, stream = open_stream(browser.base_url, MARKING)
        assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
        assert stream.readline() == b"event: marking\n"
        first = json.loads(stream.readline().removeprefix(b"data: "))
        assert first == {"tokens": {}, "transitions": {}, "run_state": "available", "final": False, "steps": {}}
        time.sleep(1.0)
        assert FakeClient.asked >= 4, "it looks again while the page is open"
        connection.close()
        time.sleep(0.6)
        after_close = FakeClient.asked
        time.sleep(1.0)
        assert FakeClient.asked == after_close


def test_live_pages_past_the_limit_are_refused_503_until_one_closes() -> None:
    with console(public=False) as browser:
        opened = [open_stream(browser.base_url, MARKING) for _ in range(MAX_STREAMS)]
        try:
            assert all(stream.status == 200 for _, stream in opened)
            connection, refused = open_stream(browser.base_url, MARKING)
            body = refused.read().decode()
            connection.close()
            assert refused.status == 503 and refused.headers["Retry-After"] == str(RETRY_STREAM_S)
            assert "console_streams_full" in body and f"{MAX_STREAMS} live pages are open already" in body
            opened.pop()[0].close()
            deadline = time.monotonic() + 5
            while True:  # the closed stream notices at its next look, within a quarter of a second
                connection, again = open_stream(browser.base_url, MARKING)
                if again.status == 200 or time.monotonic() > deadline:
                    break
                again.read()
                connection.close()
                time.sleep(0.1)
            opened.append((connection, again))
            assert again.status == 200 and again.readline() == b"event: marking\n"
        finally:
            for connection, _ in opened:
                connection.close()
