"""Executors used by the tests, resolved as `tests.executors:NAME`."""

from __future__ import annotations

import json
import os
import signal
import time

from petriflow.engine.executors import BaseExecutor, Completed, ExecutionContext, Failed, Outcome


def double(ctx: ExecutionContext) -> dict:
    return {"n": ctx.input.get("n", 0) * 2}


class Journal(BaseExecutor):
    """Appends one JSON line per execution to `params.journal` (or $PETRIFLOW_TEST_JOURNAL),
    so tests can count side effects by idempotency key; sleeps `params.seconds`; fails while
    the file `params.fail_unless_exists` (beside the journal) does not exist."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        path = ctx.params.get("journal") or os.environ.get("PETRIFLOW_TEST_JOURNAL")
        time.sleep(float(ctx.params.get("seconds", 0)))
        release = ctx.params.get("fail_unless_exists")
        if release and not os.path.exists(os.path.join(os.path.dirname(path or "."), release)):
            return Failed(f"{release} does not exist yet")
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(
                    json.dumps(
                        {
                            "key": ctx.idempotency_key,
                            "transition": ctx.transition_id,
                            "attempt": ctx.attempt,
                            "pid": os.getpid(),
                        }
                    )
                    + "\n"
                )
        return Completed({**ctx.input, ctx.transition_id: True})


class KillSelf(BaseExecutor):
    """Kills its own actor process with SIGKILL, every time: a crash the engine cannot prevent."""

    blocking = False

    def execute(self, ctx: ExecutionContext) -> Outcome:
        os.kill(os.getpid(), signal.SIGKILL)
        return Completed({})


class BadPayload(BaseExecutor):
    """Completes, but building its token payload raises: an engine-side error."""

    blocking = False

    def execute(self, ctx: ExecutionContext) -> Outcome:
        return Completed({})

    def build_token_payload(self, outputs: list[dict], params: dict) -> dict:
        raise RuntimeError("cannot build a payload")


class ExitAbruptly(BaseExecutor):
    """Ends its process at once with `os._exit`, as buggy native code might."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        os._exit(7)


class Segfault(BaseExecutor):
    """Dereferences a null pointer: SIGSEGV."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        import ctypes

        ctypes.string_at(0)
        return Completed({})


class RunawayAllocation(BaseExecutor):
    """Asks for 80 GB at once, far past any sane memory limit."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        hoard = [0] * 10**10
        return Completed({"size": len(hoard)})


class WhereAmI(BaseExecutor):
    """Completes with the pid it ran in, to tell an isolated attempt from the host."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        return Completed({"pid": os.getpid(), "input": ctx.input, "params": ctx.params})
