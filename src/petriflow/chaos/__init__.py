"""petriflow-chaos: run a real daemon under load, kill parts of it at random
moments, and prove afterwards that nothing was lost or done twice.

It starts a daemon (`petriflow start`) in a temporary home on free
loopback ports, loads a mix of workflows (a sequence, an AND split into four
branches and its join, a deferred choice, a manual step this run completes
through the client, a sleeping step, an isolated step, a step that fails
once and succeeds on retry, a routed workflow whose failing step is handled
along its `failure` arc and whose `xor` and `or` splits branch by a seeded
number in the input, a timed one: a sequence waiting on a durable
`timer`, then a deferred choice between a manual approval, which this run
takes (`preexecute`) and completes in time for some work orders, and an
escalation timer that fires for the others; and three that fail on
purpose: one raises, one hangs past its `timeout_s`, one kills its own
process), submits work orders (through
`Client.submit` and the webhook endpoint), and meanwhile crashes a live
entity of each kind (workitem, task, case, work order) by message
(`petriflow kill`), SIGKILLs a node's process and the Engine, has a node
kill itself just before it commits a turn (the turn's writes are lost) and
just after (before the node released anything of the turn), hangs a node
and the Engine (SIGSTOP) until their heartbeats have them replaced, takes
storage away for a few seconds (every write of every process fails), and
kills the whole daemon, which it starts again on the same storage.

The daemon runs on `faulty+sqlite:///<home>/petriflow.db#<home>/faults.flag`
(`petriflow.storage.faults`): a fault at commit appends its kill line
(`kill-before-commit *`, `kill-after-commit *`) to the flag file, and it
fires in whichever node next commits a turn that wrote a case; the run
waits for the line to go (up to 30 s, submitting on meanwhile) before the
next fault, and takes back one no node fired, counting it skipped. A
storage outage adds `*` (every write fails as on an I/O error: HTTP 503,
`storage_unavailable`) or `full *` (a full disk: 507, `storage_full`), in
turn, for 2 to 4 s, then takes it out (`petriflow.chaos.outage`; every edit
of the flag file holds the flock a firing node takes, so no line is lost).
Meanwhile the run goes on submitting: what the daemon refuses for storage
(webhook or client, and any other request of the run) is sent again until
it is taken, neither lost nor counted as accepted; it notes whether the
Engine's heartbeat and `petriflow status` reported the outage, and the
next fault waits until they report storage available again. The
checks below read the SQLite file under the faulty storage.

Then it checks, from storage: every work order ended, in the state its
workflow is designed to end in; `petriflow.workorders.audit.audit` finds no violation;
every side effect in the journal (`petriflow.chaos.executors`) carries its
idempotency key, no key and no step was applied twice, and no completed
step lacks its side effect; each routed work order completed the steps
its number designs, its failing step failed; each timed one took the side
of its deferred choice the run chose (or the timer, had the run been
late), the other side abandoned and never executed, and no timer's step
finished (fired) before the deadline stored on its task (`wake_at`); SQLite's
`PRAGMA integrity_check` is ok; and
the running daemon refused no submission (webhook or client) but for
storage during an outage. It prints
what went wrong, then one summary line:

    chaos seed=7 work_orders=200 faults=kill_workitem:2,...,kill_storage_outage:2,kill_daemon:2 skipped=0 replayed=16
      lost=0 duplicated=0 unexpected=0 violations=0 wall=51.8s

(`skipped`: faults that found no live victim, or kill lines no node fired; `replayed`: steps executed
again after a kill and deduplicated by their key; `lost`: work orders
missing or unfinished, and completed steps without their side effect;
`unexpected`: work orders ended in another state than designed) and exits
1 on any loss, duplicate, unexpected state or violation (2 on a usage or
start error, 130 when interrupted). What it did (each kill, with the
entity and pid, which node fired each kill line, and what each storage outage was reported as and refused)
is written to `chaos.log` in the home, and printed on failure.

`--seed N` replays the same choices: workflows, submissions and the fault
schedule relative to progress (fault i fires once a drawn number of work
orders was submitted, and the next submission waits for it). The daemon is stopped and every process of it killed by
pid at the end, even on Ctrl-C or error; `--keep` keeps the home.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from petriflow import logs
from petriflow.chaos.daemon import Interrupted
from petriflow.chaos.plan import KINDS, make_plan
from petriflow.chaos.run import Chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="petriflow-chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=None, help="replay the choices of this seed (default: random)")
    parser.add_argument("--work-orders", type=int, default=200, help="work orders to submit (default 200)")
    parser.add_argument(
        "--faults",
        type=int,
        default=2 * len(KINDS),
        help=f"faults to inject, spread over {', '.join(KINDS)} (default {2 * len(KINDS)})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for every work order to end (default 60 + 1.5 per work order)",
    )
    parser.add_argument(
        "--stall",
        type=float,
        default=60.0,
        help="give up waiting once no work order changed state for this long (default 60)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home for inspection")
    args = parser.parse_args(argv)
    if args.work_orders < 1 or args.faults < 0:
        parser.error("--work-orders must be at least 1 and --faults at least 0")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 10**6)
    if args.timeout is None:
        args.timeout = 60 + 1.5 * args.work_orders
    home = Path(tempfile.mkdtemp(prefix=f"petriflow-chaos-{args.seed}-"))
    logs.configure(str(home / "chaos-events.log"))  # what petriflow.daemon logs here stays off stdout

    def interrupted(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupted)
    chaos = Chaos(args, home, make_plan(args.seed, args.work_orders, args.faults))
    status = 2
    try:
        status = chaos.run()
    except (KeyboardInterrupt, Interrupted):
        print(f"chaos seed={args.seed}: interrupted", file=sys.stderr)
        status = 130
    except Exception as exc:
        print(f"chaos seed={args.seed}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        for note in chaos.notes:
            print(f"note: {note}", file=sys.stderr)
        status = 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        chaos.daemon.stop()
        if args.keep:
            print(f"chaos home kept: {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)
    return status
