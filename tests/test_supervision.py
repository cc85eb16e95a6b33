"""OTP supervision on Thespian: strategies, restart types, intensity,
crash-as-exit, passivation, and (on multiprocTCPBase) real SIGKILLs and
die-with-parent links.

The fine-grained protocol (the passivation handshake, intensity windows) is
tested against a fake owning actor with an injected clock; the rest with
real actors from tests/toy_actors.py.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from thespian.actors import ActorExitRequest, ActorSystem, ChildActorExited, PoisonMessage, WakeupMessage

from petriflow.supervision import processes
from petriflow.supervision.childspec import ChildSpec, Intensity, RestartType, Strategy
from petriflow.supervision.messages import ChildStopping, IdleNotice, Supervised
from petriflow.supervision.supervisor import Supervisor
from petriflow.system import system_session
from tests.toy_actors import Boom, Boss, BossConfig, BossStatus, Forward, Ping, Pong, Status, Stop, Worker

ASK_S = 5.0


# -- a fake owning actor: the protocol, message by message ------------------------------------


class FakeAddress:
    """Compares by identity, like two different Thespian addresses."""


class FakeOwner:
    def __init__(self) -> None:
        self.created: list[FakeAddress] = []
        self.sent: list[tuple[FakeAddress, Any]] = []
        self.wakeups: list[tuple[float, Any]] = []

    def createActor(self, actor_class: Any) -> FakeAddress:
        self.created.append(FakeAddress())
        return self.created[-1]

    def send(self, address: FakeAddress, message: Any) -> None:
        self.sent.append((address, message))

    def wakeupAfter(self, seconds: float, payload: Any = None) -> None:
        self.wakeups.append((seconds, payload))

    def to(self, address: FakeAddress) -> list[Any]:
        return [m for a, m in self.sent if a is address]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def supervised(**kwargs: Any) -> tuple[FakeOwner, Supervisor]:
    owner = FakeOwner()
    return owner, Supervisor(owner, **kwargs)  # type: ignore[arg-type]


def exit_requests(owner: FakeOwner, address: FakeAddress) -> int:
    return sum(isinstance(m, ActorExitRequest) for m in owner.to(address))


@pytest.mark.timeout(5)
def test_idle_notice_is_accepted_only_when_nothing_is_in_flight() -> None:
    owner, sup = supervised(idle_timeout_s=1.0)
    first = sup.start(ChildSpec("w", Worker, "init"))
    assert owner.to(first) == [Supervised("w", 1.0, False, "init")]
    sup.send("w", "m1")
    # The child had not yet seen m1 when it offered to passivate: refused.
    assert sup.handle(IdleNotice("w", received=0), first)
    assert exit_requests(owner, first) == 0 and sup.is_live("w")
    # It has seen m1 now: accepted.
    assert sup.handle(IdleNotice("w", received=1), first)
    assert exit_requests(owner, first) == 1
    # A message while it is on its way out is held, not sent to the old incarnation ...
    sup.send("w", "m2")
    assert "m2" not in owner.to(first)
    # ... and delivered to the restored one, right after its envelope.
    assert sup.handle(ChildActorExited(first), first)
    second = sup.address("w")
    assert second is not first
    assert owner.to(second) == [Supervised("w", 1.0, False, "init"), "m2"]


@pytest.mark.timeout(5)
def test_passivated_child_is_restored_by_the_next_send() -> None:
    owner, sup = supervised(idle_timeout_s=1.0)
    first = sup.start(ChildSpec("w", Worker, "init"))
    sup.handle(IdleNotice("w", received=0), first)
    sup.handle(ChildActorExited(first), first)
    assert sup.keys() == ["w"] and not sup.is_live("w") and len(owner.created) == 1
    sup.send("w", "wake")
    assert len(owner.created) == 2
    assert owner.to(sup.address("w")) == [Supervised("w", 1.0, False, "init"), "wake"]


@pytest.mark.timeout(5)
def test_intensity_is_counted_per_key_within_the_window() -> None:
    clock, gave_up = Clock(), []
    owner, sup = supervised(
        intensity=Intensity(max_restarts=3, max_seconds=5.0),
        clock=clock,
        on_give_up=lambda spec, reason: gave_up.append((spec.key, reason)),
    )
    sup.start(ChildSpec("bad", Worker, None))
    sup.start(ChildSpec("good", Worker, None))

    def crash(key: str) -> None:
        address = sup.address(key)
        sup.handle(ChildActorExited(address), address)
        clock.now += 1.0

    for _ in range(3):
        crash("bad")
    crash("good")
    assert gave_up == [] and sup.is_live("bad")
    crash("bad")  # the 4th crash within 5 s
    assert gave_up == [("bad", "killed")], "no crash notice came: the child was killed"
    assert sup.keys() == ["good"]
    # Restarts older than the window no longer count.
    clock.now += 10.0
    for _ in range(3):
        crash("good")
    assert sup.is_live("good") and len(gave_up) == 1


@pytest.mark.timeout(5)
def test_a_supervisor_with_a_backoff_never_gives_up_and_holds_what_is_sent_meanwhile() -> None:
    clock, gave_up = Clock(), []
    owner, sup = supervised(
        intensity=Intensity(max_restarts=3, max_seconds=5.0),
        clock=clock,
        backoff=(1.0, 3.0),
        on_give_up=lambda spec, reason: gave_up.append(spec.key),
    )
    sup.start(ChildSpec("node", Worker, "init"))

    def crash_past_the_intensity() -> None:
        for _ in range(4):
            address = sup.address("node")
            sup.handle(ChildActorExited(address), address)

    crash_past_the_intensity()
    assert gave_up == [] and not sup.is_live("node") and sup.keys() == ["node"]
    sup.send("node", "meanwhile")
    assert len(owner.created) == 4, "no new incarnation during the pause"
    ((pause, payload),) = owner.wakeups
    assert pause == 1.0
    assert sup.handle(WakeupMessage(pause, payload), None)
    assert sup.is_running("node") and len(owner.created) == 5
    assert owner.to(sup.address("node")) == [Supervised("node", None, False, "init"), "meanwhile"]
    for _ in range(2):
        crash_past_the_intensity()
        sup.handle(WakeupMessage(*owner.wakeups[-1]), None)
    crash_past_the_intensity()
    assert [p for p, _ in owner.wakeups] == [1.0, 2.0, 3.0, 3.0], "the pause doubles up to its cap"
    assert len(owner.created) == 16
    sup.stop("node")
    assert sup.keys() == [], "a child stopped during its pause does not come back"
    assert sup.handle(WakeupMessage(*owner.wakeups[-1]), None) and len(owner.created) == 16
    assert gave_up == []


@pytest.mark.timeout(5)
def test_on_give_up_that_raises_propagates_to_the_owner() -> None:
    def escalate(spec: ChildSpec, reason: str) -> None:
        raise RuntimeError("owner state broken")

    owner, sup = supervised(intensity=Intensity(max_restarts=0), on_give_up=escalate)
    address = sup.start(ChildSpec("w", Worker, None))
    with pytest.raises(RuntimeError, match="owner state broken"):
        sup.handle(ChildActorExited(address), address)
    assert sup.keys() == []


@pytest.mark.timeout(5)
def test_stop_ends_a_child_for_good_and_announced_exits_are_expected() -> None:
    owner, sup = supervised()
    perm = sup.start(ChildSpec("perm", Worker, None, RestartType.PERMANENT))
    trans = sup.start(ChildSpec("trans", Worker, None))
    sup.stop("perm")
    assert exit_requests(owner, perm) == 1
    sup.handle(ChildActorExited(perm), perm)
    assert "perm" not in sup.keys()
    # The child announces its exit; the parent answers ActorExitRequest.
    assert sup.handle(ChildStopping("trans", "done"), trans)
    assert exit_requests(owner, trans) == 1
    sup.send("trans", "late")  # held: the restored child answers it
    sup.handle(ChildActorExited(trans), trans)
    assert owner.to(sup.address("trans"))[-1] == "late"
    assert not sup.handle("unrelated", trans)


# -- real actors on simpleSystemBase ------------------------------------------------------------


def start_boss(asys: ActorSystem, **config: Any) -> Any:
    boss = asys.createActor(Boss)
    status = asys.ask(boss, BossConfig(**config), ASK_S)
    assert isinstance(status, BossStatus), status
    return boss


def workers(*keys: str, restart: RestartType = RestartType.TRANSIENT) -> tuple[ChildSpec, ...]:
    return tuple(ChildSpec(key, Worker, None, restart) for key in keys)


def try_ping(asys: ActorSystem, boss: Any, *path: str, timeout_s: float = ASK_S) -> Pong | None:
    """Ping the actor at `path` below `boss` (through nested bosses). None if
    no answer: a message sent to a child just killed, before its supervisor
    saw the exit, is lost, in OTP as here."""
    message: Any = Ping()
    for key in reversed(path):
        message = Forward(key, message)
    pong = asys.ask(boss, message, timeout_s)
    assert pong is None or isinstance(pong, Pong), pong
    return pong


def ping(asys: ActorSystem, boss: Any, *path: str) -> Pong:
    pong = try_ping(asys, boss, *path)
    assert pong is not None
    return pong


def new_pid(asys: ActorSystem, boss: Any, *path: str, old: int) -> int:
    """The pid of the actor at `path` once it is no longer `old`."""

    def check() -> int | None:
        pong = try_ping(asys, boss, *path, timeout_s=0.5)
        return pong.pid if pong is not None and pong.pid != old else None

    return eventually(check)


def status(asys: ActorSystem, boss: Any) -> BossStatus:
    result = asys.ask(boss, Status(), ASK_S)
    assert isinstance(result, BossStatus), result
    return result


def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """Poll `check` until truthy; on simpleSystemBase it must ask, or nothing runs."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s")
        time.sleep(0.02)
    return result


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "strategy, restarted",
    [
        (Strategy.ONE_FOR_ONE, {"b"}),
        (Strategy.ONE_FOR_ALL, {"a", "b", "c"}),
        (Strategy.REST_FOR_ONE, {"b", "c"}),
    ],
)
def test_strategy_decides_which_children_restart(
    simple_system: ActorSystem, strategy: Strategy, restarted: set[str]
) -> None:
    boss = start_boss(simple_system, children=workers("a", "b", "c"), strategy=strategy)
    before = {k: ping(simple_system, boss, k).incarnation for k in "abc"}
    simple_system.tell(boss, Forward("b", Boom()))
    after = {k: ping(simple_system, boss, k).incarnation for k in "abc"}
    assert {k for k in "abc" if after[k] != before[k]} == restarted
    assert status(simple_system, boss).keys == ["a", "b", "c"]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "restart, exit_by, comes_back",
    [
        (RestartType.PERMANENT, Boom(), True),
        (RestartType.TRANSIENT, Boom(), True),
        (RestartType.TEMPORARY, Boom(), False),
        (RestartType.PERMANENT, Stop(), True),
        (RestartType.TRANSIENT, Stop(), False),
        (RestartType.TEMPORARY, Stop(), False),
    ],
)
def test_restart_type_decides_whether_an_exited_child_comes_back(
    simple_system: ActorSystem, restart: RestartType, exit_by: Any, comes_back: bool
) -> None:
    boss = start_boss(simple_system, children=workers("w", restart=restart))
    before = ping(simple_system, boss, "w").incarnation
    simple_system.tell(boss, Forward("w", exit_by))
    if comes_back:
        assert ping(simple_system, boss, "w").incarnation != before
    else:
        assert status(simple_system, boss).keys == []


@pytest.mark.timeout(10)
def test_fourth_crash_within_the_window_gives_up_on_that_child_only(simple_system: ActorSystem) -> None:
    boss = start_boss(
        simple_system,
        children=workers("bad", "good"),
        strategy=Strategy.ONE_FOR_ALL,
        intensity=Intensity(max_restarts=3, max_seconds=5.0),
    )
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            ping(simple_system, boss, "bad")
            simple_system.tell(boss, Forward("bad", Boom()))
    final = status(simple_system, boss)
    assert final.gave_up == [("bad", "crashed: RuntimeError: boom")], "the give-up says why it crashed"
    assert final.keys == ["good"] and final.live == {"good": True}
    assert [e["key"] for e in logs if e["event"] == "supervisor_gave_up"] == ["bad"]


@pytest.mark.timeout(10)
def test_a_raising_handler_exits_the_actor_without_poison_message(simple_system: ActorSystem) -> None:
    boss = start_boss(simple_system, children=workers("w"))
    before = ping(simple_system, boss, "w").incarnation
    child = status(simple_system, boss).addresses["w"]
    with structlog.testing.capture_logs() as logs:
        answer = simple_system.ask(child, Boom(), 0.5)
    assert answer is None and not isinstance(answer, PoisonMessage)
    crashes = [e for e in logs if e["event"] == "actor_crashed"]
    assert len(crashes) == 1  # handled once: Thespian's retry never happened
    assert crashes[0]["toy_id"] == "toy-w" and crashes[0]["key"] == "w"
    assert crashes[0]["actor"] == "Worker" and crashes[0]["exc_info"] is True
    assert crashes[0]["log_level"] == "error"
    assert ping(simple_system, boss, "w").incarnation != before


@pytest.mark.timeout(10)
def test_a_supervisor_whose_give_up_raises_crashes_and_is_restarted(simple_system: ActorSystem) -> None:
    mid = BossConfig(children=workers("leaf"), intensity=Intensity(max_restarts=0), escalate=True)
    root = start_boss(simple_system, children=(ChildSpec("mid", Boss, mid),))
    before = ping(simple_system, root, "mid").incarnation
    simple_system.tell(root, Forward("mid", Forward("leaf", Boom())))
    assert ping(simple_system, root, "mid").incarnation != before
    assert ping(simple_system, root, "mid", "leaf").key == "leaf"  # started again by the new mid
    assert status(simple_system, root).gave_up == []


@pytest.mark.timeout(10)
def test_idle_child_passivates_and_the_next_message_restores_it(simple_system: ActorSystem) -> None:
    boss = start_boss(simple_system, children=workers("w"), idle_timeout_s=0.1)
    before = ping(simple_system, boss, "w").incarnation
    with structlog.testing.capture_logs() as logs:
        simple_system.listen(0.4)  # lets the idle wakeup fire
    assert "child_passivated" in [e["event"] for e in logs]
    passivated = status(simple_system, boss)
    assert passivated.keys == ["w"] and passivated.live == {"w": False}
    assert ping(simple_system, boss, "w").incarnation != before
    assert status(simple_system, boss).live == {"w": True}


# -- real processes on multiprocTCPBase ----------------------------------------------------------


@pytest.mark.timeout(30)
def test_sigkilled_child_is_restarted_with_a_new_process(multiproc_system: ActorSystem) -> None:
    boss = start_boss(multiproc_system, children=workers("w"), die_with_parent=True)
    old = ping(multiproc_system, boss, "w").pid
    session = system_session(multiproc_system)
    assert session is not None and old in processes.session_pids(session.sid)
    os.kill(old, signal.SIGKILL)
    new = new_pid(multiproc_system, boss, "w", old=old)
    assert processes.is_alive(new) and not processes.is_alive(old)


@pytest.mark.timeout(30)
def test_child_dies_with_its_sigkilled_parent(multiproc_system: ActorSystem) -> None:
    mid = BossConfig(children=workers("leaf"), die_with_parent=True)
    root = start_boss(multiproc_system, children=(ChildSpec("mid", Boss, mid),), die_with_parent=True)
    mid_pid = ping(multiproc_system, root, "mid").pid
    leaf_pid = ping(multiproc_system, root, "mid", "leaf").pid
    assert processes.children_of(mid_pid) == [leaf_pid]
    os.kill(mid_pid, signal.SIGKILL)
    assert processes.wait_until_gone([leaf_pid], timeout_s=2.0) == []
    # The restarted mid starts a fresh leaf: exactly one per entity.
    new_leaf = new_pid(multiproc_system, root, "mid", "leaf", old=leaf_pid)
    assert processes.children_of(ping(multiproc_system, root, "mid").pid) == [new_leaf]


@pytest.mark.timeout(30)
def test_passivation_across_processes(multiproc_system: ActorSystem) -> None:
    boss = start_boss(multiproc_system, children=workers("w"), idle_timeout_s=0.2, die_with_parent=True)
    old = ping(multiproc_system, boss, "w").pid
    eventually(lambda: status(multiproc_system, boss).live == {"w": False})
    assert processes.wait_until_gone([old], timeout_s=2.0) == []
    assert ping(multiproc_system, boss, "w").pid != old
