"""OTP's `heart` for the Engine: the keeper beats it, and replaces it when
it stops answering.

A dead Engine is easy to see (its process is gone); a hung one (stopped,
wedged in a loop) only stops answering. Each beat is a `Heartbeat`
request the Engine answers at once, with how its own nodes answer it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from petriflow.client import EngineTimeout
from petriflow.engine.errors import PetriflowError
from petriflow.engine.wire import Liveness
from petriflow.ingress.link import EngineLink


class Heart:
    def __init__(self, connect: Callable[[], EngineLink], beat_s: float) -> None:
        self._connect = connect
        self.beat_s = beat_s
        self._link: EngineLink | None = None
        self.answered_at = time.monotonic()
        self.liveness: Liveness | None = None  # the Engine's last answer

    def beat(self) -> float:
        """Beat once; returns for how long the Engine has not answered (0 if it just did)."""
        try:
            if self._link is None:
                self._link = self._connect()
            self.liveness = self._link.client.heartbeat(self.beat_s)
        except (EngineTimeout, PetriflowError, OSError):
            self.reset_link()  # a late answer would be taken for the next beat's
            return self.silent_s
        self.answered_at = time.monotonic()
        return 0.0

    @property
    def silent_s(self) -> float:
        return time.monotonic() - self.answered_at

    def restarted(self) -> None:
        """A new Engine: it gets a full timeout before it counts as silent."""
        self.reset_link()
        self.answered_at = time.monotonic()
        self.liveness = None

    def forgive(self) -> None:
        """It was waiting, not hung: a full timeout again from now."""
        self.answered_at = time.monotonic()

    def reset_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None
