"""Ingress: bursts of webhooks at the real daemon's HTTP port, C at a time.

Each burst is N `POST /hooks/<trigger>` requests with the JSON body
`{"n": i}`, sent by C concurrent workers of one asyncio client (aiohttp),
each sending one request after another. Every answer is recorded: its
status, its time, whether a refusal (429, 503) carried `Retry-After`. A
refused request is not sent again. Connection errors (resets, refused
connects, timeouts) are counted apart from answers. Then every accepted
work order (201) is waited for in storage (the daemon's SQLite file, read
only) until it ends or the wait is over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from petriflow.bench.engines import DaemonProcess
from petriflow.bench.environment import log
from petriflow.bench.stats import percentile, summary
from petriflow.bench.waiting import storage_rows
from petriflow.bench.workloads import seq3

TRIGGER = "bench-hook"
WORKFLOW = "bench-ingress"
REFUSALS = (429, 503)
UNFINISHED = ("pending", "running")  # UNFINISHED_WORK_ORDER_STATES
REQUEST_TIMEOUT_S = 60.0
"""One request's cap, connect to last byte of the answer: past it, a connection error."""
FIGURES = (
    "accepted",
    "accepted_per_s",
    "refused_with_retry_after",
    "refused_without_retry_after",
    "errors",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "accepted_succeeded",
    "lost",
)


def ingress_workflow() -> dict[str, Any]:
    """seq3 (three `noop` steps in a row) with a webhook trigger."""
    return {**seq3(), "id": WORKFLOW, "triggers": [{"id": TRIGGER, "type": "webhook"}]}


async def _burst(url: str, first: int, n: int, c: int) -> tuple[list[dict[str, Any]], float]:
    """N requests, C workers each sending its next one when its last is answered."""
    import aiohttp

    samples: list[dict[str, Any]] = []
    indices = iter(range(first, first + n))  # shared: each worker takes the next index
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c), timeout=timeout) as session:

        async def worker() -> None:
            for i in indices:
                sample: dict[str, Any] = {"i": i}
                began = time.perf_counter()
                try:
                    async with session.post(url, json={"n": i}) as response:
                        body = await response.read()
                        sample["status"] = response.status
                        sample["retry_after"] = response.headers.get("Retry-After")
                        sample["server"] = response.headers.get("Server")
                    if sample["status"] == 201:
                        try:
                            sample["work_order_id"] = str(json.loads(body)["work_order_id"])
                        except (ValueError, KeyError, TypeError):
                            pass
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    sample["error"] = type(exc).__name__
                sample["ms"] = (time.perf_counter() - began) * 1000
                samples.append(sample)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(c)))
        wall = time.perf_counter() - began
    return samples, wall


def _trigger_states(path: Path) -> dict[str, str]:
    return dict(storage_rows(path, "SELECT id, state FROM work_orders WHERE trigger_id = ?", (TRIGGER,)))


def wait_for_endings(path: Path, ids: list[str], wait_s: float) -> tuple[dict[str, str], float, bool]:
    """Poll storage until every id is stored and ended, or `wait_s` is over:
    (states of the trigger's work orders, seconds waited, all ended)."""
    began = time.perf_counter()
    deadline = time.monotonic() + wait_s
    while True:
        states = _trigger_states(path)
        done = all(states.get(i) not in (None, *UNFINISHED) for i in ids)
        if done or time.monotonic() >= deadline:
            return states, time.perf_counter() - began, done
        time.sleep(0.25)


def figures(
    samples: list[dict[str, Any]], wall_s: float, n: int, c: int, before: set[str], states: dict[str, str]
) -> dict[str, Any]:
    """One burst's figures from its samples and the trigger's work orders in storage."""
    accepted_ids = [s["work_order_id"] for s in samples if "work_order_id" in s]
    statuses = Counter(str(s["status"]) for s in samples if "status" in s)
    connection_errors = Counter(s["error"] for s in samples if "error" in s)
    refused = [s for s in samples if s.get("status") in REFUSALS]
    other = Counter(
        str(s["status"]) + ("" if s["status"] != 201 else " without work_order_id")
        for s in samples
        if "status" in s and s["status"] not in REFUSALS and "work_order_id" not in s
    )
    answered = [s["ms"] for s in samples if "status" in s]
    accepted_ms = [s["ms"] for s in samples if "work_order_id" in s]
    final = Counter(states.get(i, "missing") for i in accepted_ids)
    accepted_set = set(accepted_ids)
    return {
        "requests": n,
        "concurrency": c,
        "wall_s": round(wall_s, 3),
        "accepted": len(accepted_ids),
        "accepted_per_s": len(accepted_ids) / wall_s if wall_s > 0 else 0.0,
        "answers_per_s": len(answered) / wall_s if wall_s > 0 else 0.0,
        "refused_with_retry_after": sum(1 for s in refused if s["retry_after"] is not None),
        "refused_without_retry_after": sum(1 for s in refused if s["retry_after"] is None),
        "retry_after_values": dict(Counter(s["retry_after"] for s in refused if s["retry_after"] is not None)),
        "errors": sum(connection_errors.values()) + sum(other.values()),
        "connection_errors": sum(connection_errors.values()),
        "connection_error_kinds": dict(connection_errors),
        "other_statuses": dict(other),
        "statuses": dict(statuses),
        "p50_ms": percentile(answered, 50) if answered else None,
        "p99_ms": percentile(answered, 99) if answered else None,
        "max_ms": max(answered) if answered else None,
        "accepted_p50_ms": percentile(accepted_ms, 50) if accepted_ms else None,
        "accepted_p99_ms": percentile(accepted_ms, 99) if accepted_ms else None,
        "accepted_succeeded": final.get("success", 0),
        "all_accepted_succeeded": final.get("success", 0) == len(accepted_ids),
        "lost": final.get("missing", 0),
        "accepted_final_states": dict(final),
        # stored during the burst without a 201 answered for them (e.g. a request
        # that timed out on the client's side but was taken)
        "stored_not_acknowledged": sum(1 for i in states if i not in before and i not in accepted_set),
        "servers": dict(Counter(s["server"] for s in samples if s.get("server"))),
    }


def run_burst(engine: DaemonProcess, first: int, n: int, c: int, wait_s: float) -> dict[str, Any]:
    url = f"http://127.0.0.1:{engine.config.http_port}/hooks/{TRIGGER}"
    before = set(_trigger_states(engine.storage_path))
    samples, wall_s = asyncio.run(_burst(url, first, n, c))
    accepted_ids = [s["work_order_id"] for s in samples if "work_order_id" in s]
    states, waited_s, ended = wait_for_endings(engine.storage_path, accepted_ids, wait_s)
    result = figures(samples, wall_s, n, c, before, states)
    result["ended_within_wait"] = ended
    result["end_wait_s"] = round(waited_s, 3)
    result["all_ended_after_s"] = round(wall_s + waited_s, 3)
    return result


def scenario_ingress(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n, c, wait_s = opts.ingress_requests, opts.ingress_concurrency, opts.ingress_wait_s
    queue = getattr(opts, "ingress_queue", None)  # None: the daemon's default
    result: dict[str, Any] = {
        "base": "daemon",
        "workload": "seq3",
        "trigger": TRIGGER,
        "requests": n,
        "concurrency": c,
        "wait_s": wait_s,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "ingress_queue": queue,
        "what": f"bursts of {n} POST /hooks/{TRIGGER} with {{'n': i}}, {c} at a time (aiohttp client, {c} "
        "workers each sending one request after another; refusals not sent again) at the real daemon's "
        "HTTP port; accepted_per_s = 201s / wall time of the burst; p50/p99/max over every answer; then "
        f"every accepted work order waited for in the daemon's SQLite file (at most {wait_s}s)",
    }
    engine = DaemonProcess(tmp / "ingress", **({"ingress_queue": queue} if queue else {}))
    try:
        engine.client.put_workflow(ingress_workflow())
        result["http_port"] = engine.config.http_port
        warm = run_burst(engine, 0, opts.warmup, 1, wait_s)
        result["warmup"] = {k: warm[k] for k in ("requests", "accepted", "errors", "statuses", "p50_ms", "servers")}
        result["server"] = next(iter(warm["servers"]), None)
        runs = []
        for rep in range(opts.repeat):
            run = run_burst(engine, (rep + 1) * n, n, c, wait_s)
            runs.append(run)
            log(
                f"ingress rep {rep + 1}: {run['accepted']}/{n} accepted at {run['accepted_per_s']:.1f}/s, "
                f"{c} at a time; refused {run['refused_with_retry_after']} with Retry-After, "
                f"{run['refused_without_retry_after']} without; errors {run['errors']}; "
                f"p50 {run['p50_ms'] or 0:.1f} ms, p99 {run['p99_ms'] or 0:.1f} ms; "
                f"{run['accepted_succeeded']} succeeded, {run['lost']} lost"
            )
        result["runs"] = runs
        for key in FIGURES:
            values = [r[key] for r in runs if r[key] is not None]
            if values:
                result[key] = summary(values)
        result["all_accepted_succeeded"] = all(r["all_accepted_succeeded"] for r in runs)
        result["lost_total"] = sum(r["lost"] for r in runs)
    finally:
        engine.close()
    return result
