"""Waiting work: cases parked on a manual step on the daemon, with passivation; memory, processes, time to complete."""

from __future__ import annotations

import argparse
import sqlite3
import time
from pathlib import Path
from typing import Any

from petriflow.bench.engines import DaemonProcess
from petriflow.bench.environment import log
from petriflow.bench.workloads import manual1


def daemon_memory(engine: DaemonProcess) -> dict[str, Any]:
    from petriflow.supervision.processes import process_pss_kb

    pids = engine.pids()
    pss = [kb for kb in map(process_pss_kb, pids) if kb is not None]
    return {"processes": len(pids), "pss_kb": sum(pss)}


def settle(engine: DaemonProcess, quiet_s: float, timeout_s: float) -> dict[str, Any]:
    """Wait until the daemon's process count stops falling (passivation done)."""
    deadline = time.monotonic() + timeout_s
    best = len(engine.pids())
    last_change = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last_change < quiet_s:
        time.sleep(0.25)
        count = len(engine.pids())
        if count < best:
            best, last_change = count, time.monotonic()
    return daemon_memory(engine)


def storage_rows(path: Path, query: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60)
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def scenario_waiting(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    target = opts.waiting
    engine = DaemonProcess(tmp / "waiting", idle_timeout_s=opts.idle_timeout_s)
    result: dict[str, Any] = {
        "target_cases": target,
        "idle_timeout_s": opts.idle_timeout_s,
        "what": "cases (Client.start_case) parked on one manual step; memory is the sum "
        "of PSS over the daemon's process and every process of its actor "
        "system's session; processes include the daemon, Thespian's admin "
        "and logger, and the Engine",
    }
    try:
        client = engine.client
        client.put_workflow(manual1())
        time.sleep(opts.idle_timeout_s + 0.5)
        result["before"] = daemon_memory(engine)
        budget_end = time.monotonic() + opts.waiting_budget_s
        checkpoints: list[dict[str, Any]] = []
        case_ids: list[str] = []
        began = time.perf_counter()
        peak = 0
        next_checkpoint = max(1, target // 2)
        while len(case_ids) < target:
            case_ids.append(client.start_case("bench-manual", {"i": len(case_ids)}))
            if len(case_ids) % 50 == 0:
                peak = max(peak, len(engine.pids()))
            if len(case_ids) == next_checkpoint and len(case_ids) < target:
                checkpoints.append(
                    {
                        "cases": len(case_ids),
                        "seconds": time.perf_counter() - began,
                        "processes_while_parking": len(engine.pids()),
                    }
                )
            if time.monotonic() > budget_end:
                break
        park_s = time.perf_counter() - began
        parked = len(case_ids)
        if parked < target:
            log(
                f"waiting: parked {parked} of {target} cases within the {opts.waiting_budget_s:.0f}s budget; "
                f"the figures for {target} are extrapolated"
            )
        log(f"waiting: {parked} parked in {park_s:.1f}s; waiting for passivation")

        def awaiting() -> int:
            sql = "SELECT count(*) FROM workitems WHERE state = 'started' AND awaiting = 1"
            return storage_rows(engine.storage_path, sql)[0][0]

        deadline = time.monotonic() + 120
        while awaiting() < parked and time.monotonic() < deadline:
            time.sleep(0.2)
        after = settle(engine, quiet_s=opts.idle_timeout_s * 4 + 1, timeout_s=120)
        result.update(
            parked_cases=parked,
            park_seconds=round(park_s, 2),
            park_rate=parked / park_s,
            peak_processes_while_parking=peak,
            after_passivation=after,
            checkpoints=checkpoints,
        )
        per_case_kb = (after["pss_kb"] - result["before"]["pss_kb"]) / parked
        result["pss_kb_per_waiting_case"] = per_case_kb
        log(
            f"waiting: after passivation {after['processes']} processes, {after['pss_kb'] / 1024:.1f} MB PSS "
            f"({per_case_kb:.2f} kB per waiting case)"
        )

        rows = storage_rows(engine.storage_path, "SELECT id FROM workitems WHERE state = 'started' AND awaiting = 1")
        began = time.perf_counter()
        for (workitem_id,) in rows:
            client.complete_workitem(workitem_id, {"approved": True})
        completed_s = time.perf_counter() - began
        finished = sum(client.wait_case(case_id, 900).case.state.value == "finished" for case_id in case_ids)
        complete_s = time.perf_counter() - began
        result.update(
            completed_workitems=len(rows),
            complete_calls_seconds=round(completed_s, 2),
            complete_all_seconds=round(complete_s, 2),
            finished_cases=finished,
            complete_rate=parked / complete_s,
        )
        log(f"waiting: completed {len(rows)} and saw {finished} finished in {complete_s:.1f}s")
        if parked < target:
            scale = target / parked
            result["extrapolated"] = {
                "label": f"EXTRAPOLATED linearly from {parked} measured cases to {target}",
                "cases": target,
                "pss_kb": result["before"]["pss_kb"] + per_case_kb * target,
                "processes": after["processes"],
                "park_seconds": park_s * scale,
                "complete_all_seconds": complete_s * scale,
            }
    finally:
        engine.close()
    return result
