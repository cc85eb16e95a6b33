"""A gate worker's own connection to the daemon's Engine.

Thespian's connection to an actor system is not thread-safe; `private()`
gives a thread an endpoint of its own, so the gate's workers ask the
Engine side by side and each reads only its own answers.
"""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorSystem

from petriflow.client import Client
from petriflow.engine.views import work_order_json


class EngineLink:
    def __init__(self, asys: ActorSystem, timeout_s: float) -> None:
        self._private = asys.private()
        self.client = Client(self._private.__enter__(), timeout_s)

    def submit(self, trigger_id: str, body: dict[str, Any], auth: dict[str, Any]) -> str:
        return self.client.submit_webhook(trigger_id, body, auth).work_order_id

    def work_order(self, work_order_id: str) -> dict[str, Any]:
        return work_order_json(self.client.get_work_order(work_order_id))

    def trigger_auth(self, trigger_id: str) -> dict[str, Any]:
        return self.client.trigger_auth(trigger_id)

    def close(self) -> None:
        self._private.__exit__(None, None, None)
