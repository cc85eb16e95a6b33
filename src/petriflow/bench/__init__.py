"""petriflow-bench: measure petriflow, its floor and a peer in one run.

Every scenario runs in this process tree, one after another, and the
figures are printed as a table and written as JSON (`--out`):

  throughput  cases/s of a 3-step `noop` sequence (seq3) and of an AND split
              into 4 branches joined again (and4), "one after another"
              (start, wait, next) and "started together" (start all, then
              wait for all), on the embedded base (simpleSystemBase, the
              engine in this process) and on the daemon
  latency     submit-to-final p50/p99 of single work orders on an idle engine
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

"The daemon" is the real one: `actors.daemon.Daemon(...).serve()` (what
`petriflow start --foreground` runs: keeper, subreaper, webhook endpoint,
multiprocTCPBase on loopback) started as a child process of this one, so
that the passivation timeout can be set (the command line has no flag for
it); the bench talks to it with `Client.connect(port)` as user code does.

Figures are printed, never judged: nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.metadata
import io
import json
import os
import platform
import pstats
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import petriflow  # noqa: E402

# Where petriflow's own code lies (the checkout, for an editable install): the
# profile tells it apart from the standard library and other packages by it.
ROOT = Path(petriflow.engine.__file__).resolve().parent.parent
BENCH = [sys.executable, "-m", "petriflow.bench"]

from thespian.actors import Actor, ActorExitRequest  # noqa: E402

# petriflow is imported lazily (after argument parsing) where it is used, so
# that the DBOS child process and `--help` stay light.

BASES = ("embedded", "daemon")
SCENARIOS = ("throughput", "latency", "floor", "peer", "waiting", "recovery")
WORKLOADS = ("seq3", "and4")
MODES = ("one_after_another", "started_together")
MODE_LABEL = {"one_after_another": "one after another", "started_together": "started together"}


# -- workflows -------------------------------------------------------------------------


def _doc(id: str, places: list[str], transitions: list[dict], arcs: list[tuple[str, str]]) -> dict:
    return {
        "id": id,
        "version": 1,
        "places": [
            {"id": p, "type": "start" if i == 0 else "end" if i == len(places) - 1 else "normal"}
            for i, p in enumerate(places)
        ],
        "transitions": transitions,
        "arcs": [{"from": a, "to": b} for a, b in arcs],
    }


def seq3() -> dict:
    """start -> a -> p1 -> b -> p2 -> c -> end, every step `noop`."""
    return _doc(
        "bench-seq3",
        ["start", "p1", "p2", "end"],
        [{"id": t, "executor": "noop"} for t in ("a", "b", "c")],
        [("start", "a"), ("a", "p1"), ("p1", "b"), ("b", "p2"), ("p2", "c"), ("c", "end")],
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
    arcs = [("start", "split"), ("join", "end")]
    for i in branches:
        arcs += [("split", f"s{i}"), (f"s{i}", f"b{i}"), (f"b{i}", f"j{i}"), (f"j{i}", "join")]
    return _doc("bench-and4", places, transitions, arcs)


def manual1() -> dict:
    """start -> wait (manual) -> end: a case parked until a client completes it."""
    return _doc(
        "bench-manual", ["start", "end"], [{"id": "wait", "executor": "manual"}], [("start", "wait"), ("wait", "end")]
    )


WORKFLOWS = {"seq3": seq3, "and4": and4}
TRANSITIONS_PER_CASE = {"seq3": 3, "and4": 6}


# -- small helpers -----------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def summary(values: list[float]) -> dict[str, Any]:
    """Median and spread of repeated figures."""
    ordered = sorted(values)
    result: dict[str, Any] = {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "values": ordered,
    }
    if len(ordered) >= 4:
        q = statistics.quantiles(ordered, n=4)
        result["iqr"] = [q[0], q[2]]
    return result


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()

    try:
        return {
            "commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        }
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


# -- engines: the embedded base and the real daemon -----------------------------------------


def quiet_port(exclude: int = 0) -> int:
    """A free loopback port below the kernel's ephemeral range.

    Not `free_port()`: a port the kernel hands out for bind(0) is one that
    Thespian's actor processes (which bind ephemeral ports) can take next,
    and a restarted daemon boots its Engine, restoring many actors, before
    it binds its webhook port."""
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(20000, max(20001, low - 1))
        if port == exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


class Embedded:
    """simpleSystemBase: every actor runs in this process, inside the client's asks."""

    base = "embedded"

    def __init__(self, home: Path, idle_timeout_s: float | None = None) -> None:
        from petriflow import logs
        from petriflow.client import Client, boot_engine
        from petriflow.engine.settings import Settings
        from petriflow.system import open_actor_system

        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.storage_path = home / "petriflow.db"
        self.asys = open_actor_system("simpleSystemBase")
        logs.configure(str(home / "petriflow.log"))  # the bench is the application here
        boot_engine(self.asys, Settings(storage_url=f"sqlite:///{self.storage_path}", idle_timeout_s=idle_timeout_s))
        self.client = Client(self.asys, timeout_s=600)

    def close(self) -> None:
        from petriflow.system import close_actor_system

        close_actor_system(self.asys)


class DaemonProcess:
    """The real daemon (`actors.daemon.Daemon.serve`) as a child process of the bench."""

    base = "daemon"

    def __init__(self, home: Path, idle_timeout_s: float = 300.0, profile_dir: Path | None = None) -> None:
        from petriflow import daemon

        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.storage_path = home / "petriflow.db"
        port = quiet_port()
        self.config = daemon.DaemonConfig(
            home=str(home),
            port=port,
            http_port=quiet_port(exclude=port),
            storage_url=f"sqlite:///{self.storage_path}",
            idle_timeout_s=idle_timeout_s,
        )
        self.profile_dir = profile_dir
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self, timeout_s: float = 60.0) -> float:
        """Launch and wait until the Engine answers; returns the seconds it took."""
        from petriflow import daemon
        from petriflow.client import Client
        from petriflow.engine.errors import PetriflowError

        spec = {
            "home": self.config.home,
            "port": self.config.port,
            "http_port": self.config.http_port,
            "storage_url": self.config.storage_url,
            "idle_timeout_s": self.config.idle_timeout_s,
            "profile_dir": str(self.profile_dir) if self.profile_dir else None,
        }
        out = open(self.home / "daemon.out", "ab")
        began = time.perf_counter()
        self.proc = subprocess.Popen(
            [*BENCH, "--_serve-daemon", json.dumps(spec)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
        out.close()
        _live_daemons.append(self)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.home / "daemon.out").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"the daemon exited at start: {' / '.join(tail)}")
            if daemon.running_pid(self.config) == self.proc.pid and self.config.state_file.exists():
                try:
                    client = Client.connect(self.config.port, timeout_s=600)
                    client.ping()
                    self.client = client
                    return time.perf_counter() - began
                except (OSError, PetriflowError, TimeoutError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"the daemon did not answer within {timeout_s}s; see {self.home / 'daemon.out'}")

    @property
    def actor_sid(self) -> int | None:
        from petriflow import daemon

        return daemon.actor_sid(self.config)

    def pids(self) -> list[int]:
        """The daemon's own process and every process of its actor system."""
        from petriflow.supervision import processes

        sid = self.actor_sid
        own = [self.proc.pid] if self.proc and processes.is_alive(self.proc.pid) else []
        return own + (processes.session_pids(sid) if sid else [])

    def kill_everything(self) -> list[int]:
        """SIGKILL the daemon and every process of its actor system until none is left."""
        from petriflow import daemon

        killed = daemon.kill_all(self.proc.pid if self.proc else None, self.actor_sid)
        if self.proc:
            self.proc.wait(10)
        return sorted(set(killed))

    def close(self) -> None:
        from petriflow import daemon

        if self in _live_daemons:
            _live_daemons.remove(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            daemon.stop(self.config, timeout_s=60)
        finally:
            if self.proc.poll() is None:
                self.kill_everything()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


_live_daemons: list[DaemonProcess] = []


def open_engine(base: str, home: Path, **kwargs: Any) -> Embedded | DaemonProcess:
    return Embedded(home) if base == "embedded" else DaemonProcess(home, **kwargs)


def serve_daemon(spec_json: str) -> int:
    """Hidden mode `--_serve-daemon SPEC`: run the real daemon in the foreground.

    With `profile_dir`, every actor process (forked from this one through
    Thespian's admin, so it inherits the patch) runs under cProfile and
    writes `<pid>.prof` there when its actor exits."""
    from petriflow import daemon

    spec = json.loads(spec_json)
    if spec.get("profile_dir"):
        _profile_actor_processes(Path(spec["profile_dir"]))
    config = daemon.DaemonConfig(
        home=spec["home"],
        port=spec["port"],
        http_port=spec["http_port"],
        storage_url=spec["storage_url"],
        idle_timeout_s=spec["idle_timeout_s"],
    )
    return daemon.Daemon(config).serve()


def _profile_actor_processes(directory: Path) -> None:
    from thespian.system import multiprocCommon

    directory.mkdir(parents=True, exist_ok=True)
    original = multiprocCommon.startChild

    def startChild(*args: Any) -> None:
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            original(*args)
        finally:
            profiler.disable()
            kind = str(args[0]).rpartition(".")[-1]
            profiler.dump_stats(str(directory / f"{kind}-{os.getpid()}.prof"))

    multiprocCommon.startChild = startChild


# -- the petriflow workloads ------------------------------------------------------------------


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


# -- the floor: bare Thespian actors shaped like a case ------------------------------------------
#
# These classes live in this script's __main__: Thespian's multiproc base
# forks every actor process from its parent, so `__main__.FloorCase` resolves
# in every child.


@dataclass(frozen=True)
class FloorStart:
    shape: str  # "seq3" or "and4"
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FloorRun:
    payload: dict


@dataclass(frozen=True)
class FloorDone:
    payload: dict


@dataclass(frozen=True)
class FloorFinished:
    payload: dict


FLOOR_STAGES = {"seq3": [1, 1, 1], "and4": [1, 4, 1]}


class FloorCase(Actor):
    """Runs stages of task actors; each task runs one workitem actor."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, FloorStart):
            self.client = sender
            self.stages = list(FLOOR_STAGES[message.shape])
            self.payload = dict(message.payload)
            self._next_stage()
        elif isinstance(message, FloorDone):
            self.payload.update(message.payload)
            self.pending -= 1
            if self.pending == 0:
                self._next_stage()

    def _next_stage(self) -> None:
        if not self.stages:
            self.send(self.client, FloorFinished(self.payload))
            self.send(self.myAddress, ActorExitRequest())
            return
        self.pending = self.stages.pop(0)
        for _ in range(self.pending):
            self.send(self.createActor(FloorTask), FloorRun(dict(self.payload)))


class FloorTask(Actor):
    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, FloorRun):
            self.case = sender
            self.send(self.createActor(FloorWorkitem), message)
        elif isinstance(message, FloorDone):
            self.send(self.case, message)
            self.send(self.myAddress, ActorExitRequest())


class FloorWorkitem(Actor):
    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, FloorRun):
            self.send(sender, FloorDone(dict(message.payload)))
            self.send(self.myAddress, ActorExitRequest())


class FloorDriver:
    def __init__(self, asys: Any, shape: str) -> None:
        self.asys = asys
        self.shape = shape
        self.outstanding = 0

    def start(self, i: int) -> Any:
        case = self.asys.createActor(FloorCase)
        self.asys.tell(case, FloorStart(self.shape, {"i": i}))
        self.outstanding += 1
        return case

    def wait(self, handle: Any, timeout_s: float = 900.0) -> bool:
        """Any case's FloorFinished will do: they are counted, not matched."""
        while True:
            message = self.asys.listen(timeout_s)
            if message is None:
                raise TimeoutError(f"a floor case did not finish within {timeout_s}s")
            if isinstance(message, FloorFinished):
                self.outstanding -= 1
                return True


def scenario_floor(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from petriflow.system import close_actor_system, open_actor_system

    result: dict[str, Any] = {
        "what": "bare Thespian: 1 case actor, a task actor per transition, a workitem "
        "actor per task; every actor exits when done; no storage, no petriflow code"
    }
    for base in opts.bases:
        system_base = "simpleSystemBase" if base == "embedded" else "multiprocTCPBase"
        asys = open_actor_system(system_base)
        try:
            result[base] = {"system_base": system_base}
            for workload in WORKLOADS:
                result[base][workload] = measure_modes(lambda w: FloorDriver(asys, w), workload, opts, f"floor {base}")
        finally:
            close_actor_system(asys)
    return result


# -- the peer: DBOS Transact in a child process -------------------------------------------------


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


# -- waiting work: passivation on the daemon -----------------------------------------------------


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


# -- recovery: SIGKILL the whole daemon with cases in flight ----------------------------------------

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


# -- profile -------------------------------------------------------------------------------------


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
    if "/structlog/" in path or path.endswith("actors/logs.py"):
        return "logging (structlog)"
    if "/msgpack/" in path or path.endswith("engine/codec.py"):
        return "codec (msgpack)"
    if any(f"/{p}/" in path for p in ("engine", "actors", "supervision")) and str(ROOT) in path:
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
        group = max(parts, key=parts.get)
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
    engine = Embedded(tmp / "profile-embedded")
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
        if files:
            stats = pstats.Stats(str(files[0]), stream=io.StringIO())
            for prof in files[1:]:
                with contextlib.suppress(Exception):
                    stats.add(str(prof))
            kinds: dict[str, int] = {}
            for prof in files:
                kind = prof.name.split("-")[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            result["daemon"] = {
                "wall_ms_per_case": wall / nd * 1000,
                "profiled_processes": kinds,
                "note": "the parent side of each fork (os.fork, multiprocessing) is in the "
                "creating actor's profile; the child side (transport set-up, signal "
                "handlers) in the new actor's; the Engine's profile spans the whole "
                "daemon life (boot and warm-up included)",
                **breakdown(stats, nd),
            }
        else:
            result["daemon"] = {"error": "no actor process wrote a profile"}
    return result


# -- the table -------------------------------------------------------------------------------------


def fmt_summary(s: dict[str, Any], digits: int = 1) -> tuple[str, str]:
    return f"{s['median']:.{digits}f}", f"{s['min']:.{digits}f}..{s['max']:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    rows: list[tuple[str, ...]] = []
    header = ("scenario", "base", "workload", "mode", "n", "median", "min..max", "unit")
    thr = results.get("throughput", {})
    flo = results.get("floor", {})
    for base in BASES:
        for workload in WORKLOADS:
            for mode in MODES:
                if base in thr and workload in thr[base]:
                    data = thr[base][workload]
                    rows.append(
                        (
                            "throughput",
                            base,
                            workload,
                            MODE_LABEL[mode],
                            str(data["cases"]),
                            *fmt_summary(data[mode]),
                            "cases/s" + (" *" if data.get("reduced") else ""),
                        )
                    )
    for base in BASES:
        for workload in WORKLOADS:
            for mode in MODES:
                if base in flo and workload in flo[base]:
                    data = flo[base][workload]
                    rows.append(
                        (
                            "floor",
                            flo[base]["system_base"],
                            workload,
                            MODE_LABEL[mode],
                            str(data["cases"]),
                            *fmt_summary(data[mode]),
                            "cases/s" + (" *" if data.get("reduced") else ""),
                        )
                    )
    peer = results.get("peer")
    if peer and peer.get("available"):
        for mode in MODES:
            rows.append(
                (
                    "peer DBOS",
                    "in-process",
                    "seq3",
                    MODE_LABEL[mode],
                    str(peer["cases"]),
                    *fmt_summary(peer[mode]),
                    "cases/s",
                )
            )
    lat = results.get("latency", {})
    for base in BASES:
        if base in lat:
            for p in ("p50", "p99"):
                rows.append(
                    ("latency", base, "seq3 work order", p, str(lat["samples"]), *fmt_summary(lat[base][p]), "ms")
                )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    notes = []
    if any(r[-1].endswith("*") for r in rows):
        notes.append(
            "* fewer cases than requested, so that one run stays under the per-run cap of "
            f"{results.get('options', {}).get('max_run_s')}s: see 'reduced' in the JSON"
        )
    ratio_lines = []
    for base in BASES:
        for workload in WORKLOADS:
            if base in thr and base in flo and workload in thr[base] and workload in flo[base]:
                parts = [
                    f"{MODE_LABEL[m]} {thr[base][workload][m]['median'] / flo[base][workload][m]['median']:.2f}"
                    for m in MODES
                ]
                ratio_lines.append(f"petriflow/floor  {base:8} {workload}: " + ", ".join(parts))
    if peer:
        if peer.get("available"):
            for base, ratio in peer.get("petriflow_over_dbos", {}).items():
                ratio_lines.append(
                    f"petriflow/DBOS   {base:8} seq3: " + ", ".join(f"{MODE_LABEL[m]} {ratio[m]:.2f}" for m in MODES)
                )
        else:
            ratio_lines.append(f"peer DBOS: not measured: {peer.get('reason')}")
    waiting = results.get("waiting")
    if waiting and "after_passivation" in waiting:
        after = waiting["after_passivation"]
        ratio_lines.append(
            f"waiting: {waiting['parked_cases']} cases parked at {waiting['park_rate']:.1f}/s; after passivation "
            f"{after['processes']} processes, {after['pss_kb'] / 1024:.1f} MB PSS (before: "
            f"{waiting['before']['processes']} processes, {waiting['before']['pss_kb'] / 1024:.1f} MB; "
            f"{waiting['pss_kb_per_waiting_case']:.2f} kB per case); peak {waiting['peak_processes_while_parking']} "
            f"processes while parking; completing all took {waiting['complete_all_seconds']:.1f}s "
            f"({waiting['complete_rate']:.1f}/s), {waiting['finished_cases']} finished"
        )
        if "extrapolated" in waiting:
            x = waiting["extrapolated"]
            ratio_lines.append(
                f"waiting, {x['label']}: ~{x['pss_kb'] / 1024:.0f} MB PSS, ~{x['processes']} "
                f"processes, ~{x['park_seconds']:.0f}s to park, ~{x['complete_all_seconds']:.0f}s "
                f"to complete"
            )
    recovery = results.get("recovery") or {}
    for phase in ("live", "accepted"):
        r = recovery.get(phase)
        if not r or "recover_seconds" not in r:
            continue
        text = (
            f"recovery {phase}: {r['in_flight_at_kill']} unfinished at the SIGKILL"
            + (f" ({r['started_cases']} started in {r['submit_seconds']:.1f}s)" if phase == "live" else "")
            + f"; answering {r['restart_answer_seconds']:.1f}s after restart, all finished after "
            f"{r['recover_seconds']:.1f}s; peak {r['peak_processes']} processes / "
            f"{r['peak_pss_kb'] / 1024:.0f} MB PSS"
        )
        if "aborted" in r:
            text += f"; {r['aborted']}"
        else:
            text += (
                f"; lost {r['lost_cases']}, transitions completed twice {r['transitions_completed_twice']}, "
                f"workitems re-executed {r['workitems_reexecuted']}, ok={r['ok']}"
            )
        ratio_lines.append(text)
    return "\n".join(lines + [""] + ratio_lines + notes)


def profile_text(profile: dict[str, Any]) -> str:
    lines = []
    for where in ("embedded", "daemon"):
        data = profile.get(where)
        if not data or "groups" not in data:
            continue
        lines.append(
            f"profile {where}: {data['ms_per_case']:.2f} ms busy per case "
            f"(wall {data['wall_ms_per_case']:.2f} ms per case, {data['cases']} cases)"
        )
        for group, figures in sorted(data["groups"].items(), key=lambda kv: -kv[1]["percent"]):
            lines.append(f"  {figures['percent']:5.1f}%  {figures['ms_per_case']:7.2f} ms/case  {group}")
        lines.append("  top self time:")
        for item in data["top_self"][:10]:
            lines.append(f"    {item['percent']:5.1f}%  {item['calls_per_case']:7.1f} calls/case  {item['function']}")
        lines.append("  petriflow functions by cumulative time:")
        for item in data["top_petriflow_cumulative"][:8]:
            lines.append(
                f"    {item['cum_ms_per_case']:7.2f} ms/case  {item['calls_per_case']:6.1f} calls/case  "
                f"{item['function']}"
            )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------


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
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default all)",
    )
    parser.add_argument("--bases", default=",".join(BASES), help="embedded,daemon (default both)")
    parser.add_argument(
        "--api",
        choices=("case", "workorder"),
        default="case",
        help="throughput through Client.start_case/wait_case (default) or submit/wait_work_order",
    )
    parser.add_argument("--cases", type=int, help="cases per throughput/floor run (default 500; quick 20)")
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
            "daemon": "the real daemon: actors.daemon.Daemon(...).serve() in a child process "
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
                elif scenario == "floor":
                    results["floor"] = scenario_floor(opts, tmp)
                elif scenario == "peer":
                    results["peer"] = scenario_peer(opts, tmp, results)
                elif scenario == "waiting" and "daemon" in opts.bases:
                    results["waiting"] = scenario_waiting(opts, tmp)
                elif scenario == "recovery" and "daemon" in opts.bases:
                    results["recovery"] = scenario_recovery(opts, tmp)
                results.setdefault("scenario_seconds", {})[scenario] = round(time.perf_counter() - started, 1)
    finally:
        for engine in list(_live_daemons):
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
