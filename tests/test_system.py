"""Opening actor systems the way petriflow needs them: what the patches to
Thespian guarantee, checked on Thespian's own timer objects."""

from __future__ import annotations

from datetime import timedelta

from thespian.system.timing import ExpirationTimer, ExpirationTimerView
from thespian.system.transport import Thespian__Run_Expired, TransmitOnly
from thespian.system.transport.wakeupTransportBase import wakeupTransportBase

from petriflow.system import free_port, keep_timers_awake, keep_wakeups_while_draining


def test_a_wakeup_due_in_under_a_microsecond_is_a_timeout_not_none():
    keep_timers_awake()
    keep_timers_awake()  # idempotent
    now = 1000.0
    almost = ExpirationTimerView(timedelta(seconds=1), now + 4e-7, now)
    assert not almost.expired()
    assert almost.remaining() == timedelta(microseconds=1), "Thespian would select() with no timeout on timedelta(0)"
    due = ExpirationTimerView(timedelta(seconds=1), now, now)
    assert due.expired() and due.remaining() == timedelta(0)
    later = ExpirationTimerView(timedelta(seconds=1), now + 0.25, now)
    assert later.remaining() == timedelta(seconds=0.25)
    forever = ExpirationTimerView(None, None, now)
    assert forever.remaining() is None and forever.remaining("forever") == "forever"


class _DrainingTransport(wakeupTransportBase):
    """The wakeup half of a Thespian transport over nothing: each run of
    its sockets simply expires, as one with nothing to receive does."""

    myAddress = "me"

    def _runWithExpiry(self, incomingHandler):
        return Thespian__Run_Expired()


def test_a_wakeup_due_during_a_transmit_only_run_reaches_the_actor_afterwards():
    keep_wakeups_while_draining()
    keep_wakeups_while_draining()  # idempotent
    transport = _DrainingTransport()
    transport.run_time = ExpirationTimer(None)
    transport.addWakeup(timedelta(0), "resume")
    # what Thespian does to drain 950 queued sends: the due wakeup must not come back from it
    assert transport.run(TransmitOnly, timedelta(milliseconds=5)) in (None, 0)
    delivered = []
    transport.run(lambda envelope: delivered.append(envelope.message.payload) or True, timedelta(milliseconds=5))
    assert delivered == ["resume"]


def test_free_port_never_hands_out_the_same_port_twice():
    """A daemon takes an admin port and an HTTP port, both free until it
    binds the first; the same number twice makes its second bind fail. 500
    draws from the ~12,800 ports below the ephemeral range would repeat one
    almost surely if each draw were independent."""
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
