"""Cron schedules for cron triggers, read the way Vixie cron reads them.

Five fields, `minute hour day-of-month month day-of-week`, each `*`, a
number, a range `a-b`, a stepped `*/n` or `a-b/n`, or a comma list of these;
month names `jan`-`dec` and day names `sun`-`sat` in any case; day-of-week
0-7 with both 0 and 7 Sunday; the macros `@hourly` `@daily` `@midnight`
`@weekly` `@monthly` `@yearly` `@annually`.

Day-of-month and day-of-week follow Vixie cron to the letter: if either
field begins with `*` (that includes `*/n`), a day must match both; if
neither does, a day matches when either matches. So `0 0 1,15 * mon` fires
on the 1st, the 15th and every Monday, while `0 0 */2 * mon` fires only on
Mondays with an odd day of the month.

Ticks are computed on the wall clock of the moment's tzinfo, without any
daylight-saving adjustment: the daemon works in UTC, where none is needed.
"""

from __future__ import annotations

from bisect import bisect_left
from calendar import monthrange
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import MAXYEAR, date, datetime, time, timedelta

from petriflow.engine.errors import Invalid

MACROS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

HORIZON_YEARS = 400
"""How far `next_after` looks before it calls a schedule impossible. The
Gregorian calendar repeats every 400 years, so a schedule with no tick in
that span has none at all; a shorter span would misjudge rare but real
schedules such as `0 0 29 2 *` across 2100 (eight years without a Feb 29)."""


def _names(*names: str, first: int) -> dict[str, int]:
    return {name: first + i for i, name in enumerate(names)}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int]

    def parse(self, text: str) -> tuple[int, ...]:
        """The sorted values a field's text selects; ValueError names the problem."""
        values: set[int] = set()
        for item in text.split(","):
            values.update(self._item(item))
        return tuple(sorted(values))

    def _item(self, item: str) -> range:
        body, slash, step_text = item.partition("/")
        if body == "*":
            low, high = self.low, self.high
        else:
            first, dash, last = body.partition("-")
            low = self._value(first)
            high = self._value(last) if dash else low
            if slash and not dash:
                raise ValueError(f"{self.name} step {item!r} needs '*' or a range before '/'")
            if low > high:
                raise ValueError(f"{self.name} range {body!r} runs backwards")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ValueError(f"{self.name} step {step_text!r} is not a positive number")
            step = int(step_text)
        return range(low, high + 1, step)

    def _value(self, text: str) -> int:
        if text.lower() in self.names:
            return self.names[text.lower()]
        if not (text.isascii() and text.isdigit()):
            kind = "a number or a name" if self.names else "a number"
            raise ValueError(f"{self.name} {text!r} is not {kind}")
        value = int(text)
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.name} {value} is out of range {self.low}-{self.high}")
        return value


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field(
        "month",
        1,
        12,
        _names("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", first=1),
    ),
    _Field("day-of-week", 0, 7, _names("sun", "mon", "tue", "wed", "thu", "fri", "sat", first=0)),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed cron expression: the sorted values each field allows.

    `days_of_week` counts Sunday as 0 (a 7 in the expression is folded into
    it); `dom_star`/`dow_star` record whether the field began with `*`, which
    decides how the two day fields combine (see the module docstring)."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    dom_star: bool
    dow_star: bool

    @classmethod
    def parse(cls, expression: str) -> CronSchedule:
        """Parse a 5-field expression or a macro; Invalid names the offending field and value."""
        text = expression.strip()
        if text.startswith("@"):
            if text.lower() not in MACROS:
                raise Invalid(f"cron {expression!r}: unknown macro {text!r}; known: {', '.join(MACROS)}")
            text = MACROS[text.lower()]
        fields = text.split()
        if len(fields) != len(_FIELDS):
            raise Invalid(f"cron {expression!r}: expected {len(_FIELDS)} fields, got {len(fields)}")
        try:
            minutes, hours, doms, months, dows = (spec.parse(f) for spec, f in zip(_FIELDS, fields))
        except ValueError as problem:
            raise Invalid(f"cron {expression!r}: {problem}") from None
        return cls(
            expression=expression,
            minutes=minutes,
            hours=hours,
            days_of_month=doms,
            months=months,
            days_of_week=tuple(sorted({d % 7 for d in dows})),
            dom_star=fields[2].startswith("*"),
            dow_star=fields[4].startswith("*"),
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, with `moment`'s tzinfo.

        Walks matching months, then matching days, then the first matching
        time of day, so a sparse schedule costs a few steps, not a minute-by-
        minute scan. Raises Invalid when the schedule never fires."""
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for year in range(start.year, min(start.year + HORIZON_YEARS, MAXYEAR) + 1):
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                from_day = start.day if (year, month) == (start.year, start.month) else 1
                for day in self._days(year, month, from_day):
                    earliest = start.time() if day == start.date() else time.min
                    tick = self._first_time(earliest)
                    if tick is not None:
                        return datetime.combine(day, tick, tzinfo=moment.tzinfo)
        raise Invalid(f"cron {self.expression!r} never fires")

    def _days(self, year: int, month: int, from_day: int) -> Iterator[date]:
        """The matching days of a month from `from_day` on, in order."""
        last = monthrange(year, month)[1]
        if self.dom_star or self.dow_star:
            # Both fields must match: only the listed days of the month can.
            candidates = [d for d in self.days_of_month[bisect_left(self.days_of_month, from_day) :] if d <= last]
        else:
            candidates = list(range(from_day, last + 1))
        days = (date(year, month, d) for d in candidates)
        return (day for day in days if self._day_matches(day))

    def _day_matches(self, day: date) -> bool:
        dom = day.day in self.days_of_month
        dow = day.isoweekday() % 7 in self.days_of_week
        return dom and dow if self.dom_star or self.dow_star else dom or dow

    def _first_time(self, earliest: time) -> time | None:
        """The first matching time of day at or after `earliest`, if any."""
        for hour in self.hours[bisect_left(self.hours, earliest.hour) :]:
            floor = earliest.minute if hour == earliest.hour else 0
            index = bisect_left(self.minutes, floor)
            if index < len(self.minutes):
                return time(hour, self.minutes[index])
        return None


def due_ticks(schedule: CronSchedule, last_tick: datetime | None, now: datetime) -> list[datetime]:
    """The ticks to run now: at most one, the latest in (last_tick, now].

    Ticks missed while the daemon was down run once at start-up, not once
    each. With no `last_tick` (a trigger never evaluated) nothing is due: the
    caller records `now` as its last tick, so the first tick after it fires.
    The caller records the returned tick as the new `last_tick`."""
    if last_tick is None:
        return []
    # Find a tick in (last_tick, now] through windows reaching back from
    # `now`, doubling each time, so a long outage costs a few look-ups.
    window = timedelta(minutes=1)
    while True:
        start = max(last_tick, now - window)
        tick = schedule.next_after(start)
        if tick <= now:
            break
        if start == last_tick:
            return []
        window *= 2
    while (following := schedule.next_after(tick)) <= now:
        tick = following
    return [tick]
