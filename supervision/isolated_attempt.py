"""The child side of an isolated attempt (`supervision.isolation`): run by
`python -m petriflow.supervision.isolated_attempt`, it reads the executor's
name and context from stdin, runs one attempt under a memory limit, and
writes the outcome to stdout, all msgpack. A runaway allocation exits with
`OUT_OF_MEMORY`, a crash of the attempt rather than a failed step."""

from __future__ import annotations

import os
import resource
import sys

import msgpack

from petriflow.engine.executors import ExecutionContext, outcome_to_plain, resolve_executor, run_executor
from petriflow.supervision import lifeline
from petriflow.supervision.isolation import MEMORY_LIMIT_MB, OUT_OF_MEMORY, PARENT_VARIABLE


def main() -> None:
    # A SIGKILLed workitem must not leave its attempt running on: die with it,
    # including when it died before the death signal was armed.
    lifeline.arm_parent_death_signal()
    if lifeline.orphaned(int(os.environ[PARENT_VARIABLE])):
        lifeline.die()
    limit = MEMORY_LIMIT_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    request = msgpack.unpackb(sys.stdin.buffer.read())
    ctx = ExecutionContext(**request["context"])
    plain = outcome_to_plain(run_executor(resolve_executor(request["executor"]), ctx))
    if str(plain.get("failed", "")).startswith("MemoryError"):
        os._exit(OUT_OF_MEMORY)  # a runaway allocation is a crash of the attempt, not a failed step
    sys.stdout.buffer.write(msgpack.packb(plain, use_bin_type=True))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
