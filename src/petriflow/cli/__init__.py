"""petriflow's command line: the daemon launcher and a thin client of it.

`petriflow start` runs the daemon in the background (`--foreground` keeps
it attached), `stop` and `status` control it; the other commands talk to a
running daemon through `petriflow.Client`. Settings come from flags,
then PETRIFLOW_HOME / PETRIFLOW_PORT / PETRIFLOW_HTTP_PORT /
PETRIFLOW_STORAGE, then the defaults (home ./.petriflow, admin port 19470,
HTTP port 19471). `--json` prints one JSON object per command (`watch`
prints one per event); errors exit with 2 and, with `--json`, print
`{"error": {"code", "message"}}`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from petriflow import logs
from petriflow.cli import common, control, demo, workflows, workorders
from petriflow.client import EngineTimeout
from petriflow.engine.errors import PetriflowError
from petriflow.engine.states import WorkOrderState


def build_parser() -> argparse.ArgumentParser:
    """Every command, its flags and the function that runs it (`run`)."""
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

    run_start = command("start", control.start, "start the daemon in the background and wait until it answers")
    run_start.add_argument("--foreground", action="store_true", help="stay attached (systemd, containers)")
    run_start.add_argument("--http-port", type=int, help="webhook port (default $PETRIFLOW_HTTP_PORT or 19471)")
    run_start.add_argument("--storage", help="storage URL (default sqlite:///<home>/petriflow.db)")
    run_start.add_argument(
        "--nodes", type=int, help="node processes hosting the work (default $PETRIFLOW_NODES or the core count)"
    )
    run_start.add_argument(
        "--http-host",
        help="address the HTTP server binds (default $PETRIFLOW_HTTP_HOST or 127.0.0.1; "
        "any other needs auth on every webhook trigger)",
    )
    run_start.add_argument(
        "--ingress-queue",
        type=int,
        help="HTTP requests that may wait for the engine; more are answered 503 "
        "(default $PETRIFLOW_INGRESS_QUEUE or 1024)",
    )
    run_start.add_argument(
        "--heartbeat-timeout",
        type=float,
        help="seconds an Engine or node may miss its heartbeats before it is killed and restarted "
        "(default $PETRIFLOW_HEARTBEAT_TIMEOUT or 10)",
    )
    command("stop", control.stop, "stop the daemon; no process is left behind")
    command("status", control.status, "whether the daemon runs, its pid, port, storage, uptime and work orders")
    command("console-url", control.console_url, "the web console's address with its token: open it to sign in")
    run_demo = command("demo", demo.demo, "start the daemon, run a demo workflow end to end, print each step")
    run_demo.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds")
    run_demo.add_argument("--http-port", type=int, help="webhook port (default $PETRIFLOW_HTTP_PORT or 19471)")
    run_demo.add_argument("--keep-running", action="store_true", help="leave the daemon running afterwards")

    workflow = commands.add_parser("workflow", help="load, list, show and discard workflows")
    listed = workflow.add_subparsers(dest="workflow_command", required=True)
    command("load", workflows.workflow_load, "store a workflow JSON document", listed).add_argument("file")
    command("list", workflows.workflow_list, "every stored workflow version with its state and triggers", listed)
    run_show_workflow = command("show", workflows.workflow_show, "print a workflow document", listed)
    run_show_workflow.add_argument("id")
    run_show_workflow.add_argument("--version", type=int, help="this version (default the latest)")
    command("discard", workflows.workflow_discard, "refuse new work orders for a workflow", listed).add_argument("id")

    run_submit = command("submit", workorders.submit, "create a work order and its first run")
    run_submit.add_argument("workflow")
    run_submit.add_argument("--input", default="{}", help="a JSON object, or @file holding one")
    run_submit.add_argument("--wait", action="store_true", help="follow it to a final state; exit 1 unless success")
    run_submit.add_argument("--timeout", type=float, default=300.0, help="with --wait: give up after S seconds")
    run_orders = command("workorders", workorders.workorders, "list work orders")
    run_orders.add_argument(
        "--state", action="append", choices=[s.value for s in WorkOrderState], help="only in this state (repeatable)"
    )
    run_orders.add_argument("--workflow", help="only of this workflow")
    run_orders.add_argument("--since", help="created since an ISO 8601 time or a duration ago (10m, 2h, 1d)")
    command("show", workorders.show, "a work order, its runs and their steps").add_argument("work_order")
    run_retry = command("retry", workorders.retry, "a new run of a run's work order, executed again from a step")
    run_retry.add_argument("run_id", metavar="RUN")
    run_retry.add_argument("--from", dest="step", required=True, help="the step to execute again")
    run_retry_many = command(
        "retry-many", workorders.retry_many, "retry work orders from their first step, or from a transition"
    )
    run_retry_many.add_argument("work_orders", nargs="+", metavar="WORKORDER")
    run_retry_many.add_argument(
        "--from",
        dest="transition",
        metavar="TRANSITION",
        help="retry each from its latest run's last step of this transition (default: from the first step)",
    )
    command("cancel", workorders.cancel, "cancel a work order's unfinished runs").add_argument("work_order")
    run_complete = command(
        "complete",
        workorders.complete,
        "complete a waiting workitem (a manual step), or a manual task waiting in a deferred choice",
    )
    run_complete.add_argument("workitem", metavar="WORKITEM|TASK")
    run_complete.add_argument("--output", required=True, help="a JSON object, or @file holding one")
    run_watch = command(
        "watch", workorders.watch, "print work-order and run events as they happen (--json: one per line)"
    )
    run_watch.add_argument("--timeout", type=float, help="stop after S seconds without an event (default never)")
    command("actors", workorders.actors, "every live actor: kind, entity, state and OS pid")
    command(
        "kill", workorders.kill, "crash one live work order, case, task or workitem; its supervisor restores it"
    ).add_argument("entity", metavar="ID")

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(None)  # the command line is an application: its events go to stderr, never into --json output
    try:
        return args.run(args)
    except PetriflowError as exc:
        return common.fail(args, exc.code, exc.message)
    except EngineTimeout as exc:
        return common.fail(args, "timeout", f"{exc}; the daemon may be overloaded (petriflow status)")
    except KeyboardInterrupt:
        return 130
