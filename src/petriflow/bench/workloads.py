"""The workflows the bench runs (seq3, and4, a manual step), and driving a batch of them through a client."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from petriflow.bench.environment import log
from petriflow.bench.stats import summary
from petriflow.engine.document import compact_document

WORKLOADS = ("seq3", "and4")


MODES = ("one_after_another", "started_together")


MODE_LABEL = {"one_after_another": "one after another", "started_together": "started together"}


def seq3() -> dict:
    """start -> a -> p1 -> b -> p2 -> c -> end, every step `noop`."""
    return compact_document(
        "bench-seq3",
        ["start", "p1", "p2", "end"],
        [{"id": t, "executor": "noop"} for t in ("a", "b", "c")],
        ["start -> a", "a -> p1", "p1 -> b", "b -> p2", "p2 -> c", "c -> end"],
    )


def and4() -> dict:
    """An AND split into 4 `noop` branches joined again (6 transitions)."""
    branches = range(1, 5)
    places = ["start", *(f"s{i}" for i in branches), *(f"j{i}" for i in branches), "end"]
    transitions = [
        {"id": "split", "executor": "noop", "split": "and"},
        *({"id": f"b{i}", "executor": "noop"} for i in branches),
        {"id": "join", "executor": "noop", "join": "and"},
    ]
    arcs = ["start -> split", "join -> end"]
    for i in branches:
        arcs += [f"split -> s{i}", f"s{i} -> b{i}", f"b{i} -> j{i}", f"j{i} -> join"]
    return compact_document("bench-and4", places, transitions, arcs)


def manual1() -> dict:
    """start -> wait (manual) -> end: a case parked until a client completes it."""
    return compact_document(
        "bench-manual", ["start", "end"], [{"id": "wait", "executor": "manual"}], ["start -> wait", "wait -> end"]
    )


WORKFLOWS = {"seq3": seq3, "and4": and4}


TRANSITIONS_PER_CASE = {"seq3": 3, "and4": 6}


class PetriflowDriver:
    """Starts and waits for cases (or work orders) of one workflow."""

    def __init__(self, client: Any, workflow_id: str, api: str) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self.api = api

    def start(self, i: int) -> str:
        if self.api == "case":
            return self.client.start_case(self.workflow_id, {"i": i})
        return self.client.submit(self.workflow_id, {"i": i}).work_order_id

    def wait(self, handle: str, timeout_s: float = 900.0) -> bool:
        if self.api == "case":
            return self.client.wait_case(handle, timeout_s).case.state.value == "finished"
        return self.client.wait_work_order(handle, timeout_s).work_order.state.value == "success"


def run_batch(driver: Any, n: int, mode: str) -> dict[str, Any]:
    """Run n cases one after another or started together; cases/s."""
    began = time.perf_counter()
    ok = 0
    if mode == "one_after_another":
        for i in range(n):
            ok += driver.wait(driver.start(i))
        submitted_s = None
    else:
        handles = [driver.start(i) for i in range(n)]
        submitted_s = time.perf_counter() - began
        for handle in handles:
            ok += driver.wait(handle)
    seconds = time.perf_counter() - began
    result = {"cases": n, "seconds": round(seconds, 4), "rate": n / seconds, "finished_ok": ok}
    if submitted_s is not None:
        result["submit_seconds"] = round(submitted_s, 4)
    return result


def measure_modes(
    make_driver: Callable[[str], Any], workload: str, opts: argparse.Namespace, label: str
) -> dict[str, Any]:
    """Warm up, size the runs under the per-run cap, then repeat both modes."""
    driver = make_driver(workload)
    warm = run_batch(driver, opts.warmup, "one_after_another")
    estimate = warm["rate"]
    n = opts.cases
    cap = max(opts.min_cases, int(estimate * opts.max_run_s))
    note = None
    if cap < n:
        note = (
            f"reduced from {n} to {cap} cases per run: at ~{estimate:.1f} cases/s (warm-up) "
            f"{n} would take ~{n / estimate:.0f}s, over the {opts.max_run_s:.0f}s cap per run"
        )
        n = cap
        log(f"{label} {workload}: {note}")
    out: dict[str, Any] = {"cases": n, "requested_cases": opts.cases, "warmup": warm, "unit": "cases/s"}
    if note:
        out["reduced"] = note
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    for rep in range(opts.repeat):
        for mode in MODES:
            result = run_batch(driver, n, mode)
            runs[mode].append(result)
            log(
                f"{label} {workload} {MODE_LABEL[mode]} rep {rep + 1}: {result['rate']:.1f} cases/s "
                f"({n} in {result['seconds']:.1f}s, {result['finished_ok']} ok)"
            )
    for mode in MODES:
        out[mode] = {**summary([r["rate"] for r in runs[mode]]), "runs": runs[mode]}
    return out
