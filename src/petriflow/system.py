"""Open and close Thespian actor systems the way petriflow needs them:
loopback only, one independent system per call, and closed for good.

`simpleSystemBase` runs every actor in the caller's thread (fast; the model's
tests). `multiprocTCPBase` runs each actor in its own process (crash tests
and the daemon). Thespian does not end everything on shutdown (children of a
SIGKILLed actor are re-parented to init and outlive it), so closing a
multiproc system also kills, by pid, every process left in its session.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import ActorSystem
from thespian.system.timing import ExpirationTimerView
from thespian.system.transport import Thespian__Run_Expired, TransmitOnly
from thespian.system.transport.IPBase import IPActorAddress
from thespian.system.transport.wakeupTransportBase import wakeupTransportBase

from petriflow.supervision import processes

LOOPBACK = "127.0.0.1"
MULTIPROC = "multiprocTCPBase"


@dataclass(frozen=True)
class SystemSession:
    """The processes of one multiproc actor system.

    Thespian's admin starts as a child of the caller that calls setsid(),
    forks the real admin and exits: that child's pid is the session id every
    process of the system shares; the admin is re-parented to init."""

    sid: int
    admin_port: int


_sessions: weakref.WeakKeyDictionary[ActorSystem, SystemSession] = weakref.WeakKeyDictionary()


_handed_out: set[int] = set()  # every port free_port gave this process


def free_port() -> int:
    """A loopback TCP port free right now, for tests and tools, chosen below
    the kernel's ephemeral range: actor processes bind ephemeral ports, and a
    port handed out from that range may be taken by one of them before the
    caller binds it (a restarted daemon's webhook port, say).

    A port is handed out once per process: a daemon's admin and HTTP ports
    are both free until the daemon binds the first, so without this the two
    could be the same port and the second bind fails."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as ports:
            ephemeral_low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    for _ in range(100):
        port = random.randrange(20000, max(20001, ephemeral_low))
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def use_loopback() -> None:
    """Make Thespian's TCP transport advertise AND bind 127.0.0.1 only.

    THESPIAN_BASE_IPADDR sets the address actors advertise, but
    IPActorAddress still binds every external address to ('', port), i.e.
    0.0.0.0: the engine would accept connections from the network. We wrap
    `IPActorAddress.__init__` so that an address whose advertised host is a
    127.x address binds to exactly that host. This must run in the caller
    before the actor system starts: its admin and actor processes are forked
    from the caller (and from each other) and inherit both the environment
    and the patched class. Idempotent.
    """
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    original = IPActorAddress.__init__
    if getattr(original, "_binds_loopback", False):
        return

    @functools.wraps(original)
    def __init__(self: IPActorAddress, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)
        host = self.sockname[0]
        if self.bindname[0] == "" and isinstance(host, str) and host.startswith("127."):
            self.bindname = self.sockname

    setattr(__init__, "_binds_loopback", True)  # noqa: B010 (marks the patch as applied)
    IPActorAddress.__init__ = __init__


def keep_timers_awake() -> None:
    """Make a wakeup that is due in less than a microsecond never read as
    "no timeout".

    Thespian's TCP transport selects on its sockets for the earliest
    wakeup's `remaining()`, a timedelta, and drops a falsy one as if there
    were none: `select(None)`. A wakeup due within half a microsecond of the
    loop's clock reading rounds to `timedelta(0)`, and the actor then sleeps
    until some message comes, its timers overdue (a node sat 20 s so in about
    one test run in fifty). A deadline still in the future now reads as at
    least one microsecond. Applied, like `use_loopback`, before an actor
    system forks its processes. Idempotent."""
    original = ExpirationTimerView.remaining
    if getattr(original, "_never_zero", False):
        return

    @functools.wraps(original)
    def remaining(self: ExpirationTimerView, forever: Any = None) -> Any:
        left = original(self, forever)
        if left is not None and not left and not self.expired():
            return timedelta(microseconds=1)
        return left

    setattr(remaining, "_never_zero", True)  # noqa: B010 (marks the patch as applied)
    ExpirationTimerView.remaining = remaining


def keep_wakeups_while_draining() -> None:
    """Never drop a wakeup in a transmit-only run.

    An actor that has queued 950 sends (Thespian's MAX_QUEUED_TRANSMITS:
    a node whose Engine is busy) runs its transport in transmit-only mode
    until the queue drains. That run also takes the wakeups that fall due
    and hands them back to the draining loop, which discards them: the
    actor never gets them. A node then lost the wakeup that resumes its
    hosted actors and sat with hundreds of work orders unfinished (the
    ingress load test, 1,000 webhooks). Here a transmit-only run leaves
    the wakeups where they are, due ones included, and the actor's next
    full run delivers them. Idempotent."""
    original = wakeupTransportBase._run_subtransport
    if getattr(original, "_keeps_wakeups", False):
        return

    @functools.wraps(original)
    def _run_subtransport(self: Any, incomingHandler: Any, max_runtime: Any) -> Any:
        if not (incomingHandler is TransmitOnly or isinstance(incomingHandler, TransmitOnly)):
            return original(self, incomingHandler, max_runtime)
        earliest = getattr(self, "run_time", max_runtime)
        self.run_time = max_runtime  # not the earliest wakeup: a due one would end the run at once, sending nothing
        try:
            result = self._runWithExpiry(incomingHandler)
        finally:
            self.run_time = earliest  # the run that called for the drain sees its wakeups fall due
        return None if result is None or isinstance(result, Thespian__Run_Expired) else result

    setattr(_run_subtransport, "_keeps_wakeups", True)  # noqa: B010 (marks the patch as applied)
    wakeupTransportBase._run_subtransport = _run_subtransport


def patch_thespian() -> None:
    """The three patches, applied before an actor system forks its processes."""
    use_loopback()
    keep_timers_awake()
    keep_wakeups_while_draining()


def open_actor_system(base: str = "simpleSystemBase", admin_port: int | None = None) -> ActorSystem:
    """Start a new actor system of `base`, independent of any other in this
    process (transientUnique). For multiprocTCPBase the admin listens on
    127.0.0.1:`admin_port` (a free port if None), which must not be in use:
    Thespian would silently join the system already there."""
    patch_thespian()
    if base != MULTIPROC:
        # logDefs=False: leave the caller's stdlib logging configuration alone.
        return ActorSystem(base, logDefs=False, transientUnique=True)
    port = admin_port if admin_port is not None else free_port()
    _refuse_port_in_use(port)
    me = os.getpid()
    before = set(processes.children_of(me, include_zombies=True))
    asys = ActorSystem(MULTIPROC, capabilities={"Admin Port": port}, transientUnique=True)
    _sessions[asys] = _find_session(before, port)
    return asys


def system_session(asys: ActorSystem) -> SystemSession | None:
    """The session of a multiproc system opened here; None otherwise."""
    return _sessions.get(asys)


def close_actor_system(asys: ActorSystem, timeout_s: float = 5.0) -> None:
    """Shut the system down, then SIGKILL whatever of its session is left
    (orphans of killed actors survive shutdown) and wait until it is gone."""
    session = _sessions.pop(asys, None)
    if session is None:
        _forget_live_actors(asys)
    try:
        asys.shutdown()
    finally:
        if session is not None:
            survivors = processes.wait_until_gone(processes.kill_session(session.sid), timeout_s)
            _reap(session.sid)
            if survivors:
                raise RuntimeError(f"processes {survivors} of actor system session {session.sid} survived SIGKILL")


def _forget_live_actors(asys: ActorSystem) -> None:
    """simpleSystemBase ends no actor at shutdown: its live actors are told
    (`stop_counting_live`, petriflow's entity actors) that they no longer count as live."""
    registry = getattr(getattr(asys, "_systemBase", None), "actorRegistry", None) or {}
    for ref in list(registry.values()):
        stop = getattr(getattr(ref, "instance", None), "stop_counting_live", None)
        if callable(stop):
            stop()


def _refuse_port_in_use(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as Thespian binds: connections of a previous system in TIME_WAIT do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise RuntimeError(f"admin port {port} is already in use") from exc


def _find_session(before: set[int], port: int) -> SystemSession:
    """The new child of ours that leads its own session started the system."""
    leaders = [
        pid
        for pid in processes.children_of(os.getpid(), include_zombies=True)
        if pid not in before and processes.session_of(pid) == pid
    ]
    if len(leaders) != 1:
        raise RuntimeError(f"cannot tell the new actor system's session among {leaders}")
    return SystemSession(sid=leaders[0], admin_port=port)


def _reap(pid: int) -> None:
    """The session leader is our child and exits at once: collect its zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def connect_actor_system(admin_port: int) -> ActorSystem:
    """Join the running multiprocTCPBase system whose admin listens on
    127.0.0.1:`admin_port`, as a client. Refuses when nothing listens there:
    Thespian would otherwise quietly start a new, empty system."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        if sock.connect_ex((LOOPBACK, admin_port)) != 0:
            raise ConnectionRefusedError(f"no petriflow daemon listens on {LOOPBACK}:{admin_port}")
    patch_thespian()
    return ActorSystem(MULTIPROC, capabilities={"Admin Port": admin_port}, transientUnique=True)
