"""Pruning a run's graph for `retry(run, step)` (docs/architecture.md, "Work orders, runs and steps").

A retry re-executes the chosen task and everything downstream of it, takes
over the completed tasks that do not depend on it, and starts the new case
with the tokens that crossed from the kept part into the rest.

"Downstream" follows the tokens, not the net: a task is downstream when it
consumed or locked a token produced by the chosen task or by another task
downstream of it. Task ids are of one case, so a loop in the net is no
cycle here: each pass through it is a task of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from petriflow.engine.errors import NotFound
from petriflow.engine.records import GENESIS, TaskRecord, TokenRecord
from petriflow.engine.states import TaskState, TokenState


@dataclass(frozen=True)
class RetryPlan:
    """What a retry keeps, re-executes and starts the new case with.

    `rerun_task_ids`: the chosen task and its downstream. `kept_task_ids`:
    the completed tasks outside it, taken over as done. Tasks in neither
    (abandoned, failed or unfinished, not downstream) are simply not taken
    over: the new case runs them again if its tokens enable them.

    `seed_tokens` is the marking the old run would have had if only the kept
    tasks had fired: every token produced by a kept task or at genesis that
    no kept task took. These are the chosen task's inputs, and also outputs
    of kept tasks taken further down (a parallel branch feeding an AND join
    below the chosen task), or never taken at all. An end token consumed by
    the case's finisher is included like any other when a kept task
    produced it; that happens only when the chosen task is not upstream of
    the end (say, the losing competitor of a deferred choice), and then the
    new case starts with its end token, as the kept tasks left it."""

    rerun_task_ids: frozenset[str]
    kept_task_ids: frozenset[str]
    seed_tokens: tuple[TokenRecord, ...]


def _taker(token: TokenRecord) -> str | None:
    """The task that consumed or holds the token, or FINISHER; None while it is free."""
    if token.state == TokenState.CONSUMED:
        return token.consumed_by_task_id
    if token.state == TokenState.LOCKED:
        return token.locked_by_task_id
    return None


def plan_retry(tasks: Iterable[TaskRecord], tokens: Iterable[TokenRecord], chosen_task_id: str) -> RetryPlan:
    """Split the old run's tasks and tokens for a retry from `chosen_task_id`."""
    tasks, tokens = list(tasks), list(tokens)
    task_ids = {task.id for task in tasks}
    if chosen_task_id not in task_ids:
        raise NotFound(f"task {chosen_task_id!r} is not in the run")
    takers_of: dict[str, set[str]] = {}
    for token in tokens:
        taker = _taker(token)
        if taker in task_ids:
            takers_of.setdefault(token.produced_by_task_id, set()).add(taker)
    rerun: set[str] = set()
    pending = [chosen_task_id]
    while pending:
        task_id = pending.pop()
        if task_id not in rerun:
            rerun.add(task_id)
            pending.extend(takers_of.get(task_id, ()))
    kept = frozenset(task.id for task in tasks if task.state == TaskState.COMPLETED and task.id not in rerun)
    seeds = tuple(
        token
        for token in tokens
        if (token.produced_by_task_id in kept or token.produced_by_task_id == GENESIS) and _taker(token) not in kept
    )
    return RetryPlan(rerun_task_ids=frozenset(rerun), kept_task_ids=kept, seed_tokens=seeds)
