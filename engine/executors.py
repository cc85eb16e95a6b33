"""The executor protocol and the built-in executors.

An executor is what a transition does. `execute` answers at once with an
`Outcome`: `Completed(output)`, `Started()` (the work was handed off; a client
finishes it later with `CompleteWorkitem`), or `Failed(reason)`. Executors
that may take a while say `blocking = True` and the Workitem actor runs them
off its message loop. An executor starts only once the record that its
attempt began is committed, except one that declares `pure = True`: a
function of its input with no side effect (the built-in noop, echo,
manual and fail), which runs at once and whose outcome commits with it.
Side effects are at-least-once: a workitem restored from `started` runs again with a higher `attempt` and the same
`idempotency_key` (its id), so user code can deduplicate.
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from petriflow.engine import timers
from petriflow.engine.errors import ExecutorNotFound


@dataclass(frozen=True)
class ExecutionContext:
    workitem_id: str
    case_id: str
    task_id: str
    workflow_id: str
    transition_id: str
    attempt: int
    input: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def idempotency_key(self) -> str:
        return self.workitem_id


@dataclass(frozen=True)
class Completed:
    output: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Started:
    """The work goes on elsewhere; `CompleteWorkitem` will finish it."""


@dataclass(frozen=True)
class Failed:
    reason: str


Outcome = Completed | Started | Failed


@runtime_checkable
class Executor(Protocol):
    blocking: bool

    def execute(self, ctx: ExecutionContext) -> Outcome: ...

    def abandon(self, ctx: ExecutionContext) -> None: ...

    def build_token_payload(self, outputs: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]: ...


def merge_payloads(payloads: list[dict[str, Any]]) -> dict[str, Any]:
    """Later payloads win on key clashes; the order is the caller's."""
    merged: dict[str, Any] = {}
    for payload in payloads:
        merged.update(payload)
    return merged


class BaseExecutor:
    """Defaults for the optional parts of the protocol."""

    blocking = True
    pure = False

    def execute(self, ctx: ExecutionContext) -> Outcome:  # pragma: no cover - abstract
        raise NotImplementedError

    def abandon(self, ctx: ExecutionContext) -> None:
        """Nothing to undo by default."""

    def build_token_payload(self, outputs: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
        return merge_payloads(outputs)


class Noop(BaseExecutor):
    """Passes its input through unchanged."""

    blocking = False
    pure = True

    def execute(self, ctx: ExecutionContext) -> Outcome:
        return Completed(dict(ctx.input))


class Echo(BaseExecutor):
    """Output = the input tokens' payloads merged with the params."""

    blocking = False
    pure = True

    def execute(self, ctx: ExecutionContext) -> Outcome:
        return Completed({**ctx.input, **ctx.params})


class Sleep(BaseExecutor):
    """Sleeps `params.seconds`, then passes its input through."""

    def execute(self, ctx: ExecutionContext) -> Outcome:
        time.sleep(float(ctx.params.get("seconds", 0)))
        return Completed(dict(ctx.input))


class Manual(BaseExecutor):
    """Waits for a person or client code to complete the workitem."""

    blocking = False
    pure = True

    def execute(self, ctx: ExecutionContext) -> Outcome:
        return Started()


class Fail(BaseExecutor):
    """Fails with `params.reason`; with `params.times = N` only its first N attempts fail."""

    blocking = False
    pure = True

    def execute(self, ctx: ExecutionContext) -> Outcome:
        times = ctx.params.get("times")
        if times is not None and ctx.attempt > int(times):
            return Completed(dict(ctx.input))
        return Failed(str(ctx.params.get("reason", "failed by the fail executor")))


class Timer(BaseExecutor):
    """Fires at its deadline (`params.seconds` after its task was enabled, or
    `params.until`), then passes its input through. The wait is its task's
    (`engine.timers`): by the time this runs, the deadline has passed."""

    blocking = False
    pure = True

    @staticmethod
    def param_problems(params: dict[str, Any]) -> list[str]:
        return timers.param_problems(params)

    def execute(self, ctx: ExecutionContext) -> Outcome:
        return Completed(dict(ctx.input))


class CallableExecutor(BaseExecutor):
    """Wraps a plain function `fn(ctx)`: a dict or None means completed,
    an `Outcome` is taken as is."""

    def __init__(self, fn: Callable[[ExecutionContext], Any]) -> None:
        self.fn = fn

    def execute(self, ctx: ExecutionContext) -> Outcome:
        result = self.fn(ctx)
        if isinstance(result, (Completed, Started, Failed)):
            return result
        if result is None:
            return Completed({})
        if isinstance(result, dict):
            return Completed(result)
        return Failed(f"executor returned {type(result).__name__}, expected a dict, None or an Outcome")


BUILTIN: dict[str, type[BaseExecutor]] = {
    "noop": Noop,
    "echo": Echo,
    "sleep": Sleep,
    "manual": Manual,
    "fail": Fail,
    timers.EXECUTOR: Timer,
}

_resolved: dict[str, Executor] = {}


def resolve_executor(name: str) -> Executor:
    """A built-in name, or `module:attribute` naming an executor class,
    an executor instance or a plain callable."""
    if name in _resolved:
        return _resolved[name]
    executor = _resolve(name)
    _resolved[name] = executor
    return executor


def _resolve(name: str) -> Executor:
    if not isinstance(name, str) or not name:
        raise ExecutorNotFound(f"executor name must be a non-empty string, got {name!r}")
    if name in BUILTIN:
        return BUILTIN[name]()
    module_name, sep, attribute = name.partition(":")
    if not sep or not module_name or not attribute:
        raise ExecutorNotFound(f"unknown executor {name!r}: use one of {sorted(BUILTIN)} or 'module:attribute'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ExecutorNotFound(f"executor {name!r}: cannot import module {module_name!r} ({exc})") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ExecutorNotFound(
                f"executor {name!r}: module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if inspect.isclass(target):
        target = target()
    if isinstance(target, Executor):
        return target
    if callable(target):
        return CallableExecutor(target)
    raise ExecutorNotFound(f"executor {name!r} is neither an executor nor callable")


def run_executor(executor: Executor, ctx: ExecutionContext) -> Outcome:
    """One attempt. User code that raises is a failed step, not a crashed engine."""
    try:
        outcome = executor.execute(ctx)
    except Exception as exc:
        return Failed(f"{type(exc).__name__}: {exc}")
    if not isinstance(outcome, (Completed, Started, Failed)):
        return Failed(f"executor returned {type(outcome).__name__}, expected Completed, Started or Failed")
    return outcome


def outcome_to_plain(outcome: Outcome) -> dict[str, Any]:
    """An outcome as plain data, to cross a process boundary (`isolate`)."""
    if isinstance(outcome, Completed):
        return {"completed": outcome.output}
    if isinstance(outcome, Started):
        return {"started": True}
    return {"failed": outcome.reason}


def outcome_from_plain(plain: dict[str, Any]) -> Outcome:
    if "completed" in plain:
        return Completed(dict(plain["completed"]))
    if "started" in plain:
        return Started()
    return Failed(str(plain["failed"]))
