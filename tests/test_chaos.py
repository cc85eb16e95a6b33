"""The short chaos run: a real daemon under load, every kind of actor and the
whole daemon SIGKILLed at random moments, nodes that kill themselves
just before and just after committing a turn, and storage outages (every
write failing for seconds) the daemon waits out, then nothing lost, nothing
done twice, no violation in storage (bin/petriflow-chaos)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.multiproc]

ROOT = Path(__file__).resolve().parent.parent
KINDS = (
    "workitem",
    "task",
    "case",
    "work_order",
    "node",
    "before_commit",
    "after_commit",
    "engine",
    "hung_node",
    "hung_engine",
    "storage_outage",
    "daemon",
)
FAULTS = 24  # two of each of the twelve kinds


@pytest.mark.timeout(300)
def test_a_short_chaos_run_loses_nothing_and_does_nothing_twice():
    chaos = subprocess.Popen(
        [sys.executable, "bin/petriflow-chaos", "--seed", "1", "--work-orders", "40", "--faults", str(FAULTS)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = chaos.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        chaos.send_signal(signal.SIGTERM)  # it stops its daemon and kills every process of it
        out, err = chaos.communicate(timeout=50)
        pytest.fail(f"the chaos run took longer than 240s\n{out}\n{err}")
    report = f"{out}\n{err}"
    lines = out.strip().splitlines()
    summary = lines[-1] if lines else ""
    assert summary.startswith("chaos seed=1 work_orders=40 "), report
    figures = dict(re.findall(r"(\w+)=(\S+)", summary))
    assert {k: figures[k] for k in ("lost", "duplicated", "unexpected", "violations")} == {
        "lost": "0",
        "duplicated": "0",
        "unexpected": "0",
        "violations": "0",
    }, report
    injected = {kind: int(n) for kind, n in (pair.split(":") for pair in figures["faults"].split(","))}
    assert sum(injected.values()) == FAULTS and all(injected[f"kill_{kind}"] >= 1 for kind in KINDS), report
    assert chaos.returncode == 0, report
