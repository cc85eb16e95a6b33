"""Recovery: SIGKILL the whole daemon with cases in flight, restart it, and
check in storage that none was lost or done twice."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from petriflow.bench.engines import DaemonProcess
from petriflow.bench.environment import log
from petriflow.bench.waiting import daemon_memory, storage_rows
from petriflow.bench.workloads import seq3

UNFINISHED = "SELECT count(*) FROM cases WHERE state NOT IN ('finished', 'terminated')"


def check_storage(path: Path, case_ids: list[str]) -> dict[str, Any]:
    """None lost, none finished twice: every case finished, each transition
    completed once per case, exactly one token in the end place."""
    states = dict(storage_rows(path, "SELECT state, count(*) FROM cases GROUP BY state"))
    twice = storage_rows(
        path,
        "SELECT count(*) FROM (SELECT case_id, transition_id FROM tasks WHERE state = "
        "'completed' GROUP BY case_id, transition_id HAVING count(*) > 1)",
    )[0][0]
    short = storage_rows(
        path,
        "SELECT count(*) FROM cases c WHERE (SELECT count(DISTINCT transition_id) FROM "
        "tasks t WHERE t.case_id = c.id AND t.state = 'completed') != 3",
    )[0][0]
    ends = storage_rows(
        path,
        "SELECT count(*) FROM cases c WHERE (SELECT count(*) FROM tokens k WHERE "
        "k.case_id = c.id AND k.place_id = 'end') != 1",
    )[0][0]
    known = {row[0] for row in storage_rows(path, "SELECT id FROM cases")}
    lost = sum(1 for case_id in case_ids if case_id not in known)
    return {
        "case_states": states,
        "lost_cases": lost,
        "transitions_completed_twice": twice,
        "cases_without_3_completed_transitions": short,
        "cases_without_exactly_one_end_token": ends,
        "workitems_reexecuted": storage_rows(path, "SELECT count(*) FROM workitems WHERE attempt > 1")[0][0],
        "extra_workitem_rows": storage_rows(path, "SELECT count(*) - count(DISTINCT task_id) FROM workitems")[0][0],
        "ok": (
            lost == 0
            and twice == 0
            and short == 0
            and ends == 0
            and states.get("finished", 0) == len(case_ids) == len(known)
        ),
    }


def restart_and_wait(engine: DaemonProcess, opts: argparse.Namespace) -> dict[str, Any]:
    """Start the daemon again on the same storage; time until no case is
    unfinished. A watchdog SIGKILLs everything past the memory cap."""
    began = time.perf_counter()
    answer_s = engine.start()
    deadline = time.monotonic() + opts.recovery_timeout_s
    peak = {"processes": 0, "pss_kb": 0}
    remaining, aborted = None, None
    while time.monotonic() < deadline:
        memory = daemon_memory(engine)
        peak = {k: max(peak[k], memory[k]) for k in peak}
        if memory["pss_kb"] > opts.memory_cap_mb * 1024:
            aborted = (
                f"aborted: the daemon's PSS passed the {opts.memory_cap_mb} MB cap "
                f"({memory['processes']} processes); everything was SIGKILLed"
            )
            engine.kill_everything()
            break
        remaining = storage_rows(engine.storage_path, UNFINISHED)[0][0]
        if remaining == 0:
            break
        time.sleep(0.25)
    result = {
        "restart_answer_seconds": round(answer_s, 2),
        "recover_seconds": round(time.perf_counter() - began, 2),
        "unfinished_after": remaining,
        "peak_processes": peak["processes"],
        "peak_pss_kb": peak["pss_kb"],
    }
    if aborted:
        result["aborted"] = aborted
        log(f"recovery: {aborted}")
    return result


def scenario_recovery(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n = opts.inflight
    result: dict[str, Any] = {"target_in_flight": n, "workload": "seq3", "memory_cap_mb": opts.memory_cap_mb}
    # 1. live: cases started through the Engine, SIGKILL right after the n-th is accepted
    engine = DaemonProcess(tmp / "recovery-live")
    live: dict[str, Any] = {
        "what": "Client.start_case of n seq3 cases one after another as fast as the daemon "
        "accepts them; SIGKILL of the daemon and every process of its actor system "
        "right after the n-th is accepted; restart on the same storage; time until "
        "none is unfinished"
    }
    try:
        engine.client.put_workflow(seq3())
        began = time.perf_counter()
        case_ids = [engine.client.start_case("bench-seq3", {"i": i}) for i in range(n)]
        live["submit_seconds"] = round(time.perf_counter() - began, 2)
        at_kill = daemon_memory(engine)
        killed = engine.kill_everything()
        unfinished = storage_rows(engine.storage_path, UNFINISHED)[0][0]
        live.update(
            started_cases=n,
            processes_killed=len(killed),
            pss_kb_at_kill=at_kill["pss_kb"],
            in_flight_at_kill=unfinished,
        )
        log(
            f"recovery live: started {n} in {live['submit_seconds']:.1f}s, killed {len(killed)} processes with "
            f"{unfinished} cases unfinished; restarting"
        )
        live.update(restart_and_wait(engine, opts))
        live.update(check_storage(engine.storage_path, case_ids))
        live["recover_rate"] = unfinished / live["recover_seconds"]
        log(f"recovery live: {unfinished} recovered in {live['recover_seconds']:.1f}s, ok={live['ok']}")
    finally:
        engine.close()
    result["live"] = live
    # 2. accepted: n cases written to storage by the Engine's own calls while the
    #    daemon is down (a crash right after accepting them), then a restart
    engine = DaemonProcess(tmp / "recovery-accepted")
    accepted: dict[str, Any] = {
        "what": "n seq3 cases written to storage with the calls Engine._start_case makes "
        "(CaseRecord + genesis token, Storage.create_case) while the daemon is "
        "SIGKILLed: all n unfinished at the restart; time until none is"
        " unfinished"
    }
    try:
        engine.client.put_workflow(seq3())
        engine.kill_everything()
        from petriflow.engine.records import CaseRecord, new_id
        from petriflow.engine.routing import genesis_token
        from petriflow.storage.store import open_storage

        storage = open_storage(f"sqlite:///{engine.storage_path}")
        workflow = storage.get_workflow("bench-seq3")
        case_ids = []
        for i in range(n):
            case = CaseRecord(id=new_id(), workflow_id=workflow.id, workflow_version=workflow.version, input={"i": i})
            storage.create_case(case, [genesis_token(workflow, case.id, {"i": i})])
            case_ids.append(case.id)
        storage.close()
        accepted["in_flight_at_kill"] = storage_rows(engine.storage_path, UNFINISHED)[0][0]
        log(f"recovery accepted: {n} cases unfinished in storage; restarting")
        accepted.update(restart_and_wait(engine, opts))
        if "aborted" not in accepted:
            accepted.update(check_storage(engine.storage_path, case_ids))
            accepted["recover_rate"] = n / accepted["recover_seconds"]
        log(
            f"recovery accepted: {n} in {accepted['recover_seconds']:.1f}s, peak {accepted['peak_processes']} "
            f"processes / {accepted['peak_pss_kb'] / 1024:.0f} MB PSS, ok={accepted.get('ok')}"
        )
    finally:
        engine.close()
    result["accepted"] = accepted
    return result
