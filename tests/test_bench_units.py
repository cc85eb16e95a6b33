"""The benchmark's pure parts: statistics, the profile's grouping of where
time goes, and its options. (Running it is tests/test_bench.py.)"""

from __future__ import annotations

import pytest

from petriflow.bench import parse
from petriflow.bench.environment import ROOT
from petriflow.bench.profile import IDLE, classify
from petriflow.bench.statements import classify_statement
from petriflow.bench.stats import percentile, summary


def test_summary_gives_the_median_and_the_spread():
    figures = summary([3.0, 1.0, 2.0, 10.0])
    assert (figures["median"], figures["min"], figures["max"]) == (2.5, 1.0, 10.0)
    assert figures["values"] == [1.0, 2.0, 3.0, 10.0]
    assert "iqr" in figures and "iqr" not in summary([1.0, 2.0])


@pytest.mark.parametrize("p,expected", [(50, 5), (99, 10), (100, 10), (1, 1), (10, 1), (11, 2)])
def test_percentile_is_nearest_rank(p, expected):
    assert percentile(list(range(10, 0, -1)), p) == expected


@pytest.mark.parametrize(
    "path,group",
    [
        (f"{ROOT}/engine/routing.py", "engine Python (engine/actors/supervision)"),
        (f"{ROOT}/actors/case.py", "engine Python (engine/actors/supervision)"),
        (f"{ROOT}/workorders/runs.py", "engine Python (engine/actors/supervision)"),
        (f"{ROOT}/storage/store.py", "storage (sqlite3/storage)"),
        (f"{ROOT}/engine/codec.py", "codec (msgpack)"),
        (f"{ROOT}/src/petriflow/logs.py", "logging (structlog)"),
        ("/site-packages/petriflow/logs.py", "logging (structlog)"),
        ("/site-packages/structlog/_output.py", "logging (structlog)"),
        ("/site-packages/thespian/system/transport/TCPTransport.py", "messaging (thespian)"),
        ("/usr/lib/python3.11/json/decoder.py", "other"),
    ],
)
def test_the_profile_groups_time_by_where_the_code_lives(path, group):
    assert classify((path, 1, "f")) == group


def test_waiting_in_select_or_sleep_is_idle_not_cost():
    assert classify(("~", 0, "<built-in method time.sleep>")) == IDLE


def test_options_default_to_every_scenario_on_both_bases_and_quick_runs_small():
    opts = parse([])
    assert opts.scenarios == ["throughput", "latency", "statements", "floor", "peer", "waiting", "recovery"]
    assert opts.bases == ["embedded", "daemon"]
    assert (opts.repeat, opts.cases) == (3, 500)
    quick = parse(["--quick", "--scenarios", "throughput", "--cases", "7"])
    assert (quick.scenarios, quick.repeat, quick.cases) == (["throughput"], 1, 7)


def test_unknown_scenarios_and_bases_are_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        parse(["--scenarios", "throughput,speed"])
    assert "unknown scenario 'speed'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse(["--bases", "cloud"])
    assert "unknown base 'cloud'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "sql,kind,table",
    [
        ('SELECT "id", "case_id" FROM "tasks" WHERE ("case_id" = ?)', "SELECT", "tasks"),
        ("  select name from sqlite_master where type = 'table'", "SELECT", "sqlite_master"),
        ('INSERT INTO "tokens" ("id", "case_id") VALUES (1, 2)', "INSERT", "tokens"),
        ('INSERT OR REPLACE INTO "runs" VALUES (1)', "INSERT", "runs"),
        ('UPDATE "workitems" SET "state" = 2 WHERE "id" = 7', "UPDATE", "workitems"),
        ('DELETE FROM "outbox" WHERE "id" = 3', "DELETE", "outbox"),
        ("BEGIN IMMEDIATE", "BEGIN", None),
        ("COMMIT", "COMMIT", None),
        ("ROLLBACK", "ROLLBACK", None),
        ("PRAGMA synchronous = FULL", "other", None),
        ("", "other", None),
    ],
)
def test_the_statement_counter_sorts_statements_by_kind_and_table(sql, kind, table):
    assert classify_statement(sql) == (kind, table)
