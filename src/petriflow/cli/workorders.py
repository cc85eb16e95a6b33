"""The work-order commands: submit, workorders, show, retry, retry-many, cancel, complete, watch, actors."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time

from petriflow.cli import arguments, common, render
from petriflow.client import Client
from petriflow.engine.errors import PetriflowError
from petriflow.engine.states import WorkOrderState
from petriflow.engine.views import is_settled, work_order_json, work_order_summary
from petriflow.engine.wire import WorkOrderView


def follow_order(client: Client, work_order_id: str, timeout_s: float, report: bool) -> WorkOrderView:
    """Poll until the work order is final; with `report`, a progress line
    re-drawn in place on a terminal, else one line per change (logs, pipes)."""
    deadline = time.monotonic() + timeout_s
    tty, shown = sys.stdout.isatty(), ""
    try:
        while True:
            view = client.get_work_order(work_order_id)
            line = render.progress(view)
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
    payload = arguments.json_argument(args.input, "--input")
    client = common.connect(args)
    submitted = client.submit(args.workflow, payload)
    if not args.wait:
        common.emit(
            args,
            dataclasses.asdict(submitted),
            f"work order {submitted.work_order_id} submitted, run {submitted.run_id}",
        )
        return 0
    if not args.json:
        print(f"work order {submitted.work_order_id} submitted, run {submitted.run_id}")
    view = follow_order(client, submitted.work_order_id, args.timeout, report=not args.json)
    common.emit(args, work_order_json(view), render.describe_order(view))
    return 0 if view.work_order.state is WorkOrderState.SUCCESS else 1


def workorders(args: argparse.Namespace) -> int:
    since = arguments.since(args.since) if args.since else None
    orders = common.connect(args).list_work_orders(args.state, args.workflow, since)
    common.emit(args, {"work_orders": [work_order_summary(o) for o in orders]}, render.orders_table(orders))
    return 0


def show(args: argparse.Namespace) -> int:
    view = common.connect(args).get_work_order(args.work_order)
    common.emit(args, work_order_json(view), render.describe_order(view))
    return 0


def retry(args: argparse.Namespace) -> int:
    run_id = common.connect(args).retry(args.run_id, args.step)
    common.emit(args, {"run_id": run_id}, f"run {run_id} enqueued")
    return 0


def retry_many(args: argparse.Namespace) -> int:
    """Discards are part of the answer, not errors: exit 0 whatever was
    discarded; 2 only when the request itself fails (as every command)."""
    result = common.connect(args).retry_many_detailed(args.work_orders, from_transition=args.transition)
    common.emit(args, render.retry_many_json(result), render.retry_many_text(result))
    return 0


def cancel(args: argparse.Namespace) -> int:
    common.connect(args).cancel(args.work_order)
    common.emit(args, {"work_order_id": args.work_order, "cancelled": True}, f"work order {args.work_order} cancelled")
    return 0


def kill(args: argparse.Namespace) -> int:
    kind = common.connect(args).kill(args.entity)
    common.emit(
        args,
        {"entity_id": args.entity, "kind": kind},
        f"{kind.replace('_', ' ')} {args.entity} killed; its supervisor restores it",
    )
    return 0


def complete(args: argparse.Namespace) -> int:
    """A task id is a manual step in a deferred choice: it takes its token first."""
    output = arguments.json_argument(args.output, "--output")
    workitem_id = common.connect(args).complete(args.workitem, output)
    common.emit(args, {"workitem_id": workitem_id, "completed": True}, f"workitem {workitem_id} completed")
    return 0


def watch(args: argparse.Namespace) -> int:
    """One line per event, flushed at once so a pipe sees it as it happens;
    the client is used for nothing else while it is subscribed."""
    try:
        with contextlib.closing(common.connect(args).events(args.timeout)) as events:
            for event in events:
                data = render.event_json(event)
                common.emit(
                    args,
                    data,
                    f"{render.when(time.time())}  {data['kind']:<18}  work order {data['work_order_id']} "
                    f"{data['state']:<9}  run {data['run_id'] or '-'} {data['run_state'] or ''}".rstrip(),
                )
                sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    return 0


def actors(args: argparse.Namespace) -> int:
    found = common.connect(args).list_actors()
    common.emit(
        args,
        {"actors": [dataclasses.asdict(actor) for actor in found]},
        render.table(
            ["KIND", "ENTITY", "STATE", "NODE", "PID"],
            [[a.kind, a.entity_id, a.state, a.node or "-", a.pid] for a in found],
            "no live actors",
        ),
    )
    return 0
