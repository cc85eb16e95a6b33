"""Executors used by the tests, resolved as `tests.executors:NAME`."""
from __future__ import annotations

import json
import os
import signal
import time

from engine.executors import BaseExecutor, Completed, ExecutionContext, Outcome


def double(ctx: ExecutionContext) -> dict:
    return {"n": ctx.input.get("n", 0) * 2}


class Journal(BaseExecutor):
    """Appends one JSON line per execution to `params.journal` (or $PETRIFLOW_TEST_JOURNAL),
    so tests can count side effects by idempotency key; sleeps `params.seconds`."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        path = ctx.params.get("journal") or os.environ.get("PETRIFLOW_TEST_JOURNAL")
        time.sleep(float(ctx.params.get("seconds", 0)))
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"key": ctx.idempotency_key, "transition": ctx.transition_id,
                                    "attempt": ctx.attempt, "pid": os.getpid()}) + "\n")
        return Completed({**ctx.input, ctx.transition_id: True})


class KillSelf(BaseExecutor):
    """Kills its own actor process with SIGKILL, every time: a crash the engine cannot prevent."""

    blocking = False

    def execute(self, ctx: ExecutionContext) -> Outcome:
        os.kill(os.getpid(), signal.SIGKILL)
        return Completed({})
