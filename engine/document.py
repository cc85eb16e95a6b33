"""The workflow document: the JSON shape of a workflow (the README's "Workflows" section).

Parsing checks the document's shape only and lists every offending element in
one `InvalidWorkflow`, so a user fixes a file in one pass. The rules of the
net (one start place, paths, resolvable executors) are `engine.validation`'s
job: storage reads stored workflows back with `workflow_from_document`
without importing anyone's executors. Unknown keys are ignored, so documents
may carry annotations, except in a trigger's `auth`: there a misspelt key
would silently weaken a check, so it is refused. Positions in messages ("place 1", "arc 2") count
from 0, as in the JSON arrays.

`workflow_to_document` writes the normalised document: every field present,
defaults filled in (but `isolate` only when true, a trigger's `auth` only
when it checks something, an arc's `when` only when it is not `success` and
`concurrency` only when set, so documents stored before any of them existed
compare equal), so two equal workflows always give equal documents (the
store compares them to refuse a changed definition under an old version).
"""

from __future__ import annotations

import copy
import json
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

from petriflow.engine.errors import InvalidWorkflow
from petriflow.engine.workflow import (
    Arc,
    ArcDirection,
    JoinType,
    Place,
    PlaceType,
    RetryPolicy,
    SplitType,
    Transition,
    Trigger,
    WebhookAuth,
    When,
    Workflow,
    WorkflowState,
)

_MISSING = object()

_JSON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),
    ((int, float), "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)


def json_type(value: object) -> str:
    """What JSON calls the type of a parsed value, for errors a user reads."""
    return next((name for cls, name in _JSON_TYPES if isinstance(value, cls)), type(value).__name__)


def is_integer(value: object) -> bool:
    """An integer as JSON means it: True and False are not numbers."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def element_label(kind: str, index: int | None, element_id: object) -> str:
    """ "place 'fetched'" when the element has a usable id, else its position:
    "place 3" (or just "workflow", which has none)."""
    if isinstance(element_id, str) and element_id:
        return f"{kind} {element_id!r}"
    return kind if index is None else f"{kind} {index}"


def arc_label(index: int, source: object, target: object) -> str:
    """ "arc 2 (fetched -> post)", the way the document writes the arc."""
    if isinstance(source, str) and isinstance(target, str):
        return f"arc {index} ({source} -> {target})"
    return f"arc {index}"


def arc_ends(arc: Arc) -> tuple[str, str]:
    """(from, to) of an arc: place -> transition for `in`, the reverse for `out`."""
    if arc.direction is ArcDirection.IN:
        return arc.place_id, arc.transition_id
    return arc.transition_id, arc.place_id


def choice_problem(owner: str, key: str, enum: type[StrEnum], value: object) -> str:
    """The problem for a value outside an enum, e.g. "join must be 'none' or 'and', got 'xor'"."""
    values = [member.value for member in enum]
    if value in values:  # a plain string where the enum member is needed
        return f"{owner}: {key} must be {enum.__name__}({value!r}), not the plain string {value!r}"
    quoted = [repr(v) for v in values]
    return f"{owner}: {key} must be {', '.join(quoted[:-1])} or {quoted[-1]}, got {value!r}"


_EXPECTED = {
    "a string": lambda v: isinstance(v, str),
    "an integer": is_integer,
    "a number": is_number,
    "a boolean": lambda v: isinstance(v, bool),
    "an object": lambda v: isinstance(v, dict),
    "an array": lambda v: isinstance(v, list),
}


class _Reader:
    """Reads fields of a JSON object, collecting every problem instead of
    stopping at the first; a field with a problem reads as None."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def field(
        self, obj: dict[str, Any], key: str, owner: str, expected: str, default: Any = _MISSING, nullable: bool = False
    ) -> Any:
        value = obj.get(key, default)
        if value is _MISSING:
            self.problems.append(f"{owner}: {key} is missing")
            return None
        if (value is None and nullable) or _EXPECTED[expected](value):
            return value
        wanted = f"{expected} or null" if nullable else expected
        self.problems.append(f"{owner}: {key} must be {wanted}, got {json_type(value)}")
        return None

    def choice(self, obj: dict[str, Any], key: str, owner: str, enum: type[StrEnum], default: StrEnum) -> Any:
        value = obj.get(key, default.value)
        if isinstance(value, str) and value in [member.value for member in enum]:
            return enum(value)
        self.problems.append(choice_problem(owner, key, enum, value))
        return None

    def objects(
        self, obj: dict[str, Any], key: str, owner: str, kind: str, default: Any = _MISSING
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """(position, element) of an array of objects; None if it is no array."""
        items = self.field(obj, key, owner, "an array", default)
        if items is None:
            return None
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                self.problems.append(f"{kind} {index}: must be an object, got {json_type(item)}")
        return [(index, item) for index, item in enumerate(items) if isinstance(item, dict)]


def _place(reader: _Reader, index: int, doc: dict[str, Any]) -> Place:
    owner = element_label("place", index, doc.get("id"))
    return Place(
        id=reader.field(doc, "id", owner, "a string"),
        type=reader.choice(doc, "type", owner, PlaceType, PlaceType.NORMAL),
    )


def _retry(reader: _Reader, owner: str, doc: dict[str, Any]) -> RetryPolicy:
    defaults = RetryPolicy()
    retry = reader.field(doc, "retry", owner, "an object", {})
    if retry is None:
        return defaults
    return RetryPolicy(
        max_attempts=reader.field(retry, "max_attempts", f"{owner}: retry", "an integer", defaults.max_attempts),
        backoff_s=reader.field(retry, "backoff_s", f"{owner}: retry", "a number", defaults.backoff_s),
    )


def _transition(reader: _Reader, index: int, doc: dict[str, Any]) -> Transition:
    owner = element_label("transition", index, doc.get("id"))
    return Transition(
        id=reader.field(doc, "id", owner, "a string"),
        executor=reader.field(doc, "executor", owner, "a string", "noop"),
        params=copy.deepcopy(reader.field(doc, "params", owner, "an object", {})),
        join=reader.choice(doc, "join", owner, JoinType, JoinType.NONE),
        split=reader.choice(doc, "split", owner, SplitType, SplitType.NONE),
        timeout_s=reader.field(doc, "timeout_s", owner, "a number", None, nullable=True),
        retry=_retry(reader, owner, doc),
        isolate=reader.field(doc, "isolate", owner, "a boolean", False),
    )


AUTH_TYPES = ("api_key", "hmac_sha256", "none")
_AUTH_KEYS = ("type", "header", "secret_env")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an HTTP token (RFC 9110)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def auth_problems(owner: str, trigger_type: object, auth: dict[str, Any]) -> list[str]:
    """What is wrong with a trigger's `auth` object (a null field counts as
    absent); `validation` checks a `WebhookAuth`'s fields with it too. A bad
    `secret_env` is not quoted back: it may be the secret itself, misplaced."""
    problems = []
    if isinstance(trigger_type, str) and trigger_type != "webhook":
        problems.append(f"{owner}: auth is only for webhook triggers, not {trigger_type!r} ones")
    unknown = [key for key in auth if key not in _AUTH_KEYS]
    if unknown:
        keys = ", ".join(repr(key) for key in unknown)
        problems.append(f"{owner}: auth has unknown key(s) {keys}; it takes type, header and secret_env")
    kind = auth.get("type")
    if kind is None:
        problems.append(f"{owner}: auth.type is missing (one of {', '.join(AUTH_TYPES)})")
        return problems
    if not isinstance(kind, str) or kind not in AUTH_TYPES:
        shown = repr(kind) if isinstance(kind, str) else json_type(kind)
        problems.append(f"{owner}: auth.type must be one of {', '.join(AUTH_TYPES)}, got {shown}")
        return problems
    if kind == "none":
        extra = [key for key in ("header", "secret_env") if auth.get(key) is not None]
        if extra:
            problems.append(f"{owner}: auth type 'none' takes no {' or '.join(extra)}")
        return problems
    header, secret_env = auth.get("header"), auth.get("secret_env")
    if header is None:
        problems.append(f"{owner}: auth.header is missing: auth type {kind!r} needs the request header to check")
    elif not isinstance(header, str):
        problems.append(f"{owner}: auth.header must be a string, got {json_type(header)}")
    elif not _HEADER_NAME.fullmatch(header):
        problems.append(
            f"{owner}: auth.header must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got {header!r}"
        )
    if secret_env is None:
        problems.append(
            f"{owner}: auth.secret_env is missing: auth type {kind!r} needs the name of the environment "
            f"variable holding the secret"
        )
    elif not isinstance(secret_env, str):
        problems.append(f"{owner}: auth.secret_env must be a string, got {json_type(secret_env)}")
    elif not _ENV_NAME.fullmatch(secret_env):
        problems.append(
            f"{owner}: auth.secret_env must be the name of an environment variable ([A-Za-z_][A-Za-z0-9_]*); "
            f"the document holds that name, never the secret (the value given is not shown)"
        )
    return problems


def _auth(reader: _Reader, owner: str, trigger_type: object, doc: dict[str, Any]) -> WebhookAuth | None:
    """A trigger's auth; None for none (absent, null or type 'none'), so equal workflows compare equal."""
    auth = reader.field(doc, "auth", owner, "an object", None, nullable=True)
    if auth is None:
        return None
    problems = auth_problems(owner, trigger_type, auth)
    if problems:
        reader.problems.extend(problems)
        return None
    if auth["type"] == "none":
        return None
    return WebhookAuth(type=auth["type"], header=auth["header"], secret_env=auth["secret_env"])


def _trigger(reader: _Reader, index: int, doc: dict[str, Any]) -> Trigger:
    owner = element_label("trigger", index, doc.get("id"))
    trigger_id = reader.field(doc, "id", owner, "a string")
    trigger_type = reader.field(doc, "type", owner, "a string")
    cron = reader.field(doc, "cron", owner, "a string", None, nullable=True)
    return Trigger(id=trigger_id, type=trigger_type, cron=cron, auth=_auth(reader, owner, trigger_type, doc))


def _trigger_document(trigger: Trigger) -> dict[str, Any]:
    """A trigger's document; `auth` only when it checks something, in full."""
    document: dict[str, Any] = {"id": trigger.id, "type": trigger.type, "cron": trigger.cron}
    if trigger.auth is not None and trigger.auth != WebhookAuth():
        document["auth"] = auth_document(trigger.auth)
    return document


def auth_document(auth: WebhookAuth | None) -> dict[str, Any]:
    """A trigger's auth in full, `{"type": "none"}` for none: what the HTTP
    server checks a call against, and sends back with the submit."""
    if auth is None or auth.type == "none":
        return {"type": "none"}
    return {"type": auth.type, "header": auth.header, "secret_env": auth.secret_env}


def auth_from_document(document: dict[str, Any]) -> WebhookAuth:
    """The inverse of `auth_document`, for a document it made."""
    return WebhookAuth(
        type=document.get("type", "none"), header=document.get("header"), secret_env=document.get("secret_env")
    )


def _arc(reader: _Reader, index: int, doc: dict[str, Any], places: set[str], transitions: set[str]) -> Arc | None:
    """The arc's direction follows from which ends are places and which transitions."""
    owner = arc_label(index, doc.get("from"), doc.get("to"))
    source = reader.field(doc, "from", owner, "a string")
    target = reader.field(doc, "to", owner, "a string")
    when = reader.field(doc, "when", owner, "a string", When.SUCCESS.value)
    if source is None or target is None or when is None:
        return None
    if source in places and target in transitions:
        return Arc(place_id=source, transition_id=target, direction=ArcDirection.IN, when=when)
    if source in transitions and target in places:
        return Arc(place_id=target, transition_id=source, direction=ArcDirection.OUT, when=when)
    unknown = [node for node in (source, target) if node not in places and node not in transitions]
    for node in unknown:
        reader.problems.append(f"{owner}: unknown node {node!r}")
    if not unknown:
        kind = "places" if source in places else "transitions"
        reader.problems.append(f"{owner}: both ends are {kind}; an arc links a place and a transition")
    return None


def workflow_from_document(doc: dict[str, Any]) -> Workflow:
    """The workflow a document describes; raises InvalidWorkflow naming every
    element of the wrong shape. Does not check the net's rules: see `validate`."""
    if not isinstance(doc, dict):
        raise InvalidWorkflow([f"workflow document must be a JSON object, got {json_type(doc)}"])
    reader = _Reader()
    owner = element_label("workflow", None, doc.get("id"))
    workflow_id = reader.field(doc, "id", owner, "a string")
    version = reader.field(doc, "version", owner, "an integer", 1)
    state = reader.choice(doc, "state", owner, WorkflowState, WorkflowState.ACTIVE)
    metadata = copy.deepcopy(reader.field(doc, "metadata", owner, "an object", {}))
    concurrency = reader.field(doc, "concurrency", owner, "an integer", None, nullable=True)
    place_docs = reader.objects(doc, "places", owner, "place")
    transition_docs = reader.objects(doc, "transitions", owner, "transition")
    arc_docs = reader.objects(doc, "arcs", owner, "arc")
    trigger_docs = reader.objects(doc, "triggers", owner, "trigger", [])
    places = [_place(reader, i, d) for i, d in place_docs or []]
    transitions = [_transition(reader, i, d) for i, d in transition_docs or []]
    triggers = [_trigger(reader, i, d) for i, d in trigger_docs or []]
    arcs: list[Arc | None] = []
    if place_docs is not None and transition_docs is not None:  # else every arc would look unknown
        place_ids = {p.id for p in places if p.id is not None}
        transition_ids = {t.id for t in transitions if t.id is not None}
        arcs = [_arc(reader, i, d, place_ids, transition_ids) for i, d in arc_docs or []]
    if reader.problems:
        raise InvalidWorkflow(reader.problems)
    return Workflow(
        id=workflow_id,
        version=version,
        places=tuple(places),
        transitions=tuple(transitions),
        arcs=tuple(arc for arc in arcs if arc is not None),
        triggers=tuple(triggers),
        state=state,
        metadata=metadata,
        concurrency=concurrency,
    )


def workflow_to_document(wf: Workflow) -> dict[str, Any]:
    """The normalised document of a workflow: plain JSON values, every field present."""
    return {
        "id": wf.id,
        "version": wf.version,
        "state": wf.state.value,
        "places": [{"id": p.id, "type": p.type.value} for p in wf.places],
        "transitions": [
            {
                "id": t.id,
                "executor": t.executor,
                "params": copy.deepcopy(t.params),
                "join": t.join.value,
                "split": t.split.value,
                "timeout_s": t.timeout_s,
                "retry": {"max_attempts": t.retry.max_attempts, "backoff_s": t.retry.backoff_s},
                **({"isolate": True} if t.isolate else {}),
            }
            for t in wf.transitions
        ],
        "arcs": [_arc_document(arc) for arc in wf.arcs],
        "triggers": [_trigger_document(t) for t in wf.triggers],
        "metadata": copy.deepcopy(wf.metadata),
        **({"concurrency": wf.concurrency} if wf.concurrency is not None else {}),
    }


def _arc_document(arc: Arc) -> dict[str, Any]:
    """An arc's document; `when` only when it is not the default `success`."""
    document = dict(zip(("from", "to"), arc_ends(arc)))
    return document if arc.when == When.SUCCESS else {**document, "when": arc.when}


def parse_workflow_json(text: str | bytes) -> Workflow:
    """A workflow from JSON text; text that is not JSON is an InvalidWorkflow too."""
    try:
        doc = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise InvalidWorkflow([f"not valid JSON: {exc}"]) from None
    return workflow_from_document(doc)


def load_workflow(path: str | os.PathLike[str]) -> Workflow:
    """A workflow from a JSON file; each problem starts with the file's path so
    a user checking many files sees which one to fix. A missing or unreadable
    file raises the usual OSError."""
    try:
        return parse_workflow_json(Path(path).read_bytes())
    except InvalidWorkflow as exc:
        raise InvalidWorkflow([f"{os.fspath(path)}: {problem}" for problem in exc.problems]) from None


def compact_document(
    id: str,
    places: list[str],
    transitions: list[dict[str, Any]],
    arcs: list[str],
    *,
    version: int = 1,
    triggers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A workflow document from a compact notation, for code that writes many
    (tests, the chaos run, the benchmark): arcs as "a -> b" strings, with
    an out-arc's `when` after a bar ("a -> b | failure"); the first place is
    the start place and the last the end place."""
    document: dict[str, Any] = {
        "id": id,
        "version": version,
        "places": [
            {"id": p, "type": "start" if i == 0 else "end" if i == len(places) - 1 else "normal"}
            for i, p in enumerate(places)
        ],
        "transitions": transitions,
        "arcs": [_compact_arc(arc) for arc in arcs],
    }
    if triggers:
        document["triggers"] = triggers
    return document


def _compact_arc(arc: str) -> dict[str, str]:
    ends, _, when = arc.partition("|")
    document = dict(zip(("from", "to"), (end.strip() for end in ends.split("->"))))
    return {**document, "when": when.strip()} if when.strip() else document
