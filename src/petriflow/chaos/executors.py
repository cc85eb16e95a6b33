"""Executors for `petriflow-chaos`, usable as examples.

Name them in a workflow as `petriflow.chaos.executors:NAME`. The journaling
ones show how user code makes an at-least-once side effect effectively
once: it deduplicates by `ctx.idempotency_key` (the workitem id, stable
across re-executions of one step). The others misbehave on purpose, each
in one way the engine must survive: raising, hanging past `timeout_s`,
killing their own process, failing on the first attempt only. `Recover`
journals too: it handles a failure a failure arc brought it.

The journal is a JSON-lines file named by `params.journal`, else by
`$PETRIFLOW_TEST_JOURNAL`; without either, nothing is recorded. Each line:
`{"key", "case_id", "transition", "attempt", "pid", "applied"}`, where
`applied` is true for the one execution that performed the side effect and
false for a re-execution the key deduplicated.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from typing import Any

from petriflow.engine.executors import BaseExecutor, Completed, ExecutionContext, Failed, Outcome


def journal_path(ctx: ExecutionContext) -> str | None:
    return ctx.params.get("journal") or os.environ.get("PETRIFLOW_TEST_JOURNAL") or None


def apply_once(ctx: ExecutionContext) -> bool:
    """Record the side effect of this step unless its idempotency key was
    already applied; True when this execution applied it. The check and the
    append happen under an exclusive lock on the journal, so concurrent
    executors in other processes cannot both apply one key."""
    path = journal_path(ctx)
    if path is None:
        return True
    with open(path, "a+", encoding="utf-8") as journal:
        fcntl.flock(journal, fcntl.LOCK_EX)
        try:
            journal.seek(0)
            applied = any(_applied_key(line) == ctx.idempotency_key for line in journal)
            entry: dict[str, Any] = {
                "key": ctx.idempotency_key,
                "case_id": ctx.case_id,
                "transition": ctx.transition_id,
                "attempt": ctx.attempt,
                "pid": os.getpid(),
                "applied": not applied,
            }
            journal.write(json.dumps(entry) + "\n")
            journal.flush()
            os.fsync(journal.fileno())
        finally:
            fcntl.flock(journal, fcntl.LOCK_UN)
    return not applied


def _applied_key(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return entry.get("key") if isinstance(entry, dict) and entry.get("applied") else None


class Journal(BaseExecutor):
    """Sleeps `params.seconds` (default 0), then performs its side effect
    once per idempotency key and passes its input on, marked with its
    transition id."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        time.sleep(float(ctx.params.get("seconds", 0)))
        apply_once(ctx)
        return Completed({**ctx.input, ctx.transition_id: True})


class FlakyOnce(Journal):
    """Fails its first attempt, then behaves as `Journal`: give its
    transition a retry policy (`"retry": {"max_attempts": 2}`)."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        if ctx.attempt <= 1:
            return Failed("flaky: the first attempt fails")
        return super().execute(ctx)


class Recover(Journal):
    """A failure handler: put after a `"when": "failure"` arc, whose token is
    `{"error": {"kind", "reason"}, "input"}`. Sleeps `params.seconds`,
    performs its side effect once, and goes on with the failed step's input,
    marked with the kind of the error it handled under its transition id."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        time.sleep(float(ctx.params.get("seconds", 0)))
        apply_once(ctx)
        error = ctx.input.get("error")
        kind = error.get("kind") if isinstance(error, dict) else None
        failed_input = ctx.input.get("input")
        return Completed({**(failed_input if isinstance(failed_input, dict) else ctx.input), ctx.transition_id: kind})


class Raise(BaseExecutor):
    """Raises: a failed step (the engine never crashes on user code)."""

    blocking = False

    def execute(self, ctx: ExecutionContext) -> Outcome:
        raise RuntimeError(str(ctx.params.get("reason", "the raise executor raised")))


class Hang(BaseExecutor):
    """Sleeps `params.seconds` (default an hour): give its transition a
    `timeout_s` shorter than that and the step is killed."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        time.sleep(float(ctx.params.get("seconds", 3600)))
        return Completed(dict(ctx.input))


class KillSelf(BaseExecutor):
    """SIGKILLs its own process, every attempt. Run isolated (the mix does),
    that is the attempt's own process: the workitem crashes until its
    supervisor gives up on it (the run ends `crashed`). Not isolated, it is
    the node's process, and every entity on the node is restored each time."""

    blocking = False

    def execute(self, ctx: ExecutionContext) -> Outcome:
        os.kill(os.getpid(), signal.SIGKILL)
        return Completed({})
