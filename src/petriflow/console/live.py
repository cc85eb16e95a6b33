"""A run's marking, live: server-sent events while the run moves.

The stream asks the Engine for the run's case a few times a second, and
sends a `marking` event only when something changed: the tokens in each
place, the state of each transition, the run's state and its steps'. When
the run is final it sends `end` and closes, so the browser's EventSource
does not reconnect. An Engine that refuses for a moment (a restart, a
full ingress queue) only delays the next event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from petriflow.client import Client
from petriflow.console.net import Marking, marking_from_case, marking_json
from petriflow.engine.errors import NotFound, PetriflowError
from petriflow.engine.states import FINAL_RUN_STATES
from petriflow.engine.wire import RunView, WorkOrderView
from petriflow.engine.workflow import Workflow
from petriflow.ingress.gate import Refused

POLL_S = 0.25
MAX_STREAMS = 32
"""Live pages open at once. Each asks the Engine four times a second through
the webhooks' queue, so a few hundred forgotten tabs would crowd out the
webhooks; one more is refused `503 console_streams_full` with Retry-After,
and its page tries again."""
RETRY_STREAM_S = 5
KEEPALIVE_S = 15.0
"""A comment line this often keeps proxies from closing a quiet stream."""


def marking(client: Client, run: RunView, workflow: Workflow) -> Marking:
    """Where the run's tokens are now; a run not started yet has no case."""
    try:
        return marking_from_case(client.get_case(run.run.case_id), workflow)
    except NotFound:
        return Marking()


def run_of(view: WorkOrderView, run_id: str) -> RunView:
    for run in view.runs:
        if run.run.id == run_id:
            return run
    raise NotFound(f"work order {view.work_order.id} has no run {run_id}")


def snapshot(client: Client, work_order_id: str, run_id: str, workflow: Workflow) -> dict[str, Any]:
    """What one event says: the marking, the run's state and its steps' states."""
    return snapshot_of(client, run_of(client.get_work_order(work_order_id), run_id), workflow)


def snapshot_of(client: Client, run: RunView, workflow: Workflow) -> dict[str, Any]:
    """The event for a run just read; only its marking is asked for."""
    return {
        **marking_json(marking(client, run, workflow)),
        "run_state": run.run.state.value,
        "final": run.run.state in FINAL_RUN_STATES,
        "steps": {s.step_id: s.state for s in run.steps},
    }


async def stream(
    request: web.Request,
    engine: Callable[[Callable[[Any], Any]], Awaitable[Any]],
    work_order_id: str,
    run_id: str,
    workflow: Workflow,
    first: dict[str, Any],
) -> web.StreamResponse:
    """`workflow`: the run's version, which draws the picture being updated;
    `first`: its snapshot, read before the stream starts, so an unknown run
    is a 404 page."""

    def read(link: Any) -> dict[str, Any]:
        return snapshot(link.client, work_order_id, run_id, workflow)

    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    sent: dict[str, Any] | None = None
    quiet = 0.0
    current = first
    try:
        while True:
            if current != sent:
                await response.write(_event("marking", current))
                sent, quiet = current, 0.0
            if current["final"]:
                await response.write(_event("end", {"run_state": current["run_state"]}))
                break
            if quiet >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet = 0.0
            await asyncio.sleep(POLL_S)
            quiet += POLL_S
            if request.transport is None or request.transport.is_closing():
                break  # the page was closed: ask the Engine nothing more for it
            try:
                current = await engine(read)
            except (Refused, PetriflowError):
                await asyncio.sleep(1.0)
                quiet += 1.0
    except ConnectionResetError:
        pass  # the page was closed
    return response


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
