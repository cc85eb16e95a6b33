"""`petriflow demo`: the Quick start, a daemon and a workflow run end to end as a person would."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from typing import Any

from petriflow import daemon
from petriflow.cli import common, render
from petriflow.client import Client
from petriflow.engine.errors import PetriflowError
from petriflow.engine.states import WorkitemState, WorkOrderState
from petriflow.engine.views import is_settled
from petriflow.engine.wire import WorkOrderView

DEMO_WORKFLOW = {
    "id": "demo-invoice",
    "version": 1,
    "places": [
        {"id": "start", "type": "start"},
        {"id": "vat-todo"},
        {"id": "credit-todo"},
        {"id": "approval-todo"},
        {"id": "vat-ok"},
        {"id": "credit-ok"},
        {"id": "approved"},
        {"id": "end", "type": "end"},
    ],
    "transitions": [
        {"id": "fetch", "executor": "echo", "params": {"source": "erp"}, "split": "and"},
        {"id": "check-vat", "executor": "sleep", "params": {"seconds": 0.5}, "timeout_s": 10},
        {"id": "check-credit", "executor": "echo", "params": {"credit": "good"}},
        {"id": "approve", "executor": "manual"},
        {"id": "post", "executor": "echo", "params": {"posted": True}, "join": "and"},
    ],
    "triggers": [{"id": "demo-invoice-hook", "type": "webhook"}],
    "arcs": [
        {"from": "start", "to": "fetch"},
        {"from": "fetch", "to": "vat-todo"},
        {"from": "fetch", "to": "credit-todo"},
        {"from": "fetch", "to": "approval-todo"},
        {"from": "vat-todo", "to": "check-vat"},
        {"from": "check-vat", "to": "vat-ok"},
        {"from": "credit-todo", "to": "check-credit"},
        {"from": "check-credit", "to": "credit-ok"},
        {"from": "approval-todo", "to": "approve"},
        {"from": "approve", "to": "approved"},
        {"from": "vat-ok", "to": "post"},
        {"from": "credit-ok", "to": "post"},
        {"from": "approved", "to": "post"},
        {"from": "post", "to": "end"},
    ],
}


def demo(args: argparse.Namespace) -> int:
    """Start the daemon (unless one runs for this home), load the demo
    workflow, submit one work order through the client and one through the
    webhook, print every step as it happens, approve the manual steps as a
    person would, then show `workorders` and `show`; stop the daemon it
    started unless --keep-running."""
    config = common.daemon_config(args)
    started = not daemon.running_pid(config)
    if started:
        pid = daemon.start_background(config)
        print(
            f"daemon started: pid {pid}, admin port {config.port} (loopback), webhooks at {config.http_url}, "
            f"storage {config.storage_url}"
        )
    try:
        client = daemon.connect(config)
        workflow_id, version = client.put_workflow(DEMO_WORKFLOW)
        print(f"workflow {workflow_id} v{version} loaded: fetch, then vat/credit/approve in parallel, then post")
        by_client = client.submit(workflow_id, {"invoice": 42, "amount": 1200}).work_order_id
        print(f"work order {by_client} submitted through the client")
        by_hook = _post_webhook(f"{client_url(config)}/hooks/demo-invoice-hook", {"invoice": 43, "amount": 80})
        print(f"work order {by_hook} created by POST {client_url(config)}/hooks/demo-invoice-hook")
        views = _follow_steps(client, [by_client, by_hook], args.timeout)
        print("\n$ petriflow workorders")
        print(render.orders_table(client.list_work_orders(workflow_id=workflow_id)))
        print(f"\n$ petriflow show {by_client}")
        print(render.describe_order(views[0]))
        print(f"\nthe web console, signed in: {daemon.console_url(config)}")
        return 0 if all(v.work_order.state is WorkOrderState.SUCCESS for v in views) else 1
    finally:
        if started and not args.keep_running:
            daemon.stop(config)
            print("\ndaemon stopped (run `petriflow start` to keep one running; `demo --keep-running` leaves it up)")


def client_url(config: daemon.DaemonConfig) -> str:
    return json.loads(config.state_file.read_text())["http_url"]


def _post_webhook(url: str, body: dict[str, Any]) -> str:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["work_order_id"]


def _follow_steps(client: Client, work_order_ids: list[str], timeout_s: float) -> list[WorkOrderView]:
    """Print each step's state changes as they happen; approve manual steps."""
    began, seen = time.monotonic(), dict[str, tuple[str, bool]]()
    while True:
        views = [client.get_work_order(w) for w in work_order_ids]
        for view in views:
            for step in (s for r in view.runs for s in r.steps):
                waiting = (
                    step.state == WorkitemState.STARTED.value
                    and step.transition_id == "approve"
                    and client.get_workitem(step.workitem_id).awaiting
                )
                if seen.get(step.step_id) == (step.state, waiting):
                    continue
                seen[step.step_id] = (step.state, waiting)
                detail = (
                    " (waiting for a person)"
                    if waiting
                    else f" -> {json.dumps(step.output, sort_keys=True)}"
                    if step.output is not None
                    else ""
                )
                print(
                    f"  {time.monotonic() - began:6.2f}s  {view.work_order.id[:8]}  step {step.transition_id:<13}"
                    f" {step.state:<9}{detail}"
                )
                if waiting:
                    client.complete_workitem(step.workitem_id, {"approved_by": "demo"})
                    print(f"  {time.monotonic() - began:6.2f}s  {view.work_order.id[:8]}  the demo approves it")
        if all(is_settled(v) for v in views):
            for view in views:
                print(f"work order {view.work_order.id} {view.work_order.state.value}")
            return views
        if time.monotonic() - began > timeout_s:
            raise PetriflowError(f"the demo's work orders did not finish within {timeout_s:g}s", code="timeout")
        time.sleep(0.05)
