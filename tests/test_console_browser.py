"""The console in a real browser: Debian's Chromium, driven by Playwright,
against a real daemon on loopback. Screenshots go to the test's tmp dir
(and, with PETRIFLOW_SCREENSHOTS=DIR, to DIR: how the README's were made)."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from petriflow.cli.demo import DEMO_WORKFLOW
from petriflow.console.live import MAX_STREAMS
from tests.consoles import APPROVAL, QUICK, open_stream
from tests.daemons import daemon_in
from tests.engines import wait_for
from tests.test_ingress_daemon import load

pytestmark = [pytest.mark.slow, pytest.mark.multiproc, pytest.mark.timeout(240)]

CHROMIUM = os.environ.get("PETRIFLOW_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [  # a closed network: no background connections, no first-run work
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install chromium; .ci/run does) "
        "or set PETRIFLOW_CHROMIUM to a Chromium binary",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright for Python is missing: pip install -e '.[test]'"
)
expect = sync_api.expect


@pytest.fixture(scope="module")
def console(tmp_path_factory) -> Iterator[tuple]:
    home = tmp_path_factory.mktemp("browser")
    with daemon_in(home / "home", PETRIFLOW_NODES="1") as running:
        assert running.start().returncode == 0
        for document in (APPROVAL, QUICK, DEMO_WORKFLOW):
            load(running, home, document)
        login = json.loads(running.cli("console-url", "--json").stdout)["url"]
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            try:
                yield running, running.client(), login, browser
            finally:
                browser.close()


@pytest.fixture
def page(console, tmp_path):
    _, _, login, browser = console
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.dialogs = []  # an alert() would mean an output ran as script
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(login)
    yield page
    context.close()


def shoot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one
    target = os.environ.get("PETRIFLOW_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def settled(client, work_order_id: str) -> None:
    wait_for(lambda: client.get_work_order(work_order_id).work_order.state == "success", 30)


def test_filter_the_history_open_a_work_order_retry_from_a_step_and_see_the_new_run(console, page, tmp_path) -> None:
    running, client, _, _ = console
    ids = [client.submit(QUICK["id"], {"invoice": n, "customer": f"acme-{n}"}).work_order_id for n in range(4)]
    for work_order_id in ids:
        settled(client, work_order_id)
    client.submit(APPROVAL["id"], {"invoice": 99})

    page.goto(f"http://127.0.0.1:{running.http_port}/")
    expect(page.locator("tr[data-work-order]")).to_have_count(5)
    shoot(page, tmp_path, "history")
    page.select_option("select[name=workflow]", QUICK["id"])
    page.fill("input[name=q]", "ACME-2")
    page.click("button:text('Filter')")
    expect(page.locator("tr[data-work-order]")).to_have_count(1)
    assert page.locator("tr[data-work-order]").get_attribute("data-work-order") == ids[2]

    page.click(f"a:text('{ids[2]}')")
    expect(page.locator("section.run")).to_have_count(1)
    page.locator("details.json summary").last.click()  # the last step's output, opened
    expect(page.locator("details.json pre").last).to_contain_text("<script>alert(1)</script>")
    shoot(page, tmp_path, "work-order")
    page.locator("tr[data-transition=second] button:text('retry from here')").click()
    expect(page.locator(".notice")).to_contain_text("enqueued")
    expect(page.locator("section.run")).to_have_count(2)
    settled(client, ids[2])
    page.reload()
    newest = page.locator("section.run").first
    expect(newest.locator("h3 .state")).to_have_text("success")
    expect(newest.locator("tr[data-transition=first] td").nth(4)).to_have_text("kept")
    expect(newest.locator("tr[data-transition=second] td").nth(4)).to_have_text("re-run")
    assert page.dialogs == []


def awaiting_approval(client, invoice: int) -> tuple[str, str]:
    """A work order of APPROVAL whose run waits for a person at `approve`: its id and its run's."""
    work_order_id = client.submit(APPROVAL["id"], {"invoice": invoice}).work_order_id
    view = wait_for(
        lambda: (
            (v := client.get_work_order(work_order_id)).runs[0].steps
            and v.runs[0].steps[-1].transition_id == "approve"
            and v.runs[0].steps[-1].awaiting
            and v
        ),
        30,
    )
    return work_order_id, view.runs[0].run.id


def test_complete_a_manual_step_and_watch_the_marking_move(console, page, tmp_path) -> None:
    running, client, login, browser = console
    work_order_id, run_id = awaiting_approval(client, 7)
    run_url = f"http://127.0.0.1:{running.http_port}/console/work-orders/{work_order_id}/runs/{run_id}"
    page.goto(run_url)
    expect(page.locator('g.place[data-place="p1"]')).to_have_class(re.compile(r"\bmarked\b"))
    expect(page.locator('g.transition[data-transition="approve"]')).to_have_class(re.compile(r"\bexecuting\b"))
    expect(page.locator("#live")).to_have_text("live")

    # a second tab completes the step; the first one is not reloaded, its picture follows the events
    other = page.context.new_page()
    other.goto(run_url)
    other.fill("form.complete textarea[name=output]", '{"approved": true}')
    other.click("form.complete button")
    expect(other.locator(".notice")).to_contain_text("completed")

    expect(page.locator('g.place[data-place="end"]')).to_have_class(re.compile(r"\bmarked\b"))
    expect(page.locator('g.place[data-place="p1"]')).not_to_have_class(re.compile(r"\bmarked\b"))
    expect(page.locator('g.transition[data-transition="post"]')).to_have_class(re.compile(r"\bcompleted\b"))
    expect(page.locator("#run-state .state")).to_have_text("success")
    expect(page.locator("#live")).to_have_text("finished")
    assert client.get_work_order(work_order_id).runs[0].steps[1].output == {"approved": True}


def test_the_workflow_run_and_status_pages_draw_the_net_and_the_nodes(console, page, tmp_path) -> None:
    running, client, _, _ = console
    base = f"http://127.0.0.1:{running.http_port}"
    page.goto(f"{base}/console/workflows")
    expect(page.locator("table.workflows tbody tr")).to_have_count(3)
    shoot(page, tmp_path, "workflows")
    page.click(f"a:text('{DEMO_WORKFLOW['id']}')")
    expect(page.locator("svg g.transition")).to_have_count(len(DEMO_WORKFLOW["transitions"]))
    expect(page.locator("svg g.place")).to_have_count(len(DEMO_WORKFLOW["places"]))
    expect(page.locator("svg g.arc")).to_have_count(len(DEMO_WORKFLOW["arcs"]))
    shoot(page, tmp_path, "workflow")

    # the demo's and-split: two checks done, the approval waiting for a person, the join not yet enabled
    work_order_id = client.submit(DEMO_WORKFLOW["id"], {"invoice": 42}).work_order_id
    view = wait_for(
        lambda: (
            (v := client.get_work_order(work_order_id))
            and {s.transition_id for s in v.runs[0].steps if s.state == "completed"} >= {"check-vat", "check-credit"}
            and v
        ),
        30,
    )
    page.goto(f"{base}/console/work-orders/{work_order_id}/runs/{view.runs[0].run.id}")
    for place in ("vat-ok", "credit-ok", "approval-todo"):
        expect(page.locator(f'g.place[data-place="{place}"]')).to_have_class(re.compile(r"\bmarked\b"))
    expect(page.locator('g.transition[data-transition="approve"]')).to_have_class(re.compile(r"\bexecuting\b"))
    expect(page.locator('g.transition[data-transition="post"]')).not_to_have_class(re.compile(r"\benabled\b"))
    shoot(page, tmp_path, "run")

    page.goto(f"{base}/console/status")
    expect(page.locator("tr[data-node]")).to_have_count(1)
    expect(page.locator("#ingress")).to_contain_text("of 1024")
    shoot(page, tmp_path, "status")


def test_a_live_page_refused_while_too_many_are_open_tries_again_and_follows(console, page) -> None:
    running, client, _, _ = console
    work_order_id, run_id = awaiting_approval(client, 8)
    base = f"http://127.0.0.1:{running.http_port}"
    run_path = f"/console/work-orders/{work_order_id}/runs/{run_id}"
    streams = [open_stream(base, f"{run_path}/marking") for _ in range(MAX_STREAMS)]
    try:
        assert all(stream.status == 200 for _, stream in streams)
        page.goto(base + run_path)
        expect(page.locator("#live")).to_have_text("reconnecting…")
        streams.pop()[0].close()
        expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    finally:
        for connection, _ in streams:
            connection.close()
    waiting = client.get_work_order(work_order_id).runs[0].steps[-1]
    client.complete(waiting.workitem_id, {"approved": True})
    expect(page.locator('g.place[data-place="end"]')).to_have_class(re.compile(r"\bmarked\b"))
    expect(page.locator("#live")).to_have_text("finished")
