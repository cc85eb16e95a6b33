"""Join and split rules: which tokens enable a task, which tokens it issues.

Pure functions over a workflow and token records, shared by the Case and
Task actors so both apply the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from petriflow.engine.conditions import parse_condition
from petriflow.engine.errors import NoRoute
from petriflow.engine.executors import merge_payloads
from petriflow.engine.records import TokenRecord, new_id
from petriflow.engine.states import TokenState
from petriflow.engine.workflow import Arc, JoinType, SplitType, Workflow


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


def in_order(workflow: Workflow, transition_id: str, tokens: Iterable[TokenRecord]) -> list[TokenRecord]:
    """The order in which payloads merge into the workitem's input: by in-place, then age."""
    rank = {place: i for i, place in enumerate(workflow.in_places(transition_id))}
    return sorted(tokens, key=lambda t: (rank.get(t.place_id, 0), t.created_at))


def workitem_input(workflow: Workflow, transition_id: str, tokens: Iterable[TokenRecord]) -> dict[str, Any]:
    """A workitem's input: the merge of the tokens its task took, `in_order`."""
    return merge_payloads([t.payload for t in in_order(workflow, transition_id, tokens)])


def arcs_taken(
    workflow: Workflow, transition_id: str, *, output: dict[str, Any], input: dict[str, Any], failed: bool = False
) -> list[Arc]:
    """The out-arcs a completed step's token goes along, in document order.

    A success takes the arcs whose condition holds (`success`, `always`, or
    an expression over `output` and `input` that is true); a failure the
    `failure` and `always` arcs. `xor` and `none` keep the first of them
    (validation lets `none` have one per outcome), `and` and `or` all.
    Raises NoRoute when none is taken."""
    transition = workflow.transition(transition_id)
    arcs = [
        arc
        for arc in workflow.out_arcs(transition_id)
        if (arc.on_failure if failed else arc.on_success and _holds(arc, output, input))
    ]
    if not arcs:
        outcome = "failure" if failed else "output"
        raise NoRoute(f"no out-arc of transition {transition_id!r} holds for its {outcome}")
    return arcs[:1] if transition.split in (SplitType.XOR, SplitType.NONE) else arcs


def _holds(arc: Arc, output: dict[str, Any], input: dict[str, Any]) -> bool:
    return arc.expression is None or parse_condition(arc.expression).holds(output, input)


def failure_payload(kind: str, reason: str, input: dict[str, Any]) -> dict[str, Any]:
    """What a failure arc's token carries: the error and the step's input, to handle or retry it."""
    return {"error": {"kind": kind, "reason": reason}, "input": dict(input)}


def issue_tokens(
    workflow: Workflow,
    transition_id: str,
    *,
    case_id: str,
    task_id: str,
    payload: dict[str, Any],
    input: dict[str, Any] | None = None,
    failed: bool = False,
) -> list[TokenRecord]:
    """New free tokens for a completed task, one per arc taken (`arcs_taken`);
    `input` is its workitem's, which conditions may read."""
    return [
        TokenRecord(
            id=new_id(),
            case_id=case_id,
            workflow_id=workflow.id,
            place_id=arc.place_id,
            payload=dict(payload),
            produced_by_task_id=task_id,
        )
        for arc in arcs_taken(workflow, transition_id, output=payload, input=input or {}, failed=failed)
    ]


def is_finished(workflow: Workflow, live_tokens: Iterable[TokenRecord]) -> bool:
    """A case is finished when a token lies in the end place and no free or
    locked token lies anywhere else."""
    live = [t for t in live_tokens if t.state is not TokenState.CONSUMED]
    end = workflow.end_place.id
    return any(t.place_id == end for t in live) and all(t.place_id == end for t in live)
