"""Join and split rules: which tokens enable a task, which tokens it issues.

Pure functions over a workflow and token records, shared by the Case and
Task actors so both apply the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from petriflow.engine.records import TokenRecord, new_id
from petriflow.engine.states import TokenState
from petriflow.engine.workflow import JoinType, SplitType, Workflow


def _oldest(tokens: Iterable[TokenRecord]) -> TokenRecord:
    return min(tokens, key=lambda t: (t.created_at, t.id))


def genesis_token(workflow: Workflow, case_id: str, payload: dict[str, Any]) -> TokenRecord:
    """The token a new case begins with: the input, in the start place."""
    return TokenRecord(
        id=new_id(), case_id=case_id, workflow_id=workflow.id, place_id=workflow.start_place.id, payload=dict(payload)
    )


def tokens_to_lock(workflow: Workflow, transition_id: str, offered: Iterable[TokenRecord]) -> list[TokenRecord] | None:
    """The tokens that enable the transition, or None when it is not enabled.

    `none` join: any one offered token (the oldest). `and` join: the oldest
    token of every in-place, and only if every in-place has one."""
    transition = workflow.transition(transition_id)
    by_place: dict[str, list[TokenRecord]] = {}
    for token in offered:
        if token.state is TokenState.FREE:
            by_place.setdefault(token.place_id, []).append(token)
    in_places = workflow.in_places(transition_id)
    if transition.join is JoinType.AND:
        if not all(by_place.get(place) for place in in_places):
            return None
        return [_oldest(by_place[place]) for place in in_places]
    candidates = [t for place in in_places for t in by_place.get(place, [])]
    return [_oldest(candidates)] if candidates else None


def issue_tokens(
    workflow: Workflow, transition_id: str, *, case_id: str, task_id: str, payload: dict[str, Any]
) -> list[TokenRecord]:
    """New free tokens for a completed task: one per out-place for an `and`
    split, one in the single out-place for `none`."""
    transition = workflow.transition(transition_id)
    out_places = workflow.out_places(transition_id)
    if transition.split is SplitType.NONE:
        out_places = out_places[:1]
    return [
        TokenRecord(
            id=new_id(),
            case_id=case_id,
            workflow_id=workflow.id,
            place_id=place,
            payload=dict(payload),
            produced_by_task_id=task_id,
        )
        for place in out_places
    ]


def is_finished(workflow: Workflow, live_tokens: Iterable[TokenRecord]) -> bool:
    """A case is finished when a token lies in the end place and no free or
    locked token lies anywhere else."""
    live = [t for t in live_tokens if t.state is not TokenState.CONSUMED]
    end = workflow.end_place.id
    return any(t.place_id == end for t in live) and all(t.place_id == end for t in live)
