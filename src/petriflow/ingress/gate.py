"""The door between HTTP requests and the Engine: a bounded queue and the
worker threads that carry its requests.

The Engine is one actor: it takes requests one at a time, and a hung one
takes none. So requests wait here, in a queue of fixed size, and a few
workers carry them to the Engine, each over a connection of its own
(Thespian's actor-system connections are not thread-safe). When the queue
is full, or the keeper knows the Engine is not answering, a request is
refused at once with `Refused`, which the server answers with 503 and
`Retry-After`: back-pressure instead of a dropped connection or a 30 s
wait. A request that waited in the queue past `answer_timeout_s` is
refused without ever reaching the Engine, so a sender can safely retry it.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from petriflow import metrics
from petriflow.client import Client, EngineTimeout

log = structlog.get_logger("petriflow.ingress")


class Link(Protocol):
    """One worker's connection to the Engine: what the HTTP side asks of it.
    Each method raises the petriflow error the Engine answered."""

    def submit(self, trigger_id: str, body: dict[str, Any], auth: dict[str, Any]) -> str:
        """A webhook's work order, checked against the trigger's `auth` as
        the server verified it; answers the work order's id."""

    def work_order(self, work_order_id: str) -> dict[str, Any]:
        """A work order in the `show --json` shape."""

    def trigger_auth(self, trigger_id: str) -> dict[str, Any]:
        """The `auth` of an active webhook trigger, as in its document."""

    @property
    def client(self) -> Client:
        """The link's client, for the console's pages and actions: the CLI's requests."""

    def close(self) -> None: ...


class Refused(Exception):
    """The engine cannot take the request now; try again after `retry_after_s`.
    `code` is stable: `ingress_full`, `engine_unavailable`, `engine_timeout`."""

    def __init__(self, code: str, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.code, self.message, self.retry_after_s = code, message, retry_after_s


@dataclass
class _Job:
    call: Callable[[Any], Any]
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)
    queued_at: float = field(default_factory=time.monotonic)


_STOP = object()


class EngineGate:
    """`call(fn)` runs `fn(link)` on a worker with its own link to the Engine
    and returns a future; `fn` may raise what the Engine answered."""

    def __init__(
        self,
        connect: Callable[[], Link],
        *,
        size: int = 1024,
        workers: int = 4,
        answer_timeout_s: float = 5.0,
    ) -> None:
        if size < 1:
            raise ValueError(f"the ingress queue needs room for at least 1 request, not {size}")
        self.size = size
        self.answer_timeout_s = answer_timeout_s
        self._connect = connect
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=size)
        self._workers = [
            threading.Thread(target=self._work, name=f"petriflow-ingress-{n}", daemon=True) for n in range(workers)
        ]
        self._generation = 0  # bumped when the Engine was replaced: links are made anew
        self._down: str | None = None  # why the Engine is known not to answer
        self._in_flight = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        """Refuse what is still queued, and end the workers."""
        self.engine_down("the daemon is stopping")
        for _ in self._workers:
            self._queue.put(_STOP)
        for worker in self._workers:
            worker.join(self.answer_timeout_s + 1)

    @property
    def down(self) -> str | None:
        """Why requests are refused at once now; None while they are taken."""
        return self._down

    @property
    def depth(self) -> int:
        """Requests queued or in the Engine's hands."""
        return self._queue.qsize() + self._in_flight

    def call(self, fn: Callable[[Any], Any]) -> concurrent.futures.Future:
        down = self._down
        if down is not None:
            raise Refused("engine_unavailable", f"the engine does not answer: {down}", 5)
        job = _Job(fn)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Refused(
                "ingress_full", f"{self.size} requests already wait for the engine; try again shortly", 1
            ) from None
        metrics.set_ingress_queue_depth(self.depth)
        return job.future

    # -- what the keeper tells it --------------------------------------------------------

    def engine_down(self, reason: str) -> None:
        """The Engine stopped answering: refuse new requests at once, and those
        queued too (none of them reached it)."""
        if self._down is None:
            log.warning("ingress_refusing", reason=reason)
        self._down = reason
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                self._queue.put(_STOP)
                break
            if job.future.set_running_or_notify_cancel():
                job.future.set_exception(Refused("engine_unavailable", f"the engine does not answer: {reason}", 5))
        metrics.set_ingress_queue_depth(self.depth)

    def engine_up(self) -> None:
        if self._down is not None:
            log.info("ingress_accepting")
        self._down = None

    def engine_replaced(self) -> None:
        """A new Engine: every worker connects anew before its next request."""
        with self._lock:
            self._generation += 1

    # -- the workers -----------------------------------------------------------------

    def _work(self) -> None:
        link: Link | None = None
        generation = -1
        while True:
            job = self._queue.get()
            if job is _STOP:
                break
            if not job.future.set_running_or_notify_cancel():
                continue  # its client went away while it waited
            waited = time.monotonic() - job.queued_at
            if waited > self.answer_timeout_s:
                job.future.set_exception(
                    Refused("engine_timeout", f"the request waited {waited:.1f}s for the engine and was not sent", 5)
                )
                continue
            with self._lock:
                self._in_flight += 1
                current = self._generation
            try:
                if link is None or generation != current:
                    if link is not None:
                        link.close()
                    link, generation = self._connect(), current
                job.future.set_result(job.call(link))
            except EngineTimeout:
                # a late answer would be read as the next request's: this link is spent
                if link is not None:
                    link.close()
                link = None
                job.future.set_exception(
                    Refused(
                        "engine_timeout",
                        f"the engine did not answer within {self.answer_timeout_s}s; the request may still take effect",
                        5,
                    )
                )
            except BaseException as exc:
                job.future.set_exception(exc)
            finally:
                with self._lock:
                    self._in_flight -= 1
                metrics.set_ingress_queue_depth(self.depth)
        if link is not None:
            link.close()
