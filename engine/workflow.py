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
    NONE = "none"
    AND = "and"


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


@dataclass(frozen=True)
class Arc:
    place_id: str
    transition_id: str
    direction: ArcDirection


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
        return [a.place_id for a in self.arcs if a.transition_id == transition_id and a.direction is ArcDirection.OUT]

    def transitions_fed_by(self, place_id: str) -> list[str]:
        """Transitions a token in `place_id` is offered to (several: a choice)."""
        return [a.transition_id for a in self.arcs if a.place_id == place_id and a.direction is ArcDirection.IN]
