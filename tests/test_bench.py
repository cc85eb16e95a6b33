"""Smoke test of bin/petriflow-bench: it runs and writes its figures.

Figures are never asserted against targets (this machine is shared and
small): only that the JSON has its keys and that each figure is positive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

BENCH = Path(__file__).resolve().parent.parent / "bin" / "petriflow-bench"


def run_quick_bench(out: Path, scenario: str, cases: int) -> str:
    """`petriflow-bench --quick` of one scenario, figures to `out`; its printed report."""
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--scenarios", scenario, "--cases", str(cases), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=170,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(180)
def test_quick_throughput_writes_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    assert "throughput" in run_quick_bench(out, "throughput", 10)

    figures = json.loads(out.read_text())
    meta = figures["meta"]
    assert meta["cores"] >= 1 and meta["python"] and meta["thespian"]
    assert "commit" in meta["git"]
    throughput = figures["throughput"]
    for base in ("embedded", "daemon"):
        for workload in ("seq3", "and4"):
            data = throughput[base][workload]
            assert data["cases"] > 0
            for mode in ("one_after_another", "started_together"):
                assert data[mode]["median"] > 0 and data[mode]["min"] > 0 and data[mode]["max"] > 0
                assert all(run["finished_ok"] == run["cases"] for run in data[mode]["runs"])
