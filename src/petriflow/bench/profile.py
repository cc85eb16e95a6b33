"""Where the time goes: cProfile of the engine and its actor processes,
grouped into storage, messaging, logging, codec and engine."""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from petriflow.bench.engines import DaemonProcess, Embedded
from petriflow.bench.environment import ROOT
from petriflow.bench.workloads import PetriflowDriver, run_batch, seq3

GROUPS = (
    "actor process creation",
    "messaging (thespian)",
    "storage (sqlite3/storage)",
    "engine Python (engine/actors/supervision)",
    "logging (structlog)",
    "codec (msgpack)",
    "other",
)


IDLE = "idle (select/poll/sleep: waiting, not cost)"


def classify(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    path = filename.replace("\\", "/")
    if filename == "~":
        if any(
            w in name
            for w in (
                "select.select",
                "'poll' of",
                "'select' of",
                "'epoll",
                "time.sleep",
                "'acquire' of '_thread.lock'",
                "'wait' of",
            )
        ):
            return IDLE
        if (
            "posix.fork" in name
            or "posix.waitpid" in name
            or "_posixsubprocess" in name
            or "_signal" in name
            or "posix.close" in name
            or "setsid" in name
        ):
            return "actor process creation"
        if "sqlite3" in name:
            return "storage (sqlite3/storage)"
        if "_socket" in name or "_pickle" in name or "select." in name:
            return "messaging (thespian)"
        if "msgpack" in name:
            return "codec (msgpack)"
        return "other"
    if (
        "/multiprocessing/" in path
        or path.endswith("thespian/system/multiprocCommon.py")
        or path.endswith("/signal.py")
        or path.endswith("supervision/lifeline.py")
    ):
        return "actor process creation"
    if "/thespian/" in path or path.endswith(("/socket.py", "/selectors.py", "/pickle.py", "/copyreg.py")):
        return "messaging (thespian)"
    if "/storage/" in path or "/sqlite3/" in path:
        return "storage (sqlite3/storage)"
    if "/structlog/" in path or path.endswith("petriflow/logs.py"):
        return "logging (structlog)"
    if "/msgpack/" in path or path.endswith("engine/codec.py"):
        return "codec (msgpack)"
    if any(f"/{p}/" in path for p in ("engine", "actors", "supervision", "workorders")) and str(ROOT) in path:
        return "engine Python (engine/actors/supervision)"
    return "other"


def attribute(stats: pstats.Stats) -> Callable[[tuple[str, int, str]], dict[str, float]]:
    """The groups a function's self time belongs to. A function of no group
    of its own (a builtin such as isinstance, the stdlib) takes its callers'
    groups, in proportion to the time spent in it from each caller."""
    table_ = stats.stats  # type: ignore[attr-defined]
    memo: dict[tuple[str, int, str], dict[str, float]] = {}

    def share(func: tuple[str, int, str], seen: frozenset = frozenset()) -> dict[str, float]:
        if func in memo:
            return memo[func]
        own = classify(func)
        if own != "other" or func not in table_ or func in seen or len(seen) > 12:
            result = {own: 1.0}
        else:
            callers = table_[func][4]
            weights = {caller: timing[2] for caller, timing in callers.items()} if callers else {}
            total = sum(weights.values())
            if total <= 0:
                result = {"other": 1.0}
            else:
                result = {}
                for caller, weight in weights.items():
                    for group, part in share(caller, seen | {func}).items():
                        result[group] = result.get(group, 0.0) + part * weight / total
        if not seen:
            memo[func] = result
        return result

    return share


def breakdown(stats: pstats.Stats, cases: int, top: int = 15) -> dict[str, Any]:
    groups = {g: 0.0 for g in (*GROUPS, IDLE)}
    functions = []
    share = attribute(stats)
    for func, (_cc, nc, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        parts = share(func)
        for group, part in parts.items():
            groups[group] += tottime * part
        group = max(parts, key=lambda g: parts[g])
        functions.append((tottime, cumtime, nc, func, group))
    busy = sum(v for g, v in groups.items() if g != IDLE)
    functions.sort(key=lambda f: f[0], reverse=True)
    ours = sorted((f for f in functions if str(ROOT) in f[3][0]), key=lambda f: f[1], reverse=True)

    def name(func: tuple[str, int, str]) -> str:
        filename, line, fn = func
        if filename == "~":
            return fn
        short = filename.replace(str(ROOT) + "/", "")
        if "site-packages/" in short:
            short = short.split("site-packages/", 1)[1]
        elif "/lib/python" in short:
            short = "stdlib/" + short.split("/lib/python", 1)[1].split("/", 1)[1]
        return f"{short}:{line}({fn})"

    return {
        "cases": cases,
        "busy_seconds": busy,
        "ms_per_case": busy / cases * 1000,
        "idle_seconds": groups[IDLE],
        "groups": {
            g: {"ms_per_case": groups[g] / cases * 1000, "percent": 100 * groups[g] / busy if busy else 0}
            for g in GROUPS
        },
        "top_self": [
            {
                "function": name(f),
                "group": g,
                "self_ms_per_case": t / cases * 1000,
                "calls_per_case": nc / cases,
                "percent": 100 * t / busy if busy else 0,
            }
            for t, _, nc, f, g in functions
            if g != IDLE
        ][:top],
        "top_petriflow_cumulative": [
            {"function": name(f), "cum_ms_per_case": c / cases * 1000, "calls_per_case": nc / cases}
            for _, c, nc, f, _g in ours[:top]
        ],
    }


def run_profile(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {
        "workload": "seq3",
        "api": opts.api,
        "note": "cProfile self time (tottime) grouped by module; a builtin or stdlib "
        "function counts for the groups of its callers; percentages of the busy "
        "time per case (time blocked in select/poll/sleep left out); cProfile "
        "inflates Python-heavy code more than C calls (sqlite3, fork)",
    }
    n = opts.profile_cases
    # 1. the embedded base: everything in this process
    engine: Embedded | DaemonProcess = Embedded(tmp / "profile-embedded")
    try:
        engine.client.put_workflow(seq3())
        driver = PetriflowDriver(engine.client, "bench-seq3", opts.api)
        run_batch(driver, opts.warmup, "one_after_another")
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        run_batch(driver, n, "one_after_another")
        profiler.disable()
        wall = time.perf_counter() - began
        stats = pstats.Stats(profiler, stream=io.StringIO())
        result["embedded"] = {"wall_ms_per_case": wall / n * 1000, **breakdown(stats, n)}
    finally:
        engine.close()
    # 2. the daemon: every actor process under cProfile, summed
    if "daemon" in opts.bases:
        directory = tmp / "profile-daemon-stats"
        engine = DaemonProcess(tmp / "profile-daemon", profile_dir=directory)
        try:
            engine.client.put_workflow(seq3())
            driver = PetriflowDriver(engine.client, "bench-seq3", opts.api)
            run_batch(driver, opts.warmup, "one_after_another")
            time.sleep(1.0)
            for prof in directory.glob("*.prof"):  # warm-up actors: not counted
                prof.unlink()
            nd = max(10, n // 4)
            began = time.perf_counter()
            run_batch(driver, nd, "one_after_another")
            wall = time.perf_counter() - began
            time.sleep(1.0)
        finally:
            engine.close()  # the Engine writes its profile as it exits
        files = sorted(directory.glob("*.prof"))
        stats = pstats.Stats(stream=io.StringIO())
        for prof in list(files):
            try:
                stats.add(str(prof))
            except (EOFError, ValueError, TypeError):  # a process killed as it wrote its profile
                files.remove(prof)
        if files:
            kinds: dict[str, int] = {}
            for prof in files:
                kind = prof.name.split("-")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            result["daemon"] = {
                "wall_ms_per_case": wall / nd * 1000,
                "profiled_processes": kinds,
                "note": "the parent side of each fork (os.fork, multiprocessing) is in the "
                "creating actor's profile; the child side (transport set-up, signal "
                "handlers) in the new actor's; the Engine's and the nodes' profiles "
                "span the whole daemon life (boot and warm-up included)",
                **breakdown(stats, nd),
            }
        else:
            result["daemon"] = {"error": "no actor process wrote a profile"}
    return result
