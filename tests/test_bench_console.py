"""The bench's console scenario: the daemon's pages timed over a seeded history.

The smoke test runs it through the command line at a tiny size and checks
what a user reading its figures would: every page answered 200, each has
its times, and the history's pages list the seeded work orders. It never
judges a time against the issue's 200 ms. The other tests cover the seeded
history and the options without a daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from petriflow.bench import parse
from petriflow.bench.console import NEEDLE, NEEDLES, seed_history
from petriflow.bench.report import console_lines
from petriflow.engine.states import UNFINISHED_WORK_ORDER_STATES
from petriflow.storage.store import open_storage
from tests.test_bench import BENCH

PAGES = (
    "history",
    "failed",
    "by_workflow",
    "by_trigger",
    "one_day",
    "search_hit",
    "search_miss",
    "deep_page",
    "work_order",
    "run",
    "workflow",
    "status",
)


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.timeout(180)
def test_every_page_answers_over_a_tiny_history_and_lists_it(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--scenarios", "console", "--console-work-orders", "300", "--console-samples", "2", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *argv], capture_output=True, text=True, timeout=170, stdin=subprocess.DEVNULL
    )
    assert done.returncode == 0, done.stderr[-3000:]

    console = json.loads(out.read_text())["console"]
    assert (console["work_orders"], console["samples"]) == (300, 2)
    assert console["build"]["work_orders"] == 300 and console["build"]["seconds"] > 0
    assert [r["state"] for r in console["real_work_orders"]] == ["success"] * 5
    assert list(console["pages"]) == list(PAGES)
    for name, page in console["pages"].items():
        assert page["statuses"] == {"200": 2} and page["errors"] == 0, name
        assert page["max_ms"] >= page["p95_ms"] >= page["median_ms"] > 0, name
        assert page["bytes"] > 0, name
        assert f"console {name}: median " in done.stdout and "(300 work orders)" in done.stdout
    assert console["errors"] == 0
    assert 0 <= console["pages_under_target"] <= len(PAGES)

    pages = console["pages"]
    # newest first: the 5 real work orders, then the seeded history
    assert (pages["history"]["rows"], pages["history"]["seeded_rows"]) == (50, 45)
    assert (pages["deep_page"]["rows"], pages["deep_page"]["seeded_rows"]) == (50, 50)
    assert pages["failed"]["rows"] == min(50, console["build"]["states"]["failed"])
    assert pages["by_workflow"]["rows"] == pages["by_trigger"]["rows"] == 50
    assert 0 < pages["one_day"]["rows"] < 50
    assert pages["search_hit"]["rows"] == pages["search_hit"]["seeded_rows"] == NEEDLES
    assert pages["search_miss"]["rows"] == 0
    assert "console build: 300 work orders seeded in" in done.stdout


def test_the_seeded_history_is_settled_spread_over_30_days_and_searchable(tmp_path: Path) -> None:
    path = tmp_path / "history.db"
    build = seed_history(path, 1200)
    assert build["work_orders"] == sum(build["states"].values()) == 1200
    assert build["needles"] == NEEDLES
    assert build["states"]["success"] > 1000 and set(build["states"]) <= {"success", "failed", "crashed", "cancelled"}

    storage = open_storage(f"sqlite:///{path}")
    try:
        orders = storage.list_work_orders()
        assert len(orders) == 1200
        assert not [o for o in orders if o.state in UNFINISHED_WORK_ORDER_STATES]
        assert {o.workflow_id for o in orders} == {"bench-seq3", "bench-and4", "bench-ingress"}
        hooked = [o for o in orders if o.trigger_id is not None]
        assert {(o.workflow_id, o.trigger_type, o.trigger_id) for o in hooked} == {
            ("bench-ingress", "webhook", "bench-hook")
        }
        span = orders[-1].created_at - orders[0].created_at
        assert 29 * 86400 < span < 30 * 86400 and orders[-1].created_at < build["end"]
        found, total = storage.page_work_orders(search=NEEDLE)
        assert total == NEEDLES and all(o.input and o.input["note"] == NEEDLE for o in found)
        newest, total = storage.page_work_orders(limit=50)
        assert total == 1200 and newest[0].input == {"invoice": 1199, "customer": f"acme-{1199 % 997}"}
    finally:
        storage.close()


def test_console_is_asked_for_by_name_and_quick_runs_small() -> None:
    assert "console" not in parse([]).scenarios
    full = parse(["--scenarios", "console"])
    assert (full.scenarios, full.console_work_orders, full.console_samples) == (["console"], 100_000, 20)
    quick = parse(["--quick", "--scenarios", "console", "--console-samples", "3"])
    assert (quick.console_work_orders, quick.console_samples) == (5_000, 3)


def test_console_sizes_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--scenarios", "console", "--console-work-orders", "0"])
    assert "--console-work-orders and --console-samples must be at least 1" in capsys.readouterr().err


def test_the_report_has_a_line_per_page_naming_its_errors() -> None:
    page = {"median_ms": 1.0, "p95_ms": 2.0, "errors": 3, "error_kinds": {"status 503": 3}}
    console = {
        "work_orders": 100,
        "samples": 5,
        "target_ms": 200.0,
        "errors": 3,
        "pages_under_target": 1,
        "build": {"seconds": 0.5, "rows_per_s": 200.0, "file_mb": 0.1},
        "real_work_orders": [{}] * 5,
        "pages": {"history": {**page, "errors": 0, "error_kinds": {}}, "status": page},
    }
    lines = console_lines(console)
    assert lines[1] == "console history: median 1.0 ms, p95 2.0 ms (100 work orders)"
    assert lines[2] == "console status: median 1.0 ms, p95 2.0 ms (100 work orders); errors 3 (status 503 3)"
    assert lines[3].startswith("console: 1 of 2 pages with a median under 200 ms and no error")
