"""Prometheus metrics: what the engine did, and how fast.

Why these. A work-order engine is judged by what comes in, what comes out
and how long it took, and it fails by crashing and by slowing down:

- `petriflow_work_orders_created_total{workflow, trigger_type}` and
  `petriflow_work_orders_finished_total{workflow, state}`: inflow and
  outflow, and the rate of each final state (success, failed, crashed,
  killed, cancelled, exception, lost). A work order is counted once each
  time it reaches a final state: a retry makes it pending again, and its
  next end is counted again.
- `petriflow_step_duration_seconds{workflow, transition}`: each step (one
  workitem execution, from its `started_at`, the start of its first
  attempt, to its `finished_at`, retries and waiting for a person
  included), whatever its end (completed, failed, abandoned).
- `petriflow_actor_restarts_total{kind}` and `petriflow_actor_give_ups_total{kind}`:
  crashes the supervisors repaired, and those past the restart intensity
  (`kind`: work_order, case, task, workitem, node; engine for the daemon's
  keeper restarting the Engine). A node is never given up on: past its
  intensity it is started again after a back-off, a restart like any other.
- `petriflow_live_actors{kind}`: entity actors alive now (work_order, case,
  task, workitem, node), up when one starts (or is restored), down when it
  exits, passivates or crashes: leaks and passivation at work show here.
- `petriflow_ingress_queue_depth`: requests the HTTP side holds for the
  Engine (set by the HTTP server).
- `petriflow_storage_commit_seconds{backend}`: each COMMIT of a write
  transaction or of a node's turn (`sqlite`, `memory`): the fsync a turn
  pays for, the first place a slow disk shows.
- `petriflow_storage_unavailable{part}` and
  `petriflow_storage_outages_total{part, code}`: a part (`engine`, a
  node id) waiting out a storage outage now (1), and the outages each
  began (`code`: storage_unavailable, storage_full). Work pauses then
  rather than fails, so this is where a full or stuck disk shows.

Counts of state changes are taken once storage committed them: inside a
node they wait for the turn's commit (`outbox.after_commit`), so a turn
rolled back counts nothing. A node killed between its commit and the
release of its outbox loses the counts of that turn, as it loses its
answers: the counters are at most once, storage is exactly once.

Embedded, the metrics live in prometheus_client's default registry of
your process; petriflow never starts a server or configures anything:
serve `prometheus_client.REGISTRY` as you like (`start_http_server`, your
own app), or call `exposition()`.

The daemon is several processes (the keeper, the Engine, N nodes, all
forked from the keeper), so it uses prometheus_client's multiprocess mode:
the keeper calls `use_directory(<home>/metrics)` first thing, which sets
`PROMETHEUS_MULTIPROC_DIR`. prometheus_client chooses where values live
when it is imported (`prometheus_client.values` reads the variable then),
so this module imports it only when a metric is first recorded or
rendered, and `use_directory` refuses to run once it was imported without
the variable. Every process then keeps its values in its own memory-mapped
files in the directory (`counter_<pid>.db`, `histogram_<pid>.db`,
`gauge_livesum_<pid>.db`); a forked child starts files of its own at its
first write. `exposition()`, in the keeper, merges every file: counters
and histograms of processes that died still count (a node's work does not
vanish with it), while the `livesum` gauges of dead processes are dropped
first (`mark_process_dead`), so a SIGKILLed node's live actors leave the
sum with it.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

ENV = "PROMETHEUS_MULTIPROC_DIR"
"""The variable prometheus_client's multiprocess mode reads at import."""

KINDS = ("work_order", "case", "task", "workitem", "node", "engine")
"""The `kind` label's values: entity actors, nodes and the Engine."""

STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
"""1 ms (an echo step) to an hour (a person completing a manual step)."""

COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""100 µs (a WAL append without fsync) to 5 s (a disk in trouble)."""


class Metrics:
    """The metric objects of this process, made once, at first use."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.work_orders_created: Counter = Counter(
            "petriflow_work_orders_created",
            "Work orders created, by workflow and trigger type",
            ["workflow", "trigger_type"],
        )
        self.work_orders_finished: Counter = Counter(
            "petriflow_work_orders_finished",
            "Work orders that reached a final state, by workflow and that state (again after a retry ends)",
            ["workflow", "state"],
        )
        self.step_duration: Histogram = Histogram(
            "petriflow_step_duration_seconds",
            "Steps (workitem executions) from started_at to finished_at, by workflow and transition",
            ["workflow", "transition"],
            buckets=STEP_BUCKETS,
        )
        self.actor_restarts: Counter = Counter(
            "petriflow_actor_restarts", "Actors restarted by their supervisor after a crash, by kind", ["kind"]
        )
        self.actor_give_ups: Counter = Counter(
            "petriflow_actor_give_ups",
            "Actors their supervisor gave up on past the restart intensity, by kind",
            ["kind"],
        )
        self.live_actors: Gauge = Gauge(
            "petriflow_live_actors", "Entity actors and nodes alive now, by kind", ["kind"], multiprocess_mode="livesum"
        )
        # livesum: one process (the keeper) sets it, so the sum is its value, with no pid label that would
        # start a new series at every daemon start; it leaves with the process, and would add up the queues
        # of several HTTP processes if there ever were more than one
        self.ingress_queue_depth: Gauge = Gauge(
            "petriflow_ingress_queue_depth",
            "HTTP requests waiting for the Engine",
            multiprocess_mode="livesum",
        )
        self.storage_unavailable: Gauge = Gauge(
            "petriflow_storage_unavailable",
            "1 while a part (engine or node) waits out a storage outage",
            ["part"],
            multiprocess_mode="livesum",
        )
        self.timers_waiting: Gauge = Gauge(  # the Engine sets both on its once-a-second scan
            "petriflow_timers_waiting", "Timers waiting for their deadline", multiprocess_mode="livesum"
        )
        self.runs_waiting_for_slot: Gauge = Gauge(
            "petriflow_runs_waiting_for_slot",
            "Available runs a workflow's concurrency holds back, by workflow",
            ["workflow"],
            multiprocess_mode="livesum",
        )
        self.storage_outages: Counter = Counter(
            "petriflow_storage_outages", "Storage outages a part began to wait out, by part and code", ["part", "code"]
        )
        self.storage_commit: Histogram = Histogram(
            "petriflow_storage_commit_seconds",
            "Time of each COMMIT of a write transaction or a node's turn, by storage backend",
            ["backend"],
            buckets=COMMIT_BUCKETS,
        )


_metrics: Metrics | None = None
_making = threading.Lock()
_commit_observers: dict[str, Any] = {}
_failed = False
_fork_armed = False


def get() -> Metrics:
    """This process's metrics (importing prometheus_client the first time)."""
    global _metrics
    if _metrics is None:
        with _making:
            if _metrics is None:
                _forget_own_pid_at_fork()
                _metrics = Metrics()
    return _metrics


def _broken(exc: Exception) -> None:
    """A metric that cannot be written (its directory removed under a
    running daemon, say) never stops the engine: one warning per process."""
    global _failed
    if not _failed:
        _failed = True
        import structlog

        structlog.get_logger("petriflow.metrics").warning("metrics_failed", error=f"{type(exc).__name__}: {exc}")


# -- recording (the engine's side) ----------------------------------------------------------


def _record(change: Callable[[Metrics], None]) -> None:
    """Apply `change` to this process's metrics; a failure is `_broken`'s."""
    try:
        change(get())
    except Exception as exc:
        _broken(exc)


def work_order_created(workflow: str, trigger_type: str) -> None:
    _record(lambda m: m.work_orders_created.labels(workflow, trigger_type).inc())


def work_order_finished(workflow: str, state: str) -> None:
    _record(lambda m: m.work_orders_finished.labels(workflow, state).inc())


def step_finished(workflow: str, transition: str, seconds: float) -> None:
    _record(lambda m: m.step_duration.labels(workflow, transition).observe(max(0.0, seconds)))


def count_restart(kind: str) -> None:
    """An actor of `kind` restarted after a crash; the keeper calls
    `count_restart("engine")` when it boots a dead Engine again."""
    _record(lambda m: m.actor_restarts.labels(kind).inc())


def count_give_up(kind: str) -> None:
    _record(lambda m: m.actor_give_ups.labels(kind).inc())


def actor_started(kind: str) -> None:
    _record(lambda m: m.live_actors.labels(kind).inc())


def actor_exited(kind: str) -> None:
    _record(lambda m: m.live_actors.labels(kind).dec())


def set_ingress_queue_depth(depth: float) -> None:
    """For the HTTP server: how many requests wait for the Engine now."""
    _record(lambda m: m.ingress_queue_depth.set(depth))


def set_waiting(timers: int, runs_by_workflow: dict[str, int]) -> None:
    """For the Engine's scan: timers not yet due, and runs waiting for a concurrency slot."""

    def change(m: Metrics) -> None:
        m.timers_waiting.set(timers)
        for workflow, runs in runs_by_workflow.items():
            m.runs_waiting_for_slot.labels(workflow).set(runs)

    _record(change)


def storage_down(part: str, code: str) -> None:
    """`part` began waiting out a storage outage."""

    def change(m: Metrics) -> None:
        m.storage_outages.labels(part, code).inc()
        m.storage_unavailable.labels(part).set(1)

    _record(change)


def storage_up(part: str) -> None:
    _record(lambda m: m.storage_unavailable.labels(part).set(0))


def observe_commit(backend: str, seconds: float) -> None:
    """One COMMIT took `seconds`; on every write transaction's path, so the
    labelled child is looked up once per backend and process."""
    try:
        observe = _commit_observers.get(backend)
        if observe is None:
            observe = _commit_observers[backend] = get().storage_commit.labels(backend).observe
        observe(seconds)
    except Exception as exc:
        _broken(exc)


# -- multiprocess mode and the scrape (the daemon's side) -----------------------------------


def use_directory(path: str | os.PathLike[str]) -> None:
    """Put every process started from now on from this one in multiprocess
    mode, with its files in `path`: created if missing, emptied of the
    files of an earlier run (`*.db`), and named in `PROMETHEUS_MULTIPROC_DIR`.

    Call it before prometheus_client is first imported in this process
    (petriflow imports it only when a metric is first recorded) and before
    the actor system is opened, so every forked process inherits it. A
    RuntimeError says so if it was imported already without the variable;
    called again with the same directory, it leaves everything as it is."""
    directory = os.path.abspath(os.fspath(path))
    if "prometheus_client" in sys.modules:
        from prometheus_client import values

        current = os.environ.get(ENV)
        if values.ValueClass._multiprocess and current and os.path.abspath(current) == directory:
            os.makedirs(directory, exist_ok=True)
            return
        raise RuntimeError(
            "petriflow.metrics.use_directory must run before prometheus_client is imported: this process "
            f"imported it already ({ENV}={current!r}), so its metrics would not reach {directory}; "
            "call use_directory first thing at start, and import prometheus_client lazily"
        )
    os.makedirs(directory, exist_ok=True)
    for file in glob.glob(os.path.join(directory, "*.db")):
        os.remove(file)
    os.environ[ENV] = directory
    _forget_own_pid_at_fork()


def multiprocess_directory() -> str | None:
    """The directory of multiprocess mode if this process's metrics are in
    it, else None (embedded: the default registry)."""
    if "prometheus_client" not in sys.modules and not os.environ.get(ENV):
        return None
    from prometheus_client import values

    return os.environ.get(ENV) if values.ValueClass._multiprocess else None


_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db$")


def record_process_death(pid: int) -> None:
    """Drop the live gauges of a process known to be gone (`exposition`
    also finds them by itself)."""
    directory = multiprocess_directory()
    if directory is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)


def _forget_dead(directory: str) -> None:
    from prometheus_client import multiprocess

    from petriflow.supervision.processes import is_alive

    pids = {int(m.group(1)) for f in os.listdir(directory) if (m := _LIVE_FILE.match(f))}
    for pid in pids - {os.getpid()}:
        if not is_alive(pid):
            multiprocess.mark_process_dead(pid, directory)


def _forget_own_pid_at_fork() -> None:
    """A forked child whose pid was a dead process's must not take up that
    process's live gauges: prometheus_client would read its file back."""
    global _fork_armed
    if _fork_armed or not os.environ.get(ENV):
        return
    _fork_armed = True

    def forget() -> None:
        directory = os.environ.get(ENV)
        if directory:
            for file in glob.glob(os.path.join(directory, f"gauge_live*_{os.getpid()}.db")):
                try:
                    os.remove(file)
                except OSError:
                    pass

    os.register_at_fork(after_in_child=forget)


def exposition(accept: str = "") -> tuple[bytes, str]:
    """The body and content type of a scrape (`GET /metrics`): the text
    format (`text/plain; version=0.0.4`), or OpenMetrics if the request's
    `Accept` header, passed as `accept`, asks for it. In multiprocess mode,
    the merge of every process's files, after dropping the live gauges of
    processes gone; else this process's default registry."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
    from prometheus_client.exposition import choose_encoder

    get()  # every metric is listed, recorded yet or not
    encode, content_type = choose_encoder(accept)
    directory = multiprocess_directory()
    if directory is None:
        return encode(REGISTRY), content_type
    _forget_dead(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    return encode(registry), content_type
