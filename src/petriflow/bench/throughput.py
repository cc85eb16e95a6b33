"""Cases per second, one after another and started together, and submit-to-final latency."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from petriflow.bench.engines import open_engine
from petriflow.bench.environment import log
from petriflow.bench.stats import percentile, summary
from petriflow.bench.workloads import WORKFLOWS, WORKLOADS, PetriflowDriver, and4, measure_modes, run_batch, seq3


def scenario_throughput(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"api": opts.api, "max_run_s": opts.max_run_s}
    for base in opts.bases:
        engine = open_engine(base, tmp / f"throughput-{base}")
        try:
            for doc in (seq3(), and4()):
                engine.client.put_workflow(doc)
            per_base: dict[str, Any] = {}
            for workload in WORKLOADS:
                per_base[workload] = measure_modes(
                    lambda w: PetriflowDriver(engine.client, WORKFLOWS[w]()["id"], opts.api),
                    workload,
                    opts,
                    f"throughput {base}",
                )
            result[base] = per_base
        finally:
            engine.close()
    return result


def scenario_latency(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "samples": opts.latency_samples,
        "unit": "ms",
        "what": f"submit + wait_work_order of one seq3 work order at a time, {opts.latency_gap_s}s apart (idle engine)",
    }
    for base in opts.bases:
        engine = open_engine(base, tmp / f"latency-{base}")
        try:
            engine.client.put_workflow(seq3())
            driver = PetriflowDriver(engine.client, seq3()["id"], "workorder")
            run_batch(driver, opts.warmup, "one_after_another")
            reps = []
            for rep in range(opts.repeat):
                samples = []
                for i in range(opts.latency_samples):
                    time.sleep(opts.latency_gap_s)
                    began = time.perf_counter()
                    driver.wait(driver.start(i))
                    samples.append((time.perf_counter() - began) * 1000)
                reps.append(
                    {
                        "p50": percentile(samples, 50),
                        "p99": percentile(samples, 99),
                        "min": min(samples),
                        "max": max(samples),
                    }
                )
                log(f"latency {base} rep {rep + 1}: p50 {reps[-1]['p50']:.1f} ms, p99 {reps[-1]['p99']:.1f} ms")
            result[base] = {
                "p50": summary([r["p50"] for r in reps]),
                "p99": summary([r["p99"] for r in reps]),
                "runs": reps,
            }
        finally:
            engine.close()
    return result
