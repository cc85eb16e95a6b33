"""Cron schedules: Vixie cron's reading of the five fields, the next tick,
the errors a user sees, and which ticks are due after a pause."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from petriflow.engine.cron import CronSchedule, due_ticks
from petriflow.engine.errors import Invalid


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# March 2026: Sun 1, Mon 2, Tue 10, Fri 13, Sat 14, Sun 15, Mon 16, Wed 18.
NEXT_AFTER = [
    # every field form
    ("* * * * *", "2026-03-10 10:15:30.5", "2026-03-10 10:16"),
    ("5 * * * *", "2026-03-10 10:04:59", "2026-03-10 10:05"),
    ("5 * * * *", "2026-03-10 10:05", "2026-03-10 11:05"),
    ("0,30 * * * *", "2026-03-10 10:15", "2026-03-10 10:30"),
    ("10-12 * * * *", "2026-03-10 10:12", "2026-03-10 11:10"),
    ("*/15 * * * *", "2026-03-10 10:46", "2026-03-10 11:00"),
    ("10-40/10 * * * *", "2026-03-10 10:25", "2026-03-10 10:30"),
    ("10-40/10 * * * *", "2026-03-10 10:41", "2026-03-10 11:10"),
    ("1,5-7,50-59/3 * * * *", "2026-03-10 10:07", "2026-03-10 10:50"),
    ("1,5-7,50-59/3 * * * *", "2026-03-10 10:59", "2026-03-10 11:01"),
    ("0 */6 * * *", "2026-03-10 07:00", "2026-03-10 12:00"),
    ("30 9-17/4 * * *", "2026-03-10 14:00", "2026-03-10 17:30"),
    ("30 9-17/4 * * *", "2026-03-10 17:30", "2026-03-11 09:30"),
    ("0 0 1,15 * *", "2026-03-10 00:00", "2026-03-15 00:00"),
    ("0 0 1,15 * *", "2026-03-15 00:00", "2026-04-01 00:00"),
    ("  0   2  * *\t*  ", "2026-03-10 10:00", "2026-03-11 02:00"),
    # month and day names, any case, in lists and ranges
    ("0 0 1 jan,Jul *", "2026-03-10 00:00", "2026-07-01 00:00"),
    ("0 0 1 JAN-mar/2 *", "2026-01-01 00:00", "2026-03-01 00:00"),
    ("0 0 1 JAN-mar/2 *", "2026-03-01 00:00", "2027-01-01 00:00"),
    ("0 9 * * mon-fri", "2026-03-13 10:00", "2026-03-16 09:00"),
    ("0 9 * * MON-Fri", "2026-03-10 08:59", "2026-03-10 09:00"),
    # Sunday is 0, 7 and sun
    ("0 12 * * 0", "2026-03-10 00:00", "2026-03-15 12:00"),
    ("0 12 * * 7", "2026-03-10 00:00", "2026-03-15 12:00"),
    ("0 12 * * Sun", "2026-03-10 00:00", "2026-03-15 12:00"),
    ("0 0 * * 5-7", "2026-03-10 00:00", "2026-03-13 00:00"),
    ("0 0 * * 5-7", "2026-03-14 00:00", "2026-03-15 00:00"),
    ("0 0 * * 5-7", "2026-03-15 00:00", "2026-03-20 00:00"),
    ("0 0 * * */2", "2026-03-10 00:00", "2026-03-12 00:00"),
    # both day fields restricted: a day matching either fires
    ("0 0 18 * mon", "2026-03-14 00:00", "2026-03-16 00:00"),
    ("0 0 18 * mon", "2026-03-16 00:00", "2026-03-18 00:00"),
    ("0 0 18 * mon", "2026-03-18 00:00", "2026-03-23 00:00"),
    ("0 0 1-7 * mon", "2026-03-08 00:00", "2026-03-09 00:00"),
    # one day field begins with '*' (Vixie): a day must match both
    ("0 0 */2 * mon", "2026-03-01 00:00", "2026-03-09 00:00"),
    ("0 0 */2 * mon", "2026-03-09 00:00", "2026-03-23 00:00"),
    ("0 0 18 * */1", "2026-03-14 00:00", "2026-03-18 00:00"),
    ("0 0 18 * */1", "2026-03-18 00:00", "2026-04-18 00:00"),
    ("0 0 * * mon", "2026-03-14 00:00", "2026-03-16 00:00"),
    # month ends and leap years
    ("0 0 31 * *", "2026-04-01 00:00", "2026-05-31 00:00"),
    ("0 0 30 * *", "2026-01-30 00:00", "2026-03-30 00:00"),
    ("0 0 29-31 * *", "2026-01-31 00:00", "2026-03-29 00:00"),
    ("0 0 29 2 *", "2024-02-28 12:00", "2024-02-29 00:00"),
    ("0 0 29 2 *", "2026-03-01 00:00", "2028-02-29 00:00"),
    ("0 0 29 2 *", "2096-03-01 00:00", "2104-02-29 00:00"),
    ("0 0 29 2 */7", "2005-01-01 00:00", "2032-02-29 00:00"),
    # year rollover
    ("59 23 31 12 *", "2026-12-31 23:59", "2027-12-31 23:59"),
    ("0 0 1 1 *", "2026-12-31 23:59:59", "2027-01-01 00:00"),
    ("* * * * *", "2026-12-31 23:59:30", "2027-01-01 00:00"),
    ("0 0 * * *", "2026-12-31 00:00", "2027-01-01 00:00"),
    # macros
    ("@hourly", "2026-03-10 10:00", "2026-03-10 11:00"),
    ("@daily", "2026-03-10 10:00", "2026-03-11 00:00"),
    ("@DAILY", "2026-03-10 10:00", "2026-03-11 00:00"),
    ("@midnight", "2026-03-10 10:00", "2026-03-11 00:00"),
    ("@weekly", "2026-03-10 10:00", "2026-03-15 00:00"),
    ("@monthly", "2026-03-10 10:00", "2026-04-01 00:00"),
    ("@yearly", "2026-03-10 10:00", "2027-01-01 00:00"),
    ("@Annually", "2026-03-10 10:00", "2027-01-01 00:00"),
]


@pytest.mark.parametrize("expression,moment,expected", NEXT_AFTER)
def test_next_after(expression, moment, expected):
    assert CronSchedule.parse(expression).next_after(at(moment)) == at(expected)


def test_next_after_keeps_the_timezone_and_zeroes_seconds():
    utc = CronSchedule.parse("0 2 * * *").next_after(datetime(2026, 3, 10, 3, 4, 5, 6, tzinfo=UTC))
    assert utc == datetime(2026, 3, 11, 2, tzinfo=UTC) and utc.tzinfo is UTC
    india = timezone(timedelta(hours=5, minutes=30))
    assert CronSchedule.parse("*/10 * * * *").next_after(datetime(2026, 3, 10, 3, 4, 5, tzinfo=india)) == datetime(
        2026, 3, 10, 3, 10, tzinfo=india
    )


def test_sunday_as_seven_is_folded_into_zero():
    assert CronSchedule.parse("0 0 * * 7").days_of_week == CronSchedule.parse("0 0 * * sun").days_of_week == (0,)
    assert CronSchedule.parse("0 0 * * *").days_of_week == (0, 1, 2, 3, 4, 5, 6)


def _brute_next(schedule: CronSchedule, moment: datetime) -> datetime:
    """Minute by minute, with the day rule written out plainly."""
    tick = moment.replace(second=0, microsecond=0)
    while True:
        tick += timedelta(minutes=1)
        dom, dow = tick.day in schedule.days_of_month, tick.isoweekday() % 7 in schedule.days_of_week
        day = (dom and dow) if (schedule.dom_star or schedule.dow_star) else (dom or dow)
        if tick.minute in schedule.minutes and tick.hour in schedule.hours and tick.month in schedule.months and day:
            return tick


@pytest.mark.parametrize(
    "expression", ["*/7 3,15 * * *", "0 0 1-7 * mon", "15 */5 */3 * 1-5", "0 12 13 * fri", "45 23 * feb-apr sat,sun"]
)
def test_next_after_agrees_with_a_minute_by_minute_scan(expression):
    schedule = CronSchedule.parse(expression)
    moment = at("2026-01-30 22:50:17")
    for _ in range(25):
        expected = _brute_next(schedule, moment)
        assert schedule.next_after(moment) == expected
        moment = expected + timedelta(seconds=59)


ERRORS = [
    ("61 * * * *", "cron '61 * * * *': minute 61 is out of range 0-59"),
    ("* * *", "cron '* * *': expected 5 fields, got 3"),
    ("* * * * * *", "cron '* * * * * *': expected 5 fields, got 6"),
    ("", "cron '': expected 5 fields, got 0"),
    ("* 24 * * *", "cron '* 24 * * *': hour 24 is out of range 0-23"),
    ("* * 0 * *", "cron '* * 0 * *': day-of-month 0 is out of range 1-31"),
    ("* * 32 * *", "cron '* * 32 * *': day-of-month 32 is out of range 1-31"),
    ("* * * 13 *", "cron '* * * 13 *': month 13 is out of range 1-12"),
    ("* * * * 8", "cron '* * * * 8': day-of-week 8 is out of range 0-7"),
    ("* * * foo *", "cron '* * * foo *': month 'foo' is not a number or a name"),
    ("* * * * funday", "cron '* * * * funday': day-of-week 'funday' is not a number or a name"),
    ("x * * * *", "cron 'x * * * *': minute 'x' is not a number"),
    ("1,,2 * * * *", "cron '1,,2 * * * *': minute '' is not a number"),
    ("-5 * * * *", "cron '-5 * * * *': minute '' is not a number"),
    ("*/0 * * * *", "cron '*/0 * * * *': minute step '0' is not a positive number"),
    ("*/x * * * *", "cron '*/x * * * *': minute step 'x' is not a positive number"),
    ("5/10 * * * *", "cron '5/10 * * * *': minute step '5/10' needs '*' or a range before '/'"),
    ("* 5-3 * * *", "cron '* 5-3 * * *': hour range '5-3' runs backwards"),
    ("* * * dec-jan *", "cron '* * * dec-jan *': month range 'dec-jan' runs backwards"),
    (
        "@reboot",
        "cron '@reboot': unknown macro '@reboot'; known: @hourly, @daily, @midnight, @weekly, "
        "@monthly, @yearly, @annually",
    ),
]


@pytest.mark.parametrize("expression,message", ERRORS)
def test_parse_errors_name_the_field_and_value(expression, message):
    with pytest.raises(Invalid) as caught:
        CronSchedule.parse(expression)
    assert caught.value.message == message
    assert caught.value.code == "invalid"


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 31 2 */7", "0 0 30-31 feb *"])
def test_impossible_schedules_never_fire(expression):
    with pytest.raises(Invalid, match=re.escape(f"cron {expression!r} never fires")):
        CronSchedule.parse(expression).next_after(at("2026-03-10 10:00"))


HOURLY = CronSchedule.parse("0 * * * *")

DUE = [
    (HOURLY, None, "2026-03-10 10:30", []),
    (HOURLY, "2026-03-10 10:00", "2026-03-10 10:59:59", []),
    (HOURLY, "2026-03-10 10:00", "2026-03-10 11:00", ["2026-03-10 11:00"]),
    (HOURLY, "2026-03-10 10:00", "2026-03-10 11:00:30", ["2026-03-10 11:00"]),
    (HOURLY, "2026-03-10 11:00", "2026-03-10 11:00", []),
    (HOURLY, "2026-03-10 12:00", "2026-03-10 11:00", []),
    # down for days: only the latest missed tick runs
    (HOURLY, "2026-03-01 10:00", "2026-03-05 07:30", ["2026-03-05 07:00"]),
    (CronSchedule.parse("0 2 * * *"), "2026-03-01 02:00", "2026-03-10 01:00", ["2026-03-09 02:00"]),
    (CronSchedule.parse("@yearly"), "2000-01-01 00:00", "2026-06-01 00:00", ["2026-01-01 00:00"]),
    (CronSchedule.parse("* * * * *"), "1970-01-01 00:00", "2026-06-01 12:30:10", ["2026-06-01 12:30"]),
    (CronSchedule.parse("* 9 * * *"), "2026-03-01 00:00", "2026-03-10 15:00", ["2026-03-10 09:59"]),
]


@pytest.mark.parametrize("schedule,last_tick,now,expected", DUE)
def test_due_ticks(schedule, last_tick, now, expected):
    last = None if last_tick is None else at(last_tick)
    assert due_ticks(schedule, last, at(now)) == [at(t) for t in expected]


def test_a_polling_daemon_runs_each_tick_once_and_missed_ticks_once():
    """The daemon's loop with an injected clock: poll every 20 s, record what ran."""
    schedule = CronSchedule.parse("*/30 * * * *")
    now, last_tick, ran = at("2026-03-10 09:50:07"), None, []

    def poll() -> None:
        nonlocal last_tick
        due = due_ticks(schedule, last_tick, now)
        ran.extend(due)
        last_tick = due[-1] if due else (last_tick or now)

    for _ in range(3 * 180):  # three hours
        poll()
        now += timedelta(seconds=20)
    assert ran == [at(f"2026-03-10 {t}") for t in ("10:00", "10:30", "11:00", "11:30", "12:00", "12:30")]
    now += timedelta(hours=5)  # the daemon was down: 10 ticks missed, one runs
    poll()
    assert ran[-1] == at("2026-03-10 17:30") and len(ran) == 7


def test_due_ticks_with_aware_utc_times():
    utc = UTC
    assert due_ticks(HOURLY, datetime(2026, 3, 10, 10, tzinfo=utc), datetime(2026, 3, 10, 13, 5, tzinfo=utc)) == [
        datetime(2026, 3, 10, 13, tzinfo=utc)
    ]
