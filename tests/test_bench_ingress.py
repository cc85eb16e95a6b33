"""The bench's ingress scenario: bursts of webhooks at a real daemon.

The smoke test runs it through the command line and checks that its figures
are coherent (every request is counted once, every accepted work order is
found and succeeded); it never judges a rate or a time against a target.
The other tests cover its counting and its options without a daemon."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from petriflow.bench import parse
from petriflow.bench.ingress import figures, ingress_workflow
from petriflow.bench.report import ingress_lines
from tests.test_bench import run_quick_bench


@pytest.mark.slow
@pytest.mark.multiproc
@pytest.mark.timeout(180)
def test_quick_ingress_counts_every_request_once_and_every_accepted_work_order_succeeds(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    printed = run_quick_bench(out, "ingress", 10)
    assert "ingress rep 1: 100 webhooks 20 at a time" in printed

    ingress = json.loads(out.read_text())["ingress"]
    assert (ingress["requests"], ingress["concurrency"]) == (100, 20)
    assert len(ingress["runs"]) == 1
    for run in ingress["runs"]:
        refused = run["refused_with_retry_after"] + run["refused_without_retry_after"]
        assert run["accepted"] + refused + run["errors"] == run["requests"] == 100
        assert run["accepted"] > 0 and run["accepted_per_s"] > 0
        assert run["all_accepted_succeeded"] is True
        assert run["accepted_succeeded"] == run["accepted"]
        assert run["lost"] == 0
        assert run["max_ms"] >= run["p99_ms"] >= run["p50_ms"] > 0
        assert sum(run["statuses"].values()) + run["connection_errors"] == 100
    assert ingress["all_accepted_succeeded"] is True and ingress["lost_total"] == 0
    assert ingress["accepted_per_s"]["median"] > 0


def sample(i: int, ms: float, status: int | None = None, **extra: object) -> dict:
    s: dict = {"i": i, "ms": ms, **extra}
    if status is not None:
        s.update(status=status, retry_after=extra.get("retry_after"), server="test")
    return s


def test_figures_count_acceptances_refusals_errors_and_lost_work_orders_apart() -> None:
    samples = [
        sample(0, 10.0, 201, work_order_id="wo-a"),
        sample(1, 20.0, 201, work_order_id="wo-b"),
        sample(2, 30.0, 201, work_order_id="wo-c"),
        sample(3, 1.0, 503, retry_after="1"),
        sample(4, 2.0, 429),
        sample(5, 5.0, 500),
        sample(6, 6.0, 201),  # a 201 without a work order id in its body
        sample(7, 99.0, error="ServerDisconnectedError"),
    ]
    states = {"wo-old": "success", "wo-a": "success", "wo-b": "failed", "wo-x": "success"}
    f = figures(samples, 2.0, 8, 4, {"wo-old"}, states)
    assert (f["accepted"], f["accepted_per_s"]) == (3, 1.5)
    assert (f["refused_with_retry_after"], f["refused_without_retry_after"]) == (1, 1)
    assert f["retry_after_values"] == {"1": 1}
    assert (f["errors"], f["connection_errors"]) == (3, 1)
    assert f["connection_error_kinds"] == {"ServerDisconnectedError": 1}
    assert f["other_statuses"] == {"500": 1, "201 without work_order_id": 1}
    assert f["statuses"] == {"201": 4, "503": 1, "429": 1, "500": 1}
    assert f["accepted"] + 2 + f["errors"] == 8
    # answer times are of the 7 answers; the connection error's 99 ms is none
    assert (f["p50_ms"], f["p99_ms"], f["max_ms"]) == (6.0, 30.0, 30.0)
    assert (f["accepted_p50_ms"], f["accepted_p99_ms"]) == (20.0, 30.0)
    assert f["accepted_final_states"] == {"success": 1, "failed": 1, "missing": 1}
    assert (f["accepted_succeeded"], f["all_accepted_succeeded"], f["lost"]) == (1, False, 1)
    assert f["stored_not_acknowledged"] == 1  # wo-x: stored, never answered 201; wo-old predates the burst


def test_figures_of_a_clean_burst_say_all_accepted_succeeded() -> None:
    samples = [sample(i, float(i + 1), 201, work_order_id=f"wo-{i}") for i in range(4)]
    f = figures(samples, 0.5, 4, 2, set(), {f"wo-{i}": "success" for i in range(4)})
    assert (f["accepted"], f["errors"], f["lost"], f["all_accepted_succeeded"]) == (4, 0, 0, True)
    assert f["accepted_per_s"] == 8.0


def test_ingress_is_asked_for_by_name_and_quick_runs_small() -> None:
    assert "ingress" not in parse([]).scenarios
    full = parse(["--scenarios", "ingress"])
    assert (full.scenarios, full.ingress_requests, full.ingress_concurrency, full.ingress_wait_s) == (
        ["ingress"],
        1000,
        100,
        120.0,
    )
    quick = parse(["--quick", "--scenarios", "ingress", "--ingress-concurrency", "7"])
    assert (quick.ingress_requests, quick.ingress_concurrency, quick.repeat) == (100, 7, 1)


def test_ingress_sizes_below_one_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(["--scenarios", "ingress", "--ingress-concurrency", "0"])
    assert "--ingress-concurrency must be at least 1" in capsys.readouterr().err


def test_the_workflow_has_the_webhook_trigger() -> None:
    assert ingress_workflow()["triggers"] == [{"id": "bench-hook", "type": "webhook"}]


def test_the_report_names_each_kind_of_error() -> None:
    f = figures(
        [sample(0, 1.0, 201, work_order_id="wo-0"), sample(1, 1.0, 500), sample(2, 1.0, error="ClientOSError")],
        1.0,
        3,
        2,
        set(),
        {"wo-0": "success"},
    )
    f.update(ended_within_wait=True, end_wait_s=0.1, all_ended_after_s=1.1)
    (line,) = ingress_lines({"runs": [f], "wait_s": 60.0})
    assert "errors 2 (ClientOSError 1, status 500 1)" in line
    assert "1 succeeded, 0 lost, all ended 1.1s" in line
