"""Workflow definitions: a Petri net of places, transitions and arcs.

A workflow is immutable once stored; a change is a new version, and a
running case keeps the version it started with (after WorkflowMetal).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class PlaceType(StrEnum):
    START = "start"
    NORMAL = "normal"
    END = "end"


class JoinType(StrEnum):
    NONE = "none"
    AND = "and"


class SplitType(StrEnum):
    """Which out-arcs whose condition holds get a token: `none` (a single
    out-arc per outcome), `and` and `or` (every one), `xor` (the first, in
    document order)."""

    NONE = "none"
    AND = "and"
    XOR = "xor"
    OR = "or"


class When(StrEnum):
    """An out-arc's outcome condition; any other `when` is an expression over
    the step's `output` and `input` (`engine.conditions`), taken on success."""

    SUCCESS = "success"
    FAILURE = "failure"
    ALWAYS = "always"


class ArcDirection(StrEnum):
    IN = "in"  # place -> transition
    OUT = "out"  # transition -> place


class WorkflowState(StrEnum):
    ACTIVE = "active"
    DISCARDED = "discarded"


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failing workitem is executed before it is `failed`."""

    max_attempts: int = 1
    backoff_s: float = 0.0


@dataclass(frozen=True)
class Place:
    id: str
    type: PlaceType = PlaceType.NORMAL


@dataclass(frozen=True)
class Transition:
    id: str
    executor: str = "noop"
    params: dict[str, Any] = field(default_factory=dict)
    join: JoinType = JoinType.NONE
    split: SplitType = SplitType.NONE
    timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    isolate: bool = False  # run the executor in its own process: a crash there ends only that attempt


_OUTCOMES = frozenset(when.value for when in When)


@dataclass(frozen=True)
class Arc:
    place_id: str
    transition_id: str
    direction: ArcDirection
    when: str = When.SUCCESS  # out-arcs only: a `When`, or an expression string

    @property
    def on_success(self) -> bool:
        """Whether the arc may be taken when its step succeeds (an expression decides then)."""
        return self.when != When.FAILURE

    @property
    def on_failure(self) -> bool:
        return self.when in (When.FAILURE, When.ALWAYS)

    @property
    def expression(self) -> str | None:
        return None if self.when in _OUTCOMES else self.when


@dataclass(frozen=True)
class WebhookAuth:
    """How a webhook trigger's caller proves who it is (after OpenFn Lightning's
    webhook auth): `api_key` (the header holds the secret), `hmac_sha256` (the
    header holds the HMAC-SHA256 of the raw body, GitHub's form) or `none`.
    Only the name of the environment variable holding the secret is part of
    the workflow, so a stored or shown workflow never reveals it."""

    type: str = "none"
    header: str | None = None  # the request header carrying the key or the signature
    secret_env: str | None = None  # the environment variable holding the secret


@dataclass(frozen=True)
class Trigger:
    """An input that creates work orders (webhook, cron); used by the daemon."""

    id: str
    type: str
    cron: str | None = None
    auth: WebhookAuth | None = None  # webhook triggers only; None: no check, as WebhookAuth("none")


@dataclass(frozen=True)
class Workflow:
    id: str
    version: int
    places: tuple[Place, ...]
    transitions: tuple[Transition, ...]
    arcs: tuple[Arc, ...]
    triggers: tuple[Trigger, ...] = ()
    state: WorkflowState = WorkflowState.ACTIVE
    metadata: dict[str, Any] = field(default_factory=dict)
    concurrency: int | None = None  # at most this many of its runs `started` at once (None: no limit)

    def place(self, place_id: str) -> Place:
        for place in self.places:
            if place.id == place_id:
                return place
        raise KeyError(place_id)

    def transition(self, transition_id: str) -> Transition:
        for transition in self.transitions:
            if transition.id == transition_id:
                return transition
        raise KeyError(transition_id)

    @property
    def start_place(self) -> Place:
        return next(p for p in self.places if p.type is PlaceType.START)

    @property
    def end_place(self) -> Place:
        return next(p for p in self.places if p.type is PlaceType.END)

    def in_places(self, transition_id: str) -> list[str]:
        """Places feeding the transition, in arc order."""
        return [a.place_id for a in self.arcs if a.transition_id == transition_id and a.direction is ArcDirection.IN]

    def out_places(self, transition_id: str) -> list[str]:
        return [a.place_id for a in self.out_arcs(transition_id)]

    def out_arcs(self, transition_id: str) -> list[Arc]:
        """Arcs from the transition to its out-places, in document order (the order `xor` tries them)."""
        return [a for a in self.arcs if a.transition_id == transition_id and a.direction is ArcDirection.OUT]

    def handles_failure(self, transition_id: str) -> bool:
        """Whether a failure of the transition's step is routed on (a `failure` or `always` arc)."""
        return any(arc.on_failure for arc in self.out_arcs(transition_id))

    def in_choice(self, transition_id: str) -> bool:
        """Whether the transition competes for its tokens: an in-place also feeds another transition."""
        return any(len(self.transitions_fed_by(place)) > 1 for place in self.in_places(transition_id))

    def waits_for_person(self, transition_id: str) -> bool:
        """A manual step in a deferred choice: its task takes its token only
        when a person preexecutes it (taking it at once, it would always win)."""
        return self.transition(transition_id).executor == "manual" and self.in_choice(transition_id)

    def transitions_fed_by(self, place_id: str) -> list[str]:
        """Transitions a token in `place_id` is offered to (several: a choice)."""
        return [a.transition_id for a in self.arcs if a.place_id == place_id and a.direction is ArcDirection.IN]
