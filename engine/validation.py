"""The rules a workflow must keep before a case may run on it (the
README's "Workflows").

`validate` reports every broken rule at once, each naming the offending
element, so a user fixes a definition in one pass instead of one error per
try. It checks objects, not documents: workflows built in Python get the same
checks as those parsed by `engine.document`.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum

from petriflow.engine.conditions import ConditionSyntaxError, parse_condition
from petriflow.engine.document import (
    arc_ends,
    arc_label,
    auth_problems,
    choice_problem,
    element_label,
    is_integer,
    is_number,
)
from petriflow.engine.errors import InvalidWorkflow, PetriflowError
from petriflow.engine.workflow import (
    Arc,
    ArcDirection,
    JoinType,
    Place,
    PlaceType,
    RetryPolicy,
    SplitType,
    Transition,
    WebhookAuth,
    When,
    Workflow,
)

Node = tuple[str, str]  # ("place" | "transition", id): a place and a transition may share an id


def validate(wf: Workflow, resolve_executor: Callable[[str], object] | None = None) -> Workflow:
    """The workflow itself when it keeps every rule, else InvalidWorkflow
    listing all problems. `resolve_executor` (default: the engine's, which
    imports `module:attribute` executors) raises for a name it cannot resolve."""
    problems = [
        *_identity_problems(wf),
        *_place_problems(wf),
        *_arc_problems(wf),
        *_transition_problems(wf, resolve_executor or _engine_resolver()),
        *_path_problems(wf),
        *_trigger_problems(wf),
    ]
    if problems:
        raise InvalidWorkflow(problems)
    return wf


def _engine_resolver() -> Callable[[str], object]:
    from petriflow.engine.executors import resolve_executor  # executors import user code: only when asked

    return resolve_executor


def _quoted(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids)


def _enum_problem(owner: str, key: str, enum: type[StrEnum], value: object) -> Iterator[str]:
    if not isinstance(value, enum):
        yield choice_problem(owner, key, enum, value)


def _identity_problems(wf: Workflow) -> Iterator[str]:
    """Ids that are empty, used twice, or shared by a place and a transition; a bad version or limit."""
    if not isinstance(wf.id, str) or not wf.id.strip():
        yield f"workflow: id must be a non-empty string, got {wf.id!r}"
    if not is_integer(wf.version) or wf.version < 1:
        yield f"{element_label('workflow', None, wf.id)}: version must be an integer >= 1, got {wf.version!r}"
    if wf.concurrency is not None and not (is_integer(wf.concurrency) and wf.concurrency >= 1):
        yield (
            f"{element_label('workflow', None, wf.id)}: concurrency must be an integer >= 1 "
            f"(runs started at once) or null, got {wf.concurrency!r}"
        )
    named: tuple[tuple[str, Sequence[Place | Transition]], ...] = (("place", wf.places), ("transition", wf.transitions))
    for kind, elements in named:
        for index, element in enumerate(elements):
            if not isinstance(element.id, str) or not element.id.strip():
                yield f"{kind} {index}: id must be a non-empty string, got {element.id!r}"
        for element_id, count in Counter(e.id for e in elements).items():
            if count > 1:
                yield f"{kind} {element_id!r}: defined {count} times; ids must be unique"
    place_ids = {p.id for p in wf.places}
    for transition_id in dict.fromkeys(t.id for t in wf.transitions):
        if transition_id in place_ids:
            yield f"{transition_id!r} names both a place and a transition; ids must be unique"


def _place_problems(wf: Workflow) -> Iterator[str]:
    """Exactly one start and one end place; nothing flows into start or out of end."""
    for index, place in enumerate(wf.places):
        yield from _enum_problem(element_label("place", index, place.id), "type", PlaceType, place.type)
    for place_type in (PlaceType.START, PlaceType.END):
        ids = [p.id for p in wf.places if p.type is place_type]
        if not ids:
            yield f"no {place_type} place: a workflow needs exactly one place of type '{place_type}'"
        elif len(ids) > 1:
            yield f"{len(ids)} {place_type} places ({_quoted(ids)}): a workflow needs exactly one"
    for place in wf.places:
        for arc in wf.arcs:
            if arc.place_id != place.id:
                continue
            if place.type is PlaceType.START and arc.direction is ArcDirection.OUT:
                yield (
                    f"start place {place.id!r}: has an incoming arc from transition {arc.transition_id!r}; "
                    f"tokens only leave the start place"
                )
            if place.type is PlaceType.END and arc.direction is ArcDirection.IN:
                yield (
                    f"end place {place.id!r}: has an outgoing arc to transition {arc.transition_id!r}; "
                    f"a token in the end place finishes the case"
                )


def _arc_problems(wf: Workflow) -> Iterator[str]:
    """Arcs must link known nodes, in a known direction, once each."""
    place_ids = {p.id for p in wf.places}
    transition_ids = {t.id for t in wf.transitions}
    first_seen: dict[object, int] = {}
    for index, arc in enumerate(wf.arcs):
        if not isinstance(arc.direction, ArcDirection):
            yield from _enum_problem(f"arc {index}", "direction", ArcDirection, arc.direction)
            continue
        owner = arc_label(index, *arc_ends(arc))
        if arc.place_id not in place_ids:
            yield f"{owner}: unknown place {arc.place_id!r}"
        if arc.transition_id not in transition_ids:
            yield f"{owner}: unknown transition {arc.transition_id!r}"
        ends = (arc.place_id, arc.transition_id, arc.direction)
        if ends in first_seen:
            yield f"{owner}: duplicates arc {first_seen[ends]}"
        first_seen.setdefault(ends, index)
        yield from _when_problems(owner, arc)


def _when_problems(owner: str, arc: Arc) -> Iterator[str]:
    """`when` is for arcs out of a transition; an expression must parse."""
    if not isinstance(arc.when, str):
        yield f"{owner}: when must be a string, got {arc.when!r}"
        return
    if arc.direction is ArcDirection.IN:
        if arc.when != When.SUCCESS:
            yield f"{owner}: when is only for arcs from a transition to a place, not into a transition"
        return
    if arc.expression is not None:
        try:
            parse_condition(arc.expression)
        except ConditionSyntaxError as exc:
            yield f"{owner}: when {arc.when!r} is not a valid condition: {exc}"


def _transition_problems(wf: Workflow, resolve_executor: Callable[[str], object]) -> Iterator[str]:
    for index, transition in enumerate(wf.transitions):
        owner = element_label("transition", index, transition.id)
        in_places = wf.in_places(transition.id)
        out_places = list(dict.fromkeys(wf.out_places(transition.id)))
        if not in_places:
            yield f"{owner}: no in-arc, so nothing can enable it"
        if not out_places:
            yield f"{owner}: no out-arc, so its tokens go nowhere"
        yield from _enum_problem(owner, "join", JoinType, transition.join)
        yield from _enum_problem(owner, "split", SplitType, transition.split)
        yield from _split_problems(owner, wf.out_arcs(transition.id), transition)
        timeout = transition.timeout_s
        if timeout is not None and not (is_number(timeout) and timeout > 0):
            yield f"{owner}: timeout_s must be a positive number of seconds or null, got {timeout!r}"
        if not isinstance(transition.isolate, bool):
            yield f"{owner}: isolate must be true or false, got {transition.isolate!r}"
        yield from _retry_problems(owner, transition.retry)
        yield from _executor_problems(owner, transition, resolve_executor)


def _split_problems(owner: str, out_arcs: list[Arc], transition: Transition) -> Iterator[str]:
    """Some out-arc must take a success; `none` takes at most one arc per outcome."""
    on_success = [arc.place_id for arc in out_arcs if arc.on_success]
    on_failure = [arc.place_id for arc in out_arcs if arc.on_failure]
    if out_arcs and not on_success:
        yield f"{owner}: every out-arc is a failure arc, so a step that succeeds has nowhere to go"
    if transition.split is not SplitType.NONE:
        return
    for outcome, places in (("success", on_success), ("failure", on_failure)):
        if len(places) > 1:
            yield (
                f"{owner}: split 'none' issues one token per outcome, but on {outcome} it has "
                f"{len(places)} out-arcs ({_quoted(places)}); use split 'and' to feed them all, "
                f"or 'xor' or 'or' to choose by their conditions"
            )


def _param_problems(owner: str, transition: Transition, executor: object) -> Iterator[str]:
    """An executor may check its own params when the workflow is loaded
    (the `timer` its deadline); one that raises doing so is a problem too."""
    param_problems = getattr(executor, "param_problems", None)
    if not callable(param_problems):
        return
    try:
        problems = list(param_problems(transition.params))
    except Exception as exc:
        problems = [f"executor {transition.executor!r} cannot check its params: {type(exc).__name__}: {exc}"]
    for problem in problems:
        yield f"{owner}: {problem}"


def _retry_problems(owner: str, retry: RetryPolicy) -> Iterator[str]:
    if not isinstance(retry, RetryPolicy):
        yield f"{owner}: retry must be a RetryPolicy, got {retry!r}"
        return
    attempts = retry.max_attempts
    if not is_integer(attempts) or attempts < 1:
        yield f"{owner}: retry.max_attempts must be an integer >= 1, got {attempts!r}"
    if not (is_number(retry.backoff_s) and retry.backoff_s >= 0):
        yield f"{owner}: retry.backoff_s must be a number >= 0, got {retry.backoff_s!r}"


def _executor_problems(owner: str, transition: Transition, resolve_executor: Callable[[str], object]) -> Iterator[str]:
    """A user's executor module may fail to import in any way; each failure is
    this transition's problem, not a crash of the validator."""
    try:
        executor = resolve_executor(transition.executor)
    except PetriflowError as exc:
        yield f"{owner}: executor {transition.executor!r} cannot be resolved: {exc}"
    except Exception as exc:
        yield f"{owner}: executor {transition.executor!r} cannot be resolved: {type(exc).__name__}: {exc}"
    else:
        yield from _param_problems(owner, transition, executor)


def _trigger_problems(wf: Workflow) -> Iterator[str]:
    """A trigger's auth keeps the document's rules (webhook triggers only, a
    known type, a header and a secret's variable name where it needs them)."""
    for index, trigger in enumerate(wf.triggers):
        if trigger.auth is None:
            continue
        owner = element_label("trigger", index, trigger.id)
        if not isinstance(trigger.auth, WebhookAuth):
            yield f"{owner}: auth must be a WebhookAuth or None, got {type(trigger.auth).__name__}"
            continue
        fields = {k: v for k, v in dataclasses.asdict(trigger.auth).items() if v is not None}
        yield from auth_problems(owner, trigger.type, fields)


def _path_problems(wf: Workflow) -> Iterator[str]:
    """Every place and transition lies on a path from the start place to the
    end place. Checked only with one start and one end, which the place
    rules report otherwise."""
    starts = [p.id for p in wf.places if p.type is PlaceType.START]
    ends = [p.id for p in wf.places if p.type is PlaceType.END]
    if len(starts) != 1 or len(ends) != 1:
        return
    forward: dict[Node, list[Node]] = {}
    backward: dict[Node, list[Node]] = {}
    for arc in wf.arcs:
        place, transition = ("place", arc.place_id), ("transition", arc.transition_id)
        source, target = (place, transition) if arc.direction is ArcDirection.IN else (transition, place)
        forward.setdefault(source, []).append(target)
        backward.setdefault(target, []).append(source)
    from_start = _reachable(("place", starts[0]), forward)
    to_end = _reachable(("place", ends[0]), backward)
    nodes = [("place", p.id) for p in wf.places] + [("transition", t.id) for t in wf.transitions]
    for node in dict.fromkeys(nodes):
        kind, node_id = node
        if node not in from_start:
            yield f"{kind} {node_id!r}: not reachable from start place {starts[0]!r}"
        if node not in to_end:
            yield f"{kind} {node_id!r}: cannot reach end place {ends[0]!r}"


def _reachable(origin: Node, edges: dict[Node, list[Node]]) -> set[Node]:
    seen = {origin}
    pending = deque([origin])
    while pending:
        for successor in edges.get(pending.popleft(), []):
            if successor not in seen:
                seen.add(successor)
                pending.append(successor)
    return seen
