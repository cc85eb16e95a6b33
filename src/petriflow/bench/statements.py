"""SQL statements and commits per step (one transition executed), counted on the embedded base.

On simpleSystemBase the engine, its nodes and every actor run in the bench's
process, so a trace callback on each SQLite connection opened there sees
every statement petriflow runs. The connections are caught where they are
made: `sqlite3.connect` is wrapped while the scenario's engine lives (the
storage layer calls it as `sqlite3.connect`), and restored afterwards.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from petriflow.bench.engines import Embedded
from petriflow.bench.environment import log
from petriflow.bench.workloads import (
    MODE_LABEL,
    MODES,
    TRANSITIONS_PER_CASE,
    WORKFLOWS,
    WORKLOADS,
    PetriflowDriver,
    run_batch,
)

MAX_CASES = 200
"""Cases per counted run at most: the counts per step settle long before."""


KINDS = ("SELECT", "INSERT", "UPDATE", "DELETE", "BEGIN", "COMMIT", "ROLLBACK", "other")


PER_STEP_KEYS = {
    "SELECT": "selects",
    "INSERT": "inserts",
    "UPDATE": "updates",
    "DELETE": "deletes",
    "BEGIN": "begins",
    "COMMIT": "commits",
    "ROLLBACK": "rollbacks",
    "other": "other",
}


_TABLE_AFTER = {
    "SELECT": re.compile(r"\bFROM\s+(\"[^\"]+\"|\w+)", re.IGNORECASE),
    "DELETE": re.compile(r"\bFROM\s+(\"[^\"]+\"|\w+)", re.IGNORECASE),
    "INSERT": re.compile(r"\bINTO\s+(\"[^\"]+\"|\w+)", re.IGNORECASE),
    "UPDATE": re.compile(r"^\s*UPDATE\s+(?:OR\s+\w+\s+)?(\"[^\"]+\"|\w+)", re.IGNORECASE),
}


def classify_statement(sql: str) -> tuple[str, str | None]:
    """The statement's kind (one of KINDS) and, for SELECT/INSERT/UPDATE/DELETE, its (first) table."""
    head = sql.lstrip().split(None, 1)
    word = head[0].upper() if head else ""
    kind = {"REPLACE": "INSERT", "END": "COMMIT"}.get(word, word)
    if kind not in KINDS:
        return "other", None
    pattern = _TABLE_AFTER.get(kind)
    if pattern is None:
        return kind, None
    match = pattern.search(sql)
    return kind, (match.group(1).strip('"') if match else None)


class StatementCounter:
    """Counts the statements of every connection `sqlite3.connect` opens while `installed`."""

    def __init__(self) -> None:
        self.kinds: collections.Counter[str] = collections.Counter()
        self.tables: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.connections = 0
        self._lock = threading.Lock()

    def trace(self, sql: str) -> None:
        kind, table = classify_statement(sql)
        with self._lock:
            self.kinds[kind] += 1
            if table is not None:
                self.tables[kind][table] += 1

    def reset(self) -> None:
        with self._lock:
            self.kinds.clear()
            self.tables.clear()

    def snapshot(self) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
        with self._lock:
            return dict(self.kinds), {kind: dict(counts) for kind, counts in self.tables.items()}

    @contextlib.contextmanager
    def installed(self) -> Iterator[StatementCounter]:
        original = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = original(*args, **kwargs)
            conn.set_trace_callback(self.trace)
            with self._lock:
                self.connections += 1
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]
        try:
            yield self
        finally:
            sqlite3.connect = original


def per(counts: dict[str, int], units: int) -> dict[str, float]:
    """Statements in all and by kind, divided by `units` (steps or cases)."""
    out = {"statements": round(sum(counts.values()) / units, 3)}
    for kind in KINDS:
        out[PER_STEP_KEYS[kind]] = round(counts.get(kind, 0) / units, 3)
    return out


def count_run(counter: StatementCounter, driver: PetriflowDriver, workload: str, n: int, mode: str) -> dict[str, Any]:
    """One batch of n cases with the counter reset before it; the counts per step and per case."""
    counter.reset()
    batch = run_batch(driver, n, mode)
    kinds, tables = counter.snapshot()
    steps = n * TRANSITIONS_PER_CASE[workload]
    return {
        "cases": n,
        "steps": steps,
        "finished_ok": batch["finished_ok"],
        "seconds": batch["seconds"],
        "statements": sum(kinds.values()),
        "by_kind": {kind: kinds.get(kind, 0) for kind in KINDS},
        "per_step": per(kinds, steps),
        "per_case": per(kinds, n),
        "per_step_by_table": {
            kind: {
                table: round(count / steps, 3) for table, count in sorted(tables[kind].items(), key=lambda kv: -kv[1])
            }
            for kind in ("SELECT", "INSERT", "UPDATE", "DELETE")
            if kind in tables
        },
    }


def scenario_statements(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    n = min(opts.cases, MAX_CASES)
    result: dict[str, Any] = {
        "base": "embedded",
        "api": opts.api,
        "cases": n,
        "requested_cases": opts.cases,
        "what": "SQL statements seen by a trace callback on every SQLite connection the embedded engine "
        "opens (simpleSystemBase: engine, nodes and actors in the bench's process), per step (one "
        f"transition executed: {', '.join(f'{w} {TRANSITIONS_PER_CASE[w]}' for w in WORKLOADS)} per case) "
        "and per case, after a warm-up; the client's own reads (waits) included; one run per mode",
    }
    if n < opts.cases:
        result["capped"] = f"{n} of the {opts.cases} cases asked for: the counts per step settle long before"
    counter = StatementCounter()
    with counter.installed():
        engine = Embedded(tmp / "statements-embedded")
        try:
            if counter.connections == 0:
                raise RuntimeError(
                    "no SQLite connection was opened through sqlite3.connect while the embedded engine "
                    "booted: the storage layer opens them some other way now, so nothing would be counted"
                )
            for make in WORKFLOWS.values():
                engine.client.put_workflow(make())
            for workload in WORKLOADS:
                driver = PetriflowDriver(engine.client, WORKFLOWS[workload]()["id"], opts.api)
                run_batch(driver, opts.warmup, "one_after_another")
                per_workload: dict[str, Any] = {"transitions_per_case": TRANSITIONS_PER_CASE[workload]}
                for mode in MODES:
                    run = per_workload[mode] = count_run(counter, driver, workload, n, mode)
                    log(
                        f"statements {workload} {MODE_LABEL[mode]}: {run['per_step']['statements']:.1f} statements "
                        f"and {run['per_step']['commits']:.2f} commits per step ({n} cases, "
                        f"{run['finished_ok']} ok)"
                    )
                result[workload] = per_workload
        finally:
            engine.close()
    result["connections_traced"] = counter.connections
    return result
