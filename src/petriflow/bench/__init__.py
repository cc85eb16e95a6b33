"""petriflow-bench: measure petriflow, its floor and a peer in one run.

Every scenario runs in this process tree, one after another, and the
figures are printed as a table and written as JSON (`--out`):

  throughput  cases/s of a 3-step `noop` sequence (seq3) and of an AND split
              into 4 branches joined again (and4), "one after another"
              (start, wait, next) and "started together" (start all, then
              wait for all), on the embedded base (simpleSystemBase, the
              engine in this process) and on the daemon
  latency     submit-to-final p50/p99 of single work orders on an idle engine
  statements  SQL statements and commits per step (one transition executed)
              of seq3 and and4, both modes, counted by a trace callback on
              the embedded base's SQLite connections (at most 200 cases)
  floor       bare Thespian actors arranged like the same case (one case
              actor, its task actors, their workitem actors; no storage, no
              petriflow code) on simpleSystemBase and multiprocTCPBase
  peer        DBOS Transact on SQLite running the same 3-step workflow
              (in a child process, so its threads never meet a fork)
  waiting     N cases parked on a `manual` step on the daemon with passivation
              on: memory (PSS), live processes, then the time to complete all
  recovery    SIGKILL every process of the daemon with cases in flight,
              restart it on the same storage, time until all are finished,
              and check in storage that none was lost or finished twice
  ingress     bursts of N webhooks (`POST /hooks/<trigger>`, a seq3 workflow),
              C at a time, at the daemon's HTTP port: accepted/s, refusals with
              and without Retry-After, errors, answer times, then whether every
              accepted work order succeeded (not run unless named in --scenarios)
  console     the daemon's web console over a history of N settled work orders
              (seeded straight into its SQLite file) and a few real ones: median,
              p95 and max of GETs of the history (plain, each filter, a search
              hit and miss, a deep page), a work order, its run, a workflow and
              the status page, beside the issue's 200 ms (not run unless named)

"The daemon" is the real one: `petriflow.daemon.Daemon(...).serve()` (what
`petriflow start --foreground` runs: keeper, subreaper, webhook endpoint,
multiprocTCPBase on loopback) started as a child process of this one, so
that the passivation timeout can be set (the command line has no flag for
it); the bench talks to it with `Client.connect(port)` as user code does.

Figures are printed, never judged: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from petriflow.bench import engines
from petriflow.bench.console import scenario_console
from petriflow.bench.engines import serve_daemon
from petriflow.bench.environment import BASES, DEFAULT_SCENARIOS, SCENARIOS, git_commit, log, version_of
from petriflow.bench.floor import scenario_floor
from petriflow.bench.ingress import scenario_ingress
from petriflow.bench.peer import peer_child, scenario_peer
from petriflow.bench.profile import run_profile
from petriflow.bench.recovery import scenario_recovery
from petriflow.bench.report import profile_text, table
from petriflow.bench.statements import scenario_statements
from petriflow.bench.throughput import scenario_latency, scenario_throughput
from petriflow.bench.waiting import scenario_waiting


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="petriflow-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small sizes, 1 repetition (sizes given explicitly still win)"
    )
    parser.add_argument("--repeat", type=int, help="repetitions per figure (default 3; quick 1)")
    parser.add_argument(
        "--scenarios",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default all but ingress and console)",
    )
    parser.add_argument("--bases", default=",".join(BASES), help="embedded,daemon (default both)")
    parser.add_argument(
        "--api",
        choices=("case", "workorder"),
        default="case",
        help="throughput through Client.start_case/wait_case (default) or submit/wait_work_order",
    )
    parser.add_argument(
        "--cases",
        type=int,
        help="cases per throughput/floor/statements run (default 500; quick 20; statements at most 200)",
    )
    parser.add_argument(
        "--max-run-s",
        type=float,
        help="cap on one measured run: fewer cases where a run would take longer, estimated "
        "from a warm-up (default 120; quick 10)",
    )
    parser.add_argument("--latency-samples", type=int, help="work orders per latency run (default 100; quick 20)")
    parser.add_argument("--peer-cases", type=int, help="DBOS workflows per run (default 500; quick 50)")
    parser.add_argument("--waiting", type=int, help="cases parked on a manual step (default 10000; quick 100)")
    parser.add_argument(
        "--waiting-budget-s", type=float, help="stop parking after this long and extrapolate (default 300; quick 20)"
    )
    parser.add_argument("--idle-timeout-s", type=float, default=1.0, help="passivation timeout for waiting (1)")
    parser.add_argument("--inflight", type=int, help="cases in flight at the SIGKILL (default 1000; quick 50)")
    parser.add_argument(
        "--memory-cap-mb",
        type=float,
        default=8000.0,
        help="SIGKILL a recovering daemon whose PSS passes this (default 8000)",
    )
    parser.add_argument("--ingress-requests", type=int, help="webhooks per ingress burst (default 1000; quick 100)")
    parser.add_argument(
        "--ingress-queue",
        type=int,
        help="the daemon's ingress queue for the ingress scenario (default the daemon's, 1024): a small one "
        "shows the 503s with Retry-After",
    )
    parser.add_argument(
        "--ingress-concurrency", type=int, help="webhooks in flight at once in a burst (default 100; quick 20)"
    )
    parser.add_argument(
        "--ingress-wait-s",
        type=float,
        help="cap on waiting for a burst's accepted work orders to end (default 120; quick 60)",
    )
    parser.add_argument(
        "--console-work-orders", type=int, help="work orders in the console's history (default 100000; quick 5000)"
    )
    parser.add_argument("--console-samples", type=int, help="timed GETs of each console page (default 20; quick 5)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="only profile: seq3 on the embedded base (one process) and on the daemon "
        "(every actor process under cProfile), grouped per case",
    )
    parser.add_argument("--profile-cases", type=int, help="cases profiled (default 200; quick 40)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes and databases")
    parser.add_argument("--_serve-daemon", dest="serve_daemon", help=argparse.SUPPRESS)
    parser.add_argument("--_peer", dest="peer", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    quick = opts.quick
    defaults = {
        "repeat": (3, 1),
        "cases": (500, 20),
        "max_run_s": (120.0, 10.0),
        "latency_samples": (100, 20),
        "peer_cases": (500, 50),
        "waiting": (10000, 100),
        "waiting_budget_s": (300.0, 20.0),
        "inflight": (1000, 50),
        "profile_cases": (200, 40),
        "ingress_requests": (1000, 100),
        "ingress_concurrency": (100, 20),
        "ingress_wait_s": (120.0, 60.0),
        "console_work_orders": (100_000, 5_000),
        "console_samples": (20, 5),
    }
    for name, (full, small) in defaults.items():
        if getattr(opts, name) is None:
            setattr(opts, name, small if quick else full)
    opts.warmup = 3 if quick else 10
    opts.min_cases = 5 if quick else 20
    opts.latency_gap_s = 0.05
    opts.peer_timeout_s = 900.0
    opts.recovery_timeout_s = 1800.0
    opts.scenarios = [s.strip() for s in opts.scenarios.split(",") if s.strip()]
    opts.bases = [b.strip() for b in opts.bases.split(",") if b.strip()]
    for s in opts.scenarios:
        if s not in SCENARIOS:
            parser.error(f"unknown scenario {s!r}: one of {', '.join(SCENARIOS)}")
    for b in opts.bases:
        if b not in BASES:
            parser.error(f"unknown base {b!r}: one of {', '.join(BASES)}")
    if opts.ingress_requests < 1 or opts.ingress_concurrency < 1:
        parser.error("--ingress-requests and --ingress-concurrency must be at least 1")
    if opts.console_work_orders < 1 or opts.console_samples < 1:
        parser.error("--console-work-orders and --console-samples must be at least 1")
    return opts


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse(argv)
    if opts.serve_daemon:
        return serve_daemon(opts.serve_daemon)
    if opts.peer:
        return peer_child(opts.peer)
    tmp = Path(tempfile.mkdtemp(prefix="petriflow-bench-"))
    results: dict[str, Any] = {
        "meta": {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "argv": argv,
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "thespian": version_of("thespian"),
            "dbos": version_of("dbos"),
            "platform": platform.platform(),
            "git": git_commit(),
            "load_average_at_start": os.getloadavg(),
            "quick": opts.quick,
            "daemon": "the real daemon: petriflow.daemon.Daemon(...).serve() in a child process "
            "(multiprocTCPBase on loopback, keeper, subreaper, webhook), reached with "
            "Client.connect(port)",
            "embedded": "simpleSystemBase in the bench's process, Engine booted with boot_engine",
            "storage": "SQLite in a temporary directory, a fresh file per scenario and base",
        },
        "options": {k: v for k, v in vars(opts).items() if k not in ("serve_daemon", "peer")},
    }
    began = time.perf_counter()
    try:
        if opts.profile:
            results["profile"] = run_profile(opts, tmp)
        else:
            for scenario in opts.scenarios:
                log(f"scenario {scenario}")
                started = time.perf_counter()
                if scenario == "throughput":
                    results["throughput"] = scenario_throughput(opts, tmp)
                elif scenario == "latency":
                    results["latency"] = scenario_latency(opts, tmp)
                elif scenario == "statements" and "embedded" in opts.bases:
                    results["statements"] = scenario_statements(opts, tmp)
                elif scenario == "floor":
                    results["floor"] = scenario_floor(opts, tmp)
                elif scenario == "peer":
                    results["peer"] = scenario_peer(opts, tmp, results)
                elif scenario == "waiting" and "daemon" in opts.bases:
                    results["waiting"] = scenario_waiting(opts, tmp)
                elif scenario == "recovery" and "daemon" in opts.bases:
                    results["recovery"] = scenario_recovery(opts, tmp)
                elif scenario == "ingress" and "daemon" in opts.bases:
                    results["ingress"] = scenario_ingress(opts, tmp)
                elif scenario == "console" and "daemon" in opts.bases:
                    results["console"] = scenario_console(opts, tmp)
                results.setdefault("scenario_seconds", {})[scenario] = round(time.perf_counter() - started, 1)
    finally:
        for engine in list(engines.live_daemons):
            with contextlib.suppress(Exception):
                engine.close()
        results["meta"]["total_seconds"] = round(time.perf_counter() - began, 1)
        if opts.out:
            Path(opts.out).write_text(json.dumps(results, indent=2, default=str))
        if not opts.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            log(f"kept {tmp}")
    meta = results["meta"]
    print(
        f"petriflow-bench  commit {meta['git']['commit']}{' (dirty tree)' if meta['git']['dirty'] else ''}  "
        f"{meta['cores']} cores  Python {meta['python']}  Thespian {meta['thespian']}  "
        f"DBOS {meta['dbos']}  {meta['total_seconds']}s"
    )
    if opts.profile:
        print(profile_text(results["profile"]))
    else:
        print(table(results))
    if opts.out:
        print(f"figures written to {opts.out}")
    return 0
