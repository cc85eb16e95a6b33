"""The base class of every supervised actor: crash-as-exit, normal stop,
passivation and the link to its parent's process.

Thespian retries a message whose handler raised and then returns it to its
sender as a PoisonMessage, leaving the actor alive with whatever state the
handler half-changed. OTP's answer is better for us: a crash is an exit, and
the supervisor restarts the actor, which restores itself from storage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from thespian.actors import Actor, ActorExitRequest, WakeupMessage

from petriflow.supervision import lifeline
from petriflow.supervision.messages import ChildCrashed, ChildStopping, IdleNotice, Returned, Supervised

log = structlog.get_logger("petriflow.supervision")

PARENT_CHECK_S = 0.5
"""How often an actor polls os.getppid() where the kernel cannot watch its parent."""


@dataclass(frozen=True)
class _IdleCheck:
    """Private wakeup payload: is the actor idle past its timeout?"""


@dataclass(frozen=True)
class _ParentCheck:
    """Private wakeup payload: is the parent process still there?"""


_PRIVATE_WAKEUPS = (_IdleCheck, _ParentCheck)


class SupervisedActor(Actor):
    """Subclasses implement `on_start(init)` and `on_message(message, sender)`.

    A supervised actor's first message is a `Supervised` envelope from its
    supervisor: `on_start` gets its `init`. An actor created directly by a
    client (a root) gets no envelope: `parent` stays None and every message,
    the first included, goes to `on_message`.

    `ActorExitRequest` is Thespian's business and never reaches `on_message`;
    once it has arrived, or once the actor has crashed, nothing more does.
    `WakeupMessage`s the subclass asked for reach `on_message` as usual.
    Messages to a supervised child must go through `Supervisor.send`: a direct
    send makes the passivation counts disagree, which only disables
    passivation, never loses a message.
    """

    parent: Any = None
    key: str = ""
    _begun = False
    _done = False  # crashed or exiting: ignore everything
    _stopping = False
    _idle_timeout_s: float | None = None
    _last_activity = 0.0
    _received = 0
    _creator_pid = 0

    # -- the subclass's side ------------------------------------------------------

    def on_start(self, init: Any) -> None:
        """Called once with `ChildSpec.init`; restore from storage here."""

    def on_message(self, message: Any, sender: Any) -> None:
        raise NotImplementedError

    def may_passivate(self) -> bool:
        """Whether an idle actor may exit now; False while it waits on a
        wakeup, a thread or live children whose work would be lost."""
        return True

    def log_context(self) -> dict[str, Any]:
        """Entity ids that every log line about this actor carries."""
        return {}

    def on_exit(self) -> None:
        """Called once as the actor exits, normally or not (never after a
        SIGKILL): release what the process will not release for it."""

    def waited_out(self, exc: Exception) -> bool:
        """Whether `exc` is an outage its owner waits out rather than this
        actor's fault (a node drops its hosted actors when storage is out
        and restores them once it is back): the actor still exits as for a
        crash, but no crash is logged, once per try."""
        return False

    def handles_while_stopping(self, message: Any) -> bool:
        """Whether a message from the parent that arrives after `stop_normally`
        is still handled here; by default it is returned to the parent, which
        delivers it to the next incarnation."""
        return False

    # -- what it gets ---------------------------------------------------------------

    def stop_normally(self, reason: str = "normal") -> None:
        """Exit normally: the supervisor is told first, so it does not restart a
        transient child. The actor keeps handling messages until the parent's
        ActorExitRequest arrives, so nothing sent meanwhile is dropped."""
        if self._done or self._stopping:
            return
        self._stopping = True
        log.debug("actor_stopping", reason=reason, **self._fields())
        if self.parent is None:
            self.send(self.myAddress, ActorExitRequest())
        else:
            self.send(self.parent, ChildStopping(self.key, reason))

    # -- Thespian's side --------------------------------------------------------------

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, ActorExitRequest):
            self._done = True
            self.on_exit()
            return
        if self._done:
            return
        try:
            self._dispatch(message, sender)
        except Exception as exc:
            if self.waited_out(exc):
                log.debug("actor_interrupted", reason=str(exc), **self._fields())
            else:
                log.error("actor_crashed", exc_info=True, **self._fields())
            self._exit_abnormally(f"{getattr(exc, 'code', 'crashed')}: {type(exc).__name__}: {exc}")

    def _dispatch(self, message: Any, sender: Any) -> None:
        if isinstance(message, WakeupMessage) and isinstance(message.payload, _PRIVATE_WAKEUPS):
            if isinstance(message.payload, _IdleCheck):
                self._check_idle()
            else:
                self._check_parent()
            return
        self._last_activity = time.monotonic()
        if not self._begun:
            self._begun = True
            if isinstance(message, Supervised):
                self._begin(message, sender)
                return
        if self.parent is not None and sender == self.parent:
            self._received += 1
            if self._stopping and not self.handles_while_stopping(message):
                self.send(self.parent, Returned(self.key, message))
                return
        self.on_message(message, sender)

    def _begin(self, envelope: Supervised, parent: Any) -> None:
        self.parent = parent
        self.key = envelope.key
        if envelope.die_with_parent:
            self._link_to_parent()
        if envelope.idle_timeout_s:
            self._idle_timeout_s = envelope.idle_timeout_s
            self.wakeupAfter(timedelta(seconds=envelope.idle_timeout_s), payload=_IdleCheck())
        self.on_start(envelope.init)

    def crash(self, reason: str) -> None:
        """Exit abnormally on purpose, as if the process had died: the
        supervisor restarts the child (within its intensity), which restores
        itself from storage. The caller returns at once; nothing more is handled."""
        log.warning("actor_crashed", reason=reason, **self._fields())
        self._exit_abnormally(f"crashed: {reason}")

    def _exit_abnormally(self, reason: str) -> None:
        """No ChildStopping first: the parent sees an unannounced exit, a
        crash. It is told why, `<code>: <detail>` (a SIGKILLed child cannot)."""
        self._done = True
        if self.parent is not None:
            self.send(self.parent, ChildCrashed(self.key, reason))
        self.send(self.myAddress, ActorExitRequest())

    def _fields(self) -> dict[str, Any]:
        try:
            context = self.log_context()
        except Exception:  # a broken log_context must not hide the crash being logged
            context = {}
        return {**context, "actor": type(self).__name__, "key": self.key}

    # -- passivation --------------------------------------------------------------------

    def _check_idle(self) -> None:
        """Offer to passivate when idle; the parent decides (see Supervisor)."""
        assert self._idle_timeout_s is not None
        remaining = self._last_activity + self._idle_timeout_s - time.monotonic()
        if remaining > 0:
            self.wakeupAfter(timedelta(seconds=remaining), payload=_IdleCheck())
            return
        if not self._stopping and self.may_passivate():
            self.send(self.parent, IdleNotice(self.key, self._received))
        self.wakeupAfter(timedelta(seconds=self._idle_timeout_s), payload=_IdleCheck())

    # -- die with parent ------------------------------------------------------------------

    def _link_to_parent(self) -> None:
        self._creator_pid = lifeline.creator_pid()
        armed = lifeline.arm_parent_death_signal()
        self._check_parent(poll=not armed)

    def _check_parent(self, poll: bool = True) -> None:
        """Die if the parent's process is already gone (it may have died
        before the death signal was armed); keep polling where it was not."""
        if lifeline.orphaned(self._creator_pid):
            log.warning("actor_orphaned", **self._fields())
            lifeline.die()
        if poll:
            self.wakeupAfter(timedelta(seconds=PARENT_CHECK_S), payload=_ParentCheck())
