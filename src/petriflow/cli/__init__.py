"""petriflow's command line: the daemon launcher and a thin client of it.

`petriflow start` runs the daemon in the background (`--foreground` keeps
it attached), `stop` and `status` control it; the other commands talk to a
running daemon through `actors.client.Client`. Settings come from flags,
then PETRIFLOW_HOME / PETRIFLOW_PORT / PETRIFLOW_HTTP_PORT /
PETRIFLOW_STORAGE, then the defaults (home ./.petriflow, admin port 19470,
HTTP port 19471). `--json` prints one JSON object per command (`watch`
prints one per event); errors exit with 2 and, with `--json`, print
`{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from petriflow import daemon
from petriflow.client import Client, EngineTimeout
from petriflow.engine.errors import Invalid, PetriflowError
from petriflow.engine.messages import Event, RunView, StepView, WorkOrderView
from petriflow.engine.records import WorkOrderRecord
from petriflow.engine.states import WorkitemState, WorkOrderState
from petriflow.engine.views import is_settled, work_order_json, work_order_summary

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
    config = _config(args)
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
        print(_orders_table(client.list_work_orders(workflow_id=workflow_id)))
        print(f"\n$ petriflow show {by_client}")
        print(_describe_order(views[0]))
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
    began, seen = time.monotonic(), {}
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


def _config(args: argparse.Namespace) -> daemon.DaemonConfig:
    return daemon.resolve_config(
        home=args.home,
        port=args.port,
        http_port=getattr(args, "http_port", None),
        storage=getattr(args, "storage", None),
    )


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, sort_keys=True, default=str) if args.json else text)


def start(args: argparse.Namespace) -> int:
    config = _config(args)
    if args.foreground:
        return daemon.Daemon(config).serve()
    pid = daemon.start_background(config)
    _print(
        args,
        {"started": True, "pid": pid, "port": config.port, "http_url": config.http_url, "home": config.home},
        f"petriflow daemon started: pid {pid}, port {config.port}, webhooks at {config.http_url}, home {config.home}",
    )
    return 0


def stop(args: argparse.Namespace) -> int:
    config = _config(args)
    stopped = daemon.stop(config)
    _print(
        args,
        {"stopped": stopped, "home": config.home},
        "petriflow daemon stopped" if stopped else f"no petriflow daemon runs for home {config.home}",
    )
    return 0


def status(args: argparse.Namespace) -> int:
    info = daemon.status(_config(args))
    if not info["running"]:
        _print(args, info, f"not running (home {info['home']})")
        return 3
    counts = ", ".join(f"{state} {n}" for state, n in sorted(info["work_orders"].items())) or "none"
    _print(
        args,
        info,
        "\n".join(
            [
                f"running    pid {info['pid']}, up {info.get('uptime_s', 0):.0f}s",
                f"port       {info['port']}",
                f"home       {info['home']}",
                f"storage    {info['storage']}",
                f"webhooks   {info['http_url']}",
                f"work orders {counts}",
            ]
        ),
    )
    return 0


# -- the client commands: thin layers over actors.client.Client ----------------------------

CELL_WIDTH = 40
RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def _connect(args: argparse.Namespace) -> Client:
    """A client of the daemon of --home, on the port it announced there."""
    return daemon.connect(_config(args))


def _json_object(text: str, what: str) -> dict[str, Any]:
    """Parse user-given JSON, naming the flag or file in the error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise Invalid(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Invalid(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"{what}: cannot read {path}: {exc.strerror}") from None


def _json_argument(value: str, flag: str) -> dict[str, Any]:
    """`--flag JSON` or `--flag @file`, as curl takes a body."""
    if value.startswith("@"):
        return _json_object(_read(value[1:], flag), f"{flag} file {value[1:]}")
    return _json_object(value, flag)


def _since(value: str) -> float:
    """An ISO 8601 time (local time if it names no zone) or a duration back from now: 10m, 2h, 1d."""
    match = RELATIVE.match(value)
    if match:
        return time.time() - timedelta(**{UNITS[match[2]]: float(match[1])}).total_seconds()
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise Invalid(f"--since takes an ISO 8601 time or a duration like 10m, 2h, 1d; got {value!r}") from None


def _when(timestamp: float | None, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(timestamp).strftime(form) if timestamp else "-"


def _clock(timestamp: float | None) -> str:
    """A step's time of day to the millisecond: its run's line gives the date."""
    return _when(timestamp, "%H:%M:%S.%f")[:12]


def _took(started: float | None, finished: float | None) -> str:
    return f"{finished - started:.3f}s" if started and finished else "-"


def _clip(value: Any) -> str:
    text = "-" if value is None else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 1] + "…"


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    """Left-aligned columns two spaces apart; `empty` when there is no row."""
    if not rows:
        return empty
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)


def workflow_load(args: argparse.Namespace) -> int:
    workflow_id, version = _connect(args).put_workflow(_json_object(_read(args.file, "workflow"), args.file))
    _print(args, {"workflow_id": workflow_id, "version": version}, f"workflow {workflow_id} version {version} stored")
    return 0


def workflow_list(args: argparse.Namespace) -> int:
    documents = _connect(args).list_workflows()
    rows = [
        [
            d["id"],
            d["version"],
            d["state"],
            ", ".join(f"{t['id']} ({t.get('cron') or t['type']})" for t in d["triggers"]) or "-",
        ]
        for d in documents
    ]
    _print(
        args,
        {"workflows": [{key: d[key] for key in ("id", "version", "state", "triggers")} for d in documents]},
        _table(["ID", "VERSION", "STATE", "TRIGGERS"], rows, "no workflows"),
    )
    return 0


def workflow_show(args: argparse.Namespace) -> int:
    document = _connect(args).get_workflow(args.id, args.version)
    _print(args, document, json.dumps(document, indent=2))
    return 0


def workflow_discard(args: argparse.Namespace) -> int:
    _connect(args).discard_workflow(args.id)
    _print(args, {"workflow_id": args.id, "discarded": True}, f"workflow {args.id} discarded")
    return 0


def _progress(view: WorkOrderView) -> str:
    steps = view.runs[-1].steps if view.runs else []
    done = sum(step.state == WorkitemState.COMPLETED.value for step in steps)
    return f"work order {view.work_order.id} {view.work_order.state.value}: {done}/{len(steps)} steps completed"


def _follow_order(client: Client, work_order_id: str, timeout_s: float, report: bool) -> WorkOrderView:
    """Poll until the work order is final; with `report`, a progress line
    re-drawn in place on a terminal, else one line per change (logs, pipes)."""
    deadline = time.monotonic() + timeout_s
    tty, shown = sys.stdout.isatty(), ""
    try:
        while True:
            view = client.get_work_order(work_order_id)
            line = _progress(view)
            if report and line != shown:
                print(f"\r{line.ljust(len(shown))}" if tty else line, end="" if tty else "\n", flush=True)
                shown = line
            if is_settled(view):
                return view
            if time.monotonic() > deadline:
                raise PetriflowError(
                    f"work order {work_order_id} is still {view.work_order.state.value} after {timeout_s:g}s",
                    code="timeout",
                )
            time.sleep(0.2)
    finally:
        if tty and shown:
            print()


def submit(args: argparse.Namespace) -> int:
    payload = _json_argument(args.input, "--input")
    client = _connect(args)
    submitted = client.submit(args.workflow, payload)
    if not args.wait:
        _print(
            args,
            dataclasses.asdict(submitted),
            f"work order {submitted.work_order_id} submitted, run {submitted.run_id}",
        )
        return 0
    if not args.json:
        print(f"work order {submitted.work_order_id} submitted, run {submitted.run_id}")
    view = _follow_order(client, submitted.work_order_id, args.timeout, report=not args.json)
    _print(args, work_order_json(view), _describe_order(view))
    return 0 if view.work_order.state is WorkOrderState.SUCCESS else 1


def workorders(args: argparse.Namespace) -> int:
    since = _since(args.since) if args.since else None
    orders = _connect(args).list_work_orders(args.state, args.workflow, since)
    _print(args, {"work_orders": [work_order_summary(o) for o in orders]}, _orders_table(orders))
    return 0


def _orders_table(orders: list[WorkOrderRecord]) -> str:
    rows = [
        [
            o.id,
            o.workflow_id,
            o.state.value,
            f"{o.trigger_type}:{o.trigger_id}" if o.trigger_id else o.trigger_type,
            _when(o.created_at),
        ]
        for o in orders
    ]
    return _table(["ID", "WORKFLOW", "STATE", "TRIGGER", "CREATED"], rows, "no work orders")


def _step_row(step: StepView) -> list[Any]:
    outcome = f"! {step.failure.kind}: {step.failure.reason}" if step.failure else _clip(step.output)
    return [
        step.step_id,
        step.transition_id,
        step.state,
        step.attempt,
        "yes" if step.kept else "no",
        _clock(step.started_at),
        _clock(step.finished_at),
        _took(step.started_at, step.finished_at),
        _clip(step.input),
        outcome,
    ]


def _describe_run(view: RunView) -> str:
    run = view.run
    lines = [
        f"run {run.id}  {run.state.value}  workflow v{run.workflow_version}  "
        f"started {_when(run.started_at)}  took {_took(run.started_at, run.finished_at)}"
    ]
    if run.retried_from_run_id:
        lines.append(f"  retried from run {run.retried_from_run_id} at step {run.retried_from_step_id}")
    if run.failure:
        lines.append(f"  failure {run.failure.kind}: {run.failure.reason}")
    lines.append(
        _table(
            ["STEP", "TRANSITION", "STATE", "ATTEMPT", "KEPT", "STARTED", "FINISHED", "TOOK", "INPUT", "OUTPUT"],
            [_step_row(step) for step in view.steps],
            "  no steps yet",
        )
    )
    return "\n".join(lines)


def _describe_order(view: WorkOrderView) -> str:
    order = view.work_order
    head = [
        f"work order {order.id}",
        f"  workflow {order.workflow_id}",
        f"  state    {order.state.value}",
        f"  trigger  {order.trigger_type}" + (f" {order.trigger_id}" if order.trigger_id else ""),
        f"  created  {_when(order.created_at)}",
        f"  input    {_clip(order.input)}",
    ]
    return "\n\n".join(["\n".join(head)] + [_describe_run(run) for run in view.runs])


def show(args: argparse.Namespace) -> int:
    view = _connect(args).get_work_order(args.work_order)
    _print(args, work_order_json(view), _describe_order(view))
    return 0


def retry(args: argparse.Namespace) -> int:
    run_id = _connect(args).retry(args.run_id, args.step)
    _print(args, {"run_id": run_id}, f"run {run_id} enqueued")
    return 0


def retry_many(args: argparse.Namespace) -> int:
    enqueued, discarded = _connect(args).retry_many(args.work_orders)
    _print(args, {"enqueued": enqueued, "discarded": discarded}, f"enqueued {enqueued}, discarded {discarded}")
    return 0


def cancel(args: argparse.Namespace) -> int:
    _connect(args).cancel(args.work_order)
    _print(args, {"work_order_id": args.work_order, "cancelled": True}, f"work order {args.work_order} cancelled")
    return 0


def complete(args: argparse.Namespace) -> int:
    output = _json_argument(args.output, "--output")
    _connect(args).complete_workitem(args.workitem, output)
    _print(args, {"workitem_id": args.workitem, "completed": True}, f"workitem {args.workitem} completed")
    return 0


def _event_json(event: Event) -> dict[str, Any]:
    run = event.run
    return {
        "kind": event.kind,
        "work_order_id": event.work_order.id,
        "workflow_id": event.work_order.workflow_id,
        "state": event.work_order.state.value,
        "run_id": run.id if run else None,
        "run_state": run.state.value if run else None,
    }


def watch(args: argparse.Namespace) -> int:
    """One line per event, flushed at once so a pipe sees it as it happens;
    the client is used for nothing else while it is subscribed."""
    try:
        with contextlib.closing(_connect(args).events(args.timeout)) as events:
            for event in events:
                data = _event_json(event)
                _print(
                    args,
                    data,
                    f"{_when(time.time())}  {data['kind']:<18}  work order {data['work_order_id']} "
                    f"{data['state']:<9}  run {data['run_id'] or '-'} {data['run_state'] or ''}".rstrip(),
                )
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def actors(args: argparse.Namespace) -> int:
    found = _connect(args).list_actors()
    _print(
        args,
        {"actors": [dataclasses.asdict(actor) for actor in found]},
        _table(
            ["KIND", "ENTITY", "STATE", "PID"], [[a.kind, a.entity_id, a.state, a.pid] for a in found], "no live actors"
        ),
    )
    return 0


def _fail(args: argparse.Namespace, code: str, message: str) -> int:
    if getattr(args, "json", False):
        print(json.dumps({"error": {"code": code, "message": message}}))
    else:
        print(f"petriflow: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="petriflow", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str, run: Callable[[argparse.Namespace], int], help: str, group: Any = commands
    ) -> argparse.ArgumentParser:
        sub = group.add_parser(name, help=help)
        sub.set_defaults(run=run)
        sub.add_argument("--home", help="the daemon's home (default $PETRIFLOW_HOME or ./.petriflow)")
        sub.add_argument("--port", type=int, help="loopback admin port (default $PETRIFLOW_PORT or 19470)")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
        return sub

    run_start = command("start", start, "start the daemon in the background and wait until it answers")
    run_start.add_argument("--foreground", action="store_true", help="stay attached (systemd, containers)")
    run_start.add_argument("--http-port", type=int, help="webhook port (default $PETRIFLOW_HTTP_PORT or 19471)")
    run_start.add_argument("--storage", help="storage URL (default sqlite:///<home>/petriflow.db)")
    command("stop", stop, "stop the daemon; no process is left behind")
    command("status", status, "whether the daemon runs, its pid, port, storage, uptime and work orders")
    run_demo = command("demo", demo, "start the daemon, run a demo workflow end to end, print each step")
    run_demo.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    run_demo.add_argument("--http-port", type=int, help="webhook port (default $PETRIFLOW_HTTP_PORT or 19471)")
    run_demo.add_argument("--keep-running", action="store_true", help="leave the daemon running afterwards")

    workflow = commands.add_parser("workflow", help="load, list, show and discard workflows")
    workflows = workflow.add_subparsers(dest="workflow_command", required=True)
    command("load", workflow_load, "store a workflow JSON document", workflows).add_argument("file")
    command("list", workflow_list, "every stored workflow version with its state and triggers", workflows)
    run_show_workflow = command("show", workflow_show, "print a workflow document", workflows)
    run_show_workflow.add_argument("id")
    run_show_workflow.add_argument("--version", type=int, help="this version (default the latest)")
    command("discard", workflow_discard, "refuse new work orders for a workflow", workflows).add_argument("id")

    run_submit = command("submit", submit, "create a work order and its first run")
    run_submit.add_argument("workflow")
    run_submit.add_argument("--input", default="{}", help="a JSON object, or @file holding one")
    run_submit.add_argument("--wait", action="store_true", help="follow it to a final state; exit 1 unless success")
    run_submit.add_argument("--timeout", type=float, default=300.0, help="with --wait: give up after S seconds")
    run_orders = command("workorders", workorders, "list work orders")
    run_orders.add_argument(
        "--state", action="append", choices=[s.value for s in WorkOrderState], help="only in this state (repeatable)"
    )
    run_orders.add_argument("--workflow", help="only of this workflow")
    run_orders.add_argument("--since", help="created since an ISO 8601 time or a duration ago (10m, 2h, 1d)")
    command("show", show, "a work order, its runs and their steps").add_argument("work_order")
    run_retry = command("retry", retry, "a new run of a run's work order, executed again from a step")
    run_retry.add_argument("run_id", metavar="RUN")
    run_retry.add_argument("--from", dest="step", required=True, help="the step to execute again")
    command("retry-many", retry_many, "retry work orders from their first step").add_argument(
        "work_orders", nargs="+", metavar="WORKORDER"
    )
    command("cancel", cancel, "cancel a work order's unfinished runs").add_argument("work_order")
    run_complete = command("complete", complete, "complete a waiting workitem (a manual step)")
    run_complete.add_argument("workitem")
    run_complete.add_argument("--output", required=True, help="a JSON object, or @file holding one")
    run_watch = command("watch", watch, "print work-order and run events as they happen (--json: one per line)")
    run_watch.add_argument("--timeout", type=float, help="stop after S seconds without an event (default never)")
    command("actors", actors, "every live actor: kind, entity, state and OS pid")

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except PetriflowError as exc:
        return _fail(args, exc.code, exc.message)
    except EngineTimeout as exc:
        return _fail(args, "timeout", f"{exc}; the daemon may be overloaded (petriflow status)")
    except KeyboardInterrupt:
        return 130
