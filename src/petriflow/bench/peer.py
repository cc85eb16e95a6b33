"""The peer: DBOS Transact on SQLite running the same 3-step workflow, in a
child process so its threads never meet a fork."""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path
from typing import Any

from petriflow.bench.environment import BASES, BENCH, log, version_of
from petriflow.bench.stats import summary
from petriflow.bench.workloads import MODE_LABEL, MODES


def peer_child(spec_json: str) -> int:
    """Hidden mode `--_peer SPEC`: run DBOS and print one JSON object."""
    spec = json.loads(spec_json)
    from dbos import DBOS

    DBOS(config={"name": "petriflow-bench", "system_database_url": f"sqlite:///{spec['db']}", "log_level": "WARNING"})

    @DBOS.step()
    def noop(payload: dict) -> dict:
        return dict(payload)

    @DBOS.workflow()
    def seq3_workflow(payload: dict) -> dict:
        return noop(noop(noop(payload)))

    DBOS.launch()
    try:

        def one_after_another(n: int) -> float:
            began = time.perf_counter()
            for i in range(n):
                seq3_workflow({"i": i})
            return n / (time.perf_counter() - began)

        def started_together(n: int) -> float:
            began = time.perf_counter()
            handles = [DBOS.start_workflow(seq3_workflow, {"i": i}) for i in range(n)]
            for handle in handles:
                handle.get_result()
            return n / (time.perf_counter() - began)

        one_after_another(spec["warmup"])
        runs: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(spec["repeat"]):
            runs["one_after_another"].append(one_after_another(spec["cases"]))
            runs["started_together"].append(started_together(spec["cases"]))
        print(json.dumps({"runs": runs}))
    finally:
        DBOS.destroy()
    return 0


def scenario_peer(opts: argparse.Namespace, tmp: Path, results: dict[str, Any]) -> dict[str, Any]:
    version = version_of("dbos")
    result: dict[str, Any] = {
        "peer": "DBOS Transact",
        "version": version,
        "storage": "SQLite",
        "what": "a durable workflow of 3 noop steps; one after another = called "
        "directly in a loop, started together = DBOS.start_workflow for "
        "all, then get_result for all",
        "cases": opts.peer_cases,
        "unit": "cases/s",
    }
    if version is None:
        result.update(
            available=False,
            reason="the dbos package is not installed here (pip install "
            "'petriflow[bench]' or pip install dbos); peer skipped",
        )
        log(result["reason"])
        return result
    directory = tmp / "peer"
    directory.mkdir(parents=True, exist_ok=True)
    spec = {
        "db": str(directory / "dbos.sqlite"),
        "cases": opts.peer_cases,
        "repeat": opts.repeat,
        "warmup": opts.warmup,
    }
    try:
        done = subprocess.run(
            [*BENCH, "--_peer", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=opts.peer_timeout_s,
            cwd=str(directory),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        result.update(available=False, reason=f"DBOS did not finish within {opts.peer_timeout_s}s")
        log(result["reason"])
        return result
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " / ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        result.update(available=False, reason=f"DBOS could not run (exit {done.returncode}): {tail}")
        log(result["reason"])
        return result
    runs = json.loads(lines[-1])["runs"]
    result["available"] = True
    for mode in MODES:
        result[mode] = {**summary(runs[mode]), "runs": runs[mode]}
        log(f"peer DBOS {MODE_LABEL[mode]}: {result[mode]['median']:.1f} cases/s")
    ratios: dict[str, Any] = {}
    for base in BASES:
        ours = results.get("throughput", {}).get(base, {}).get("seq3")
        if ours:
            ratios[base] = {m: ours[m]["median"] / result[m]["median"] for m in MODES}
    result["petriflow_over_dbos"] = ratios
    return result
