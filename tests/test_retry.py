"""Retry-graph pruning: which tasks a retry keeps and re-executes, and the
tokens its new case starts with, on task and token records built by hand."""

from __future__ import annotations

import pytest

from petriflow.engine.errors import NotFound
from petriflow.engine.records import FINISHER, GENESIS, TaskRecord, TokenRecord
from petriflow.engine.retry import RetryPlan, plan_retry
from petriflow.engine.states import TaskState, TokenState

DONE, ABANDONED, STARTED = TaskState.COMPLETED, TaskState.ABANDONED, TaskState.STARTED


def task(task_id: str, state: TaskState = DONE) -> TaskRecord:
    return TaskRecord(id=task_id, case_id="case-1", workflow_id="wf", transition_id=task_id, state=state)


def token(
    token_id: str,
    place: str,
    produced_by: str = GENESIS,
    *,
    consumed_by: str | None = None,
    locked_by: str | None = None,
) -> TokenRecord:
    """A token as storage leaves it: a task locks before it consumes; the finisher consumes a free token."""
    if consumed_by is not None:
        state = TokenState.CONSUMED
        locked_by = None if consumed_by == FINISHER else consumed_by
    else:
        state = TokenState.LOCKED if locked_by is not None else TokenState.FREE
    return TokenRecord(
        id=token_id,
        case_id="case-1",
        workflow_id="wf",
        place_id=place,
        state=state,
        produced_by_task_id=produced_by,
        locked_by_task_id=locked_by,
        consumed_by_task_id=consumed_by,
    )


def plan(tasks, tokens, chosen) -> tuple[set[str], set[str], list[str]]:
    result = plan_retry(tasks, tokens, chosen)
    assert isinstance(result, RetryPlan)
    return set(result.rerun_task_ids), set(result.kept_task_ids), [t.id for t in result.seed_tokens]


# -- a sequence: start -> a -> p1 -> b -> p2 -> c -> end ------------------------------

SEQUENCE_TASKS = [task("a"), task("b"), task("c")]
SEQUENCE_TOKENS = [
    token("g", "start", consumed_by="a"),
    token("t1", "p1", "a", consumed_by="b"),
    token("t2", "p2", "b", consumed_by="c"),
    token("t3", "end", "c", consumed_by=FINISHER),
]


@pytest.mark.parametrize(
    "chosen,rerun,kept,seeds",
    [
        ("b", {"b", "c"}, {"a"}, ["t1"]),
        ("a", {"a", "b", "c"}, set(), ["g"]),
        ("c", {"c"}, {"a", "b"}, ["t2"]),
    ],
)
def test_sequence(chosen, rerun, kept, seeds):
    assert plan(SEQUENCE_TASKS, SEQUENCE_TOKENS, chosen) == (rerun, kept, seeds)


def test_sequence_that_failed_at_b_keeps_a_and_seeds_the_token_b_held():
    tasks = [task("a"), task("b", ABANDONED)]
    tokens = [token("g", "start", consumed_by="a"), token("t1", "p1", "a", locked_by="b")]
    assert plan(tasks, tokens, "b") == ({"b"}, {"a"}, ["t1"])


def test_seed_tokens_are_the_old_records():
    assert plan_retry(SEQUENCE_TASKS, SEQUENCE_TOKENS, "b").seed_tokens == (SEQUENCE_TOKENS[1],)


# -- AND split and join: start -> s -> (p1 -> b1 -> q1, p2 -> b2 -> q2) -> j -> end --------


def test_and_split_failed_at_b1_keeps_the_finished_branch():
    tasks = [task("s"), task("b1", ABANDONED), task("b2"), task("j", STARTED)]
    tokens = [
        token("g", "start", consumed_by="s"),
        token("p1", "p1", "s", locked_by="b1"),
        token("p2", "p2", "s", consumed_by="b2"),
        token("q2", "q2", "b2"),  # free at the join's in-place: the join waits for q1
    ]
    assert plan(tasks, tokens, "b1") == ({"b1"}, {"s", "b2"}, ["p1", "q2"])


SUCCEEDED_TASKS = [task("s"), task("b1"), task("b2"), task("j")]
SUCCEEDED_TOKENS = [
    token("g", "start", consumed_by="s"),
    token("p1", "p1", "s", consumed_by="b1"),
    token("p2", "p2", "s", consumed_by="b2"),
    token("q1", "q1", "b1", consumed_by="j"),
    token("q2", "q2", "b2", consumed_by="j"),
    token("end", "end", "j", consumed_by=FINISHER),
]


@pytest.mark.parametrize(
    "chosen,rerun,kept,seeds",
    [
        # b2's output crossed into the re-executed join: the new join needs it
        ("b1", {"b1", "j"}, {"s", "b2"}, ["p1", "q2"]),
        ("b2", {"b2", "j"}, {"s", "b1"}, ["p2", "q1"]),
        ("j", {"j"}, {"s", "b1", "b2"}, ["q1", "q2"]),
        ("s", {"s", "b1", "b2", "j"}, set(), ["g"]),
    ],
)
def test_and_split_that_succeeded(chosen, rerun, kept, seeds):
    assert plan(SUCCEEDED_TASKS, SUCCEEDED_TOKENS, chosen) == (rerun, kept, seeds)


def test_an_unfinished_branch_is_neither_kept_nor_rerun_and_its_input_is_seeded():
    """b2 was still executing when b1 failed: not done, so the new case runs it again."""
    tasks = [task("s"), task("b1", ABANDONED), task("b2", ABANDONED)]
    tokens = [
        token("g", "start", consumed_by="s"),
        token("p1", "p1", "s", locked_by="b1"),
        token("p2", "p2", "s", locked_by="b2"),
    ]
    assert plan(tasks, tokens, "b1") == ({"b1"}, {"s"}, ["p1", "p2"])


# -- deferred choice: start -> x -> p; a and b compete for p; both lead to end --------

CHOICE_TASKS = [task("x"), task("a"), task("b", ABANDONED)]
CHOICE_TOKENS = [
    token("g", "start", consumed_by="x"),
    token("p", "p", "x", consumed_by="a"),  # a won; b never took anything
    token("end", "end", "a", consumed_by=FINISHER),
]


@pytest.mark.parametrize(
    "chosen,rerun,kept,seeds",
    [
        # the new case offers p to a and b again: the choice is made anew
        ("a", {"a"}, {"x"}, ["p"]),
        ("x", {"x", "a"}, set(), ["g"]),
        # the loser is upstream of nothing: the kept part already reached the end
        ("b", {"b"}, {"x", "a"}, ["end"]),
    ],
)
def test_deferred_choice(chosen, rerun, kept, seeds):
    assert plan(CHOICE_TASKS, CHOICE_TOKENS, chosen) == (rerun, kept, seeds)


def test_a_loop_follows_task_instances_not_transitions():
    """start -> a -> p -> b -> (back to start, or end): a ran twice, as two tasks."""
    tasks = [task("a1"), task("b1"), task("a2"), task("b2")]
    tokens = [
        token("g", "start", consumed_by="a1"),
        token("t1", "p", "a1", consumed_by="b1"),
        token("t2", "start", "b1", consumed_by="a2"),
        token("t3", "p", "a2", consumed_by="b2"),
        token("end", "end", "b2", consumed_by=FINISHER),
    ]
    assert plan(tasks, tokens, "a2") == ({"a2", "b2"}, {"a1", "b1"}, ["t2"])


def test_an_unknown_task_is_not_found():
    with pytest.raises(NotFound, match="task 'nope' is not in the run"):
        plan_retry(SEQUENCE_TASKS, SEQUENCE_TOKENS, "nope")
