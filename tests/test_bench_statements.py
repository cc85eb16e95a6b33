"""The bench's statements scenario run through its command line: SQL
statements and commits per step (one transition executed) are in the JSON
and in the printed report, and plausible. Counts only: nothing timed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_bench import run_quick_bench

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_statements_scenario_reports_sql_per_step_for_both_workloads_and_modes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert "SQL per step" in run_quick_bench(out, "statements", 8)

    figures = json.loads(out.read_text())["statements"]
    assert figures["base"] == "embedded" and figures["cases"] == 8
    assert figures["connections_traced"] >= 1
    for workload, transitions in (("seq3", 3), ("and4", 6)):
        assert figures[workload]["transitions_per_case"] == transitions
        for mode in ("one_after_another", "started_together"):
            run = figures[workload][mode]
            assert run["finished_ok"] == run["cases"] == 8
            assert run["steps"] == 8 * transitions
            per_step = run["per_step"]
            assert per_step["statements"] > 0
            assert 0 < per_step["commits"] <= per_step["statements"]
            assert per_step["selects"] > 0 and per_step["inserts"] > 0 and per_step["updates"] > 0
            kinds = ("selects", "inserts", "updates", "deletes", "begins", "commits", "rollbacks", "other")
            assert sum(per_step[k] for k in kinds) == pytest.approx(per_step["statements"], abs=0.01)
            assert run["statements"] == sum(run["by_kind"].values())
            assert run["per_case"]["statements"] == pytest.approx(per_step["statements"] * transitions, rel=0.01)
            assert sum(run["per_step_by_table"]["SELECT"].values()) == pytest.approx(per_step["selects"], abs=0.05)
