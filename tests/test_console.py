"""The web console on a real daemon, over HTTP as a browser speaks it: sign
in with `console-url`, the pages, their filters, escaping and truncation,
the actions and their CSRF check, and the live marking's event stream."""

from __future__ import annotations

import http.client
import json
import os
import re
import stat
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from petriflow.chaos.console import ConsoleVisitor
from petriflow.client import Client
from petriflow.engine.views import is_settled
from petriflow.engine.wire import StepView
from tests.consoles import APPROVAL, QUICK, Browser, csrf_of
from tests.daemons import RunningDaemon, daemon_in
from tests.engines import wait_for
from tests.test_ingress_daemon import load, post

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(180)]


@dataclass
class Console:
    running: RunningDaemon
    client: Client
    login_url: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.running.http_port}"

    def signed_in(self) -> Browser:
        browser = Browser(self.base_url)
        assert browser.get(self.login_url).status == 200
        return browser

    def settled(self, work_order_id: str) -> None:
        wait_for(lambda: is_settled(self.client.get_work_order(work_order_id)), 30)


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[Console]:
    home = tmp_path_factory.mktemp("console")
    with daemon_in(home / "home", PETRIFLOW_NODES="1") as running:
        assert running.start().returncode == 0
        for document in (APPROVAL, QUICK):
            load(running, home, document)
        answer = running.cli("console-url", "--json")
        assert answer.returncode == 0, answer.stderr
        yield Console(running, running.client(), json.loads(answer.stdout)["url"])


def submit(console: Console, workflow_id: str, input: dict) -> str:
    work_order_id = console.client.submit(workflow_id, input).work_order_id
    if workflow_id == QUICK["id"]:
        console.settled(work_order_id)
    return work_order_id


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-work-order="([^"]+)"', html)


def test_console_url_trades_its_token_for_a_strict_http_only_cookie(console: Console) -> None:
    url = urllib.parse.urlsplit(console.login_url)
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", console.running.http_port, "/console/login")
    token = urllib.parse.parse_qs(url.query)["token"][0]
    token_file = console.running.home / "console.token"
    assert token_file.read_text().strip() == token
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert console.running.cli("console-url").stdout.strip() == console.login_url

    connection = http.client.HTTPConnection("127.0.0.1", console.running.http_port, timeout=10)
    connection.request("GET", f"{url.path}?{url.query}")
    signed = connection.getresponse()
    signed.read()
    assert signed.status == 303 and signed.headers["Location"] == "/"
    cookie = signed.headers["Set-Cookie"]
    assert f"petriflow_console={token}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie

    connection.request("GET", "/console/login?token=wrong")
    refused = connection.getresponse()
    body = refused.read().decode()
    assert refused.status == 401 and refused.headers["Set-Cookie"] is None
    assert "the token is wrong" in body
    connection.close()
    assert "signed in: actions enabled" in console.signed_in().get("/").body


def test_the_history_is_newest_first_and_filters_by_state_workflow_trigger_time_and_input(console: Console) -> None:
    before = time.time()
    quick = [submit(console, QUICK["id"], {"n": n, "tag": "alpha" if n % 2 else "BETA-tag"}) for n in range(3)]
    status, hooked = post(console.running, "console-hook", json.dumps({"from": "hook"}).encode(), {})
    assert status == 201
    browser = Browser(console.base_url)

    everything = rows(browser.get("/").body)
    mine = [hooked["work_order_id"], *reversed(quick)]
    assert [r for r in everything if r in mine] == mine  # newest first

    assert set(rows(browser.get("/?workflow=console-quick").body)) >= set(quick)
    assert hooked["work_order_id"] not in rows(browser.get("/?workflow=console-quick").body)
    assert rows(browser.get("/?trigger=console-hook").body) == [hooked["work_order_id"]]
    assert rows(browser.get("/?q=beta-TAG").body) == [quick[2], quick[0]]  # the input's JSON, any case
    assert quick[1] in rows(browser.get("/?state=success").body)
    assert hooked["work_order_id"] in rows(browser.get("/?state=running").body)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before - 1))
    assert set(rows(browser.get(f"/?since={since}").body)) == set(mine)
    empty = browser.get(f"/?until={since}&workflow=console-quick&q=beta-tag").body
    assert rows(empty) == [] and "no work order matches" in empty

    refused = browser.get("/?state=finished")
    assert refused.status == 422 and "&#39;finished&#39; is not a work-order state" in refused.body
    assert browser.get("/?since=yesterday").status == 422


def test_the_history_pages_through_every_work_order_once(console: Console) -> None:
    ids = {submit(console, QUICK["id"], {"page": n}) for n in range(55)}
    browser = Browser(console.base_url)
    first = browser.get("/?workflow=console-quick")
    total = int(re.search(r"1–50 of (\d+)", first.body)[1])
    seen = rows(first.body)
    older = re.search(r'<a rel="next" href="([^"]+)"', first.body)
    while older:
        page = browser.get(older[1].replace("&amp;", "&"))
        seen += rows(page.body)
        older = re.search(r'<a rel="next" href="([^"]+)"', page.body)
    assert len(seen) == len(set(seen)) == total and ids <= set(seen)


def test_a_work_order_page_shows_runs_steps_timings_and_output_as_text(console: Console) -> None:
    work_order_id = submit(console, QUICK["id"], {"shown": "<b>bold</b>"})
    page = Browser(console.base_url).get(f"/console/work-orders/{work_order_id}")
    assert page.status == 200 and "script-src 'self'" in page.headers["Content-Security-Policy"]
    view = console.client.get_work_order(work_order_id)
    for step in view.runs[0].steps:
        assert f'data-step="{step.step_id}"' in page.body
    assert page.body.count('class="bar bar-completed"') == 2  # one timeline bar per step
    assert page.body.count('<details class="json">') == 5  # the work order's input, each step's input and output
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.body and "&lt;b&gt;bold&lt;/b&gt;" in page.body
    assert "<script>alert" not in page.body and "<b>bold" not in page.body


def test_a_large_output_is_cut_with_a_link_to_its_whole_text(console: Console) -> None:
    work_order_id = submit(console, QUICK["id"], {"blob": "x" * 10_000})
    browser = Browser(console.base_url)
    page = browser.get(f"/console/work-orders/{work_order_id}")
    links = re.findall(r'<a href="([^"]+/output)">the full text</a>', page.body)
    assert len(links) == 2 and "x" * 5000 not in page.body
    whole = browser.get(links[-1])
    assert whole.headers["Content-Type"].startswith("text/plain")
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    assert json.loads(whole.body) == {"blob": "x" * 10_000, "first": True, "second": "<script>alert(1)</script>"}


def test_actions_need_the_token_and_the_forms_csrf_value(console: Console) -> None:
    work_order_id = submit(console, QUICK["id"], {"guarded": True})
    run = console.client.get_work_order(work_order_id).runs[0]
    fields = {"work_order_id": work_order_id, "run_id": run.run.id, "step_id": run.steps[0].step_id}
    anonymous = Browser(console.base_url)
    assert "retry from here" not in anonymous.get(f"/console/work-orders/{work_order_id}").body
    assert anonymous.post("/console/actions/retry", fields).status == 401

    browser = console.signed_in()
    csrf = csrf_of(browser.get(f"/console/work-orders/{work_order_id}").body)
    assert browser.post("/console/actions/retry", fields).status == 403
    assert browser.post("/console/actions/retry", {**fields, "csrf": "0" * 64}).status == 403
    elsewhere = browser.post("/console/actions/retry", {**fields, "csrf": csrf}, {"Origin": "http://evil.example"})
    assert elsewhere.status == 403 and "evil.example" in elsewhere.body
    assert len(console.client.get_work_order(work_order_id).runs) == 1


def test_retry_from_a_step_adds_a_run_that_keeps_the_steps_before_it(console: Console) -> None:
    work_order_id = submit(console, QUICK["id"], {"again": 1})
    run = console.client.get_work_order(work_order_id).runs[0]
    first, second = run.steps
    browser = console.signed_in()
    csrf = csrf_of(browser.get(f"/console/work-orders/{work_order_id}").body)
    fields = {"work_order_id": work_order_id, "run_id": run.run.id, "step_id": second.step_id, "csrf": csrf}
    answer = browser.post("/console/actions/retry", fields)
    runs = console.client.get_work_order(work_order_id).runs
    assert answer.status == 200 and f"run {runs[1].run.id} enqueued" in answer.body
    assert runs[1].run.retried_from_step_id == second.step_id
    assert [s.step_id for s in runs[1].steps if s.kept] == [first.step_id]
    console.settled(work_order_id)
    assert "re-run" in browser.get(f"/console/work-orders/{work_order_id}").body

    refused = browser.post("/console/actions/retry", {**fields, "step_id": "no-such-step"})
    assert refused.status in (404, 422) and "no-such-step" in refused.body


def test_retry_many_and_cancel_answer_what_they_did(console: Console) -> None:
    done = [submit(console, QUICK["id"], {"many": n}) for n in range(2)]
    browser = console.signed_in()
    csrf = csrf_of(browser.get("/").body)
    answer = browser.post(
        "/console/actions/retry-many", {"work_order_id": [*done, "wo-nope"], "csrf": csrf, "next": "/?q=many"}
    )
    assert answer.status == 200 and "enqueued 2, discarded 1 (wo-nope: " in answer.body
    assert all(len(console.client.get_work_order(w).runs) == 2 for w in done)
    assert browser.post("/console/actions/retry-many", {"csrf": csrf}).status == 422

    waiting = submit(console, APPROVAL["id"], {"cancel": "me"})
    answer = browser.post("/console/actions/cancel", {"work_order_id": waiting, "csrf": csrf})
    assert answer.status == 200 and f"work order {waiting} cancelled" in answer.body
    wait_for(lambda: console.client.get_work_order(waiting).work_order.state == "cancelled", 30)
    again = browser.post("/console/actions/cancel", {"work_order_id": waiting, "csrf": csrf})
    assert again.status >= 400 and "already cancelled" in again.body


def events(connection: http.client.HTTPResponse) -> Iterator[tuple[str, dict]]:
    name = None
    for raw in connection:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: ") and name:
            yield name, json.loads(line[len("data: ") :])


def test_completing_a_manual_step_moves_the_live_marking_to_the_end(console: Console) -> None:
    work_order_id = submit(console, APPROVAL["id"], {"invoice": 7})
    view = wait_for(
        lambda: (
            (v := console.client.get_work_order(work_order_id)).runs[0].steps[-1:]
            and v.runs[0].steps[-1].transition_id == "approve"
            and v.runs[0].steps[-1].awaiting
            and v
        ),
        30,
    )
    run, approve = view.runs[0], view.runs[0].steps[-1]
    path = f"/console/work-orders/{work_order_id}/runs/{run.run.id}"
    browser = console.signed_in()
    page = browser.get(path)
    assert page.status == 200 and "<svg" in page.body and 'data-place="p1"' in page.body
    assert page.body.count('action="/console/actions/complete"') == 1  # only the step that waits

    connection = http.client.HTTPConnection("127.0.0.1", console.running.http_port, timeout=30)
    connection.request("GET", f"{path}/marking")
    stream = connection.getresponse()
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    received = events(stream)
    name, first = next(received)
    assert name == "marking" and first["tokens"] == {"p1": 1} and first["transitions"]["approve"] == "executing"
    assert first["run_state"] == "started"

    csrf = csrf_of(page.body)
    bad = browser.post("/console/actions/complete", {"id": approve.step_id, "output": "[1]", "csrf": csrf})
    assert bad.status == 422 and "output must be a JSON object" in bad.body
    done = browser.post(
        "/console/actions/complete",
        {"id": approve.step_id, "output": '{"approved": true}', "csrf": csrf, "next": path},
    )
    assert done.status == 200 and f"workitem {approve.step_id} completed" in done.body
    seen = [event for event in received]
    connection.close()
    assert seen[-1] == ("end", {"run_state": "success"})
    last = seen[-2][1]
    assert last["tokens"] == {"end": 1} and last["transitions"]["post"] == "completed" and last["final"]
    approved = console.client.get_work_order(work_order_id).runs[0].steps[1]
    assert approved.output == {"approved": True} and not approved.awaiting


def test_the_workflow_and_status_pages(console: Console) -> None:
    browser = Browser(console.base_url)
    listing = browser.get("/console/workflows").body
    assert "/console/workflows/console-approval" in listing and "/console/workflows/console-quick" in listing
    page = browser.get("/console/workflows/console-approval").body
    for place in ("start", "p1", "p2", "end"):
        assert f'data-place="{place}"' in page
    for transition in ("fetch", "approve", "post"):
        assert f'data-transition="{transition}"' in page
    first = {**QUICK, "id": "console-versions", "version": 1}
    console.client.put_workflow(first)
    console.client.put_workflow({**first, "version": 3, "transitions": QUICK["transitions"][::-1]})
    latest, older = (
        browser.get("/console/workflows/console-versions"),
        browser.get("/console/workflows/console-versions?version=1"),
    )
    assert "version 3, active" in latest.body and "the latest is version" not in latest.body
    assert "version 1, active" in older.body and "the latest is version 3" in older.body
    assert browser.get("/console/workflows/console-versions?version=2").status == 404
    status = browser.get("/console/status").body
    info = console.client.ping()
    for node, pid in info.nodes.items():
        assert f'<tr data-node="{node}"><td>{node}</td><td>{pid}</td>' in status
    assert re.search(r'<dd id="ingress">\d+ of 1024', status)


def test_unknown_ids_and_paths_get_a_page_that_names_them(console: Console) -> None:
    browser = Browser(console.base_url)
    missing = browser.get("/console/work-orders/wo-missing")
    assert missing.status == 404 and "wo-missing" in missing.body and "<html" in missing.body
    assert browser.get("/console/workflows/no-such-flow").status == 404
    assert browser.get("/console/nothing-here").status == 404
    assert browser.post("/console/workflows", {}).status == 405


def test_the_chaos_runs_visitor_reads_a_page_its_live_marking_and_approves(console: Console) -> None:
    """The person at the console in the chaos run: what it counts is what the
    daemon answered, and a page that is wrong would be in its errors."""
    visitor = ConsoleVisitor(console.running.config)
    work_order_id = submit(console, APPROVAL["id"], {"invoice": 31})

    def waiting() -> StepView | None:
        return next((s for s in console.client.get_work_order(work_order_id).runs[0].steps if s.awaiting), None)

    step = wait_for(waiting, 30)
    visitor.look(work_order_id)
    assert visitor.complete(step.workitem_id, '{"approved_by": "visitor"}')
    console.settled(work_order_id)
    assert visitor.errors == []
    assert visitor.summary() == "complete 200: 1, page 200: 1, sign-in 200: 1, stream 200: 1"
    assert console.client.get_work_order(work_order_id).runs[0].steps[1].output == {"approved_by": "visitor"}
