"""The floor: bare Thespian actors shaped like a case (a case actor, its tasks, their workitems), no storage.

They live in an importable module, not in __main__: Thespian's multiproc
base creates every actor process by fork and names the class by its
module path, which resolves in every child."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thespian.actors import Actor, ActorExitRequest

from petriflow.bench.workloads import WORKLOADS, measure_modes


@dataclass(frozen=True)
class FloorStart:
    shape: str  # "seq3" or "and4"
    payload: dict = field(default_factory=dict)


@dataclass(frozen=True)
class FloorRun:
    payload: dict


@dataclass(frozen=True)
class FloorDone:
    payload: dict


@dataclass(frozen=True)
class FloorFinished:
    payload: dict


FLOOR_STAGES = {"seq3": [1, 1, 1], "and4": [1, 4, 1]}


class FloorCase(Actor):
    """Runs stages of task actors; each task runs one workitem actor."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, FloorStart):
            self.client = sender
            self.stages = list(FLOOR_STAGES[message.shape])
            self.payload = dict(message.payload)
            self._next_stage()
        elif isinstance(message, FloorDone):
            self.payload.update(message.payload)
            self.pending -= 1
            if self.pending == 0:
                self._next_stage()

    def _next_stage(self) -> None:
        if not self.stages:
            self.send(self.client, FloorFinished(self.payload))
            self.send(self.myAddress, ActorExitRequest())
            return
        self.pending = self.stages.pop(0)
        for _ in range(self.pending):
            self.send(self.createActor(FloorTask), FloorRun(dict(self.payload)))


class FloorTask(Actor):
    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, FloorRun):
            self.case = sender
            self.send(self.createActor(FloorWorkitem), message)
        elif isinstance(message, FloorDone):
            self.send(self.case, message)
            self.send(self.myAddress, ActorExitRequest())


class FloorWorkitem(Actor):
    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, FloorRun):
            self.send(sender, FloorDone(dict(message.payload)))
            self.send(self.myAddress, ActorExitRequest())


class FloorDriver:
    def __init__(self, asys: Any, shape: str) -> None:
        self.asys = asys
        self.shape = shape
        self.outstanding = 0

    def start(self, i: int) -> Any:
        case = self.asys.createActor(FloorCase)
        self.asys.tell(case, FloorStart(self.shape, {"i": i}))
        self.outstanding += 1
        return case

    def wait(self, handle: Any, timeout_s: float = 900.0) -> bool:
        """Any case's FloorFinished will do: they are counted, not matched."""
        while True:
            message = self.asys.listen(timeout_s)
            if message is None:
                raise TimeoutError(f"a floor case did not finish within {timeout_s}s")
            if isinstance(message, FloorFinished):
                self.outstanding -= 1
                return True


def scenario_floor(opts: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from petriflow.system import close_actor_system, open_actor_system

    result: dict[str, Any] = {
        "what": "bare Thespian: 1 case actor, a task actor per transition, a workitem "
        "actor per task; every actor exits when done; no storage, no petriflow code"
    }
    for base in opts.bases:
        system_base = "simpleSystemBase" if base == "embedded" else "multiprocTCPBase"
        asys = open_actor_system(system_base)
        try:
            result[base] = {"system_base": system_base}
            for workload in WORKLOADS:
                result[base][workload] = measure_modes(lambda w: FloorDriver(asys, w), workload, opts, f"floor {base}")
        finally:
            close_actor_system(asys)
    return result
