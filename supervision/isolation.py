"""One executor attempt in a process of its own, for transitions marked
`"isolate": true`.

An executor running on a thread shares its actor's process: `os._exit`, a
segfault or a runaway allocation there takes every actor of the process
down. Isolated, the attempt runs in a child (`python -m
petriflow.supervision.isolated_attempt`), which gets the executor's name and
context on stdin and answers the outcome on stdout, both msgpack. A child
that dies by a signal, exits without an answer or runs out of the memory it
may use (`MEMORY_LIMIT_MB` of address space) is an `IsolatedCrash`: the
attempt crashed, and the workitem starts the next attempt, up to the
restart intensity's count in a row (then it fails as `crashed`). An
executor that merely raises is a failed step, as on a thread.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

import msgpack

from petriflow.engine.executors import (
    ExecutionContext,
    Outcome,
    outcome_from_plain,
)

MEMORY_LIMIT_MB = 2048
PARENT_VARIABLE = "PETRIFLOW_ISOLATION_PARENT"  # the child dies with the process that started it
OUT_OF_MEMORY = 3  # the child's exit status when the executor ran out of memory


class IsolatedCrash(Exception):
    """The isolated attempt's process died without an outcome."""

    code = "crashed"


@dataclass
class Attempt:
    """A running isolated attempt; `kill` ends it (timeout, abandon)."""

    process: subprocess.Popen[bytes]

    def outcome(self, request: bytes) -> Outcome:
        """Wait for the child; its outcome, or `IsolatedCrash` saying how it died."""
        out, err = self.process.communicate(request)
        status = self.process.returncode
        if status == 0:
            try:
                return outcome_from_plain(msgpack.unpackb(out))
            except (ValueError, KeyError, TypeError, msgpack.ExtraData) as exc:
                raise IsolatedCrash(f"the isolated executor answered garbage: {exc}") from None
        if status < 0:
            raise IsolatedCrash(f"the isolated executor's process died of {signal.Signals(-status).name}")
        if status == OUT_OF_MEMORY:
            raise IsolatedCrash(f"the isolated executor ran out of its {MEMORY_LIMIT_MB} MB of memory")
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise IsolatedCrash(f"the isolated executor's process exited with status {status}: {tail[0]}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


def start(executor: str, ctx: ExecutionContext) -> tuple[Attempt, bytes]:
    """Start the child; returns it and the request to hand it (`Attempt.outcome`).
    The child sees the same import path as this process, so `module:attribute`
    executors resolve as they do here."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        PARENT_VARIABLE: str(os.getpid()),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "petriflow.supervision.isolated_attempt"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=False,
    )
    request = msgpack.packb({"executor": executor, "context": dataclasses.asdict(ctx)}, use_bin_type=True)
    return Attempt(process), request
