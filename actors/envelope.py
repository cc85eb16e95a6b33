"""A client request on its way down the tree, with the address to answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Routed:
    """`body` is routed Engine -> Case -> Task -> Workitem by the entity ids
    it carries; whichever actor owns the entity answers `reply_to` with the
    encoded result, so the client's `ask` gets exactly one reply."""

    body: Any
    reply_to: Any
