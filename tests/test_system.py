"""Opening actor systems the way petriflow needs them: what the patches to
Thespian guarantee, checked on Thespian's own timer objects."""

from __future__ import annotations

from datetime import timedelta

from thespian.system.timing import ExpirationTimerView

from petriflow.system import keep_timers_awake


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
