"""The working calendar (工作日): which days in Hangzhou are working days.

The State Council publishes each year's schedule in the autumn: public
holidays are not working days, and the make-up Saturdays and Sundays (调休)
are. The schedule comes from the `chinese-calendar` package, which carries
the published notices (through 2026 in the pinned release), and from the
office's own corrections (LINLI_WORKDAY_OVERRIDES, services.common.settings),
which win over the package and cover a year it does not know yet.

A year known to neither falls back to Monday–Friday, and says so: a logged
warning and the console dashboard's notice (`missing_years`), never silently.

Every timer that counts working days reads it here: intake's hotline
deadlines, extensions and hand-backs, and the 回访 follow-up."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar
from flask import current_app, has_app_context

from .clock import SHANGHAI

log = logging.getLogger(__name__)

WORKDAY, HOLIDAY = "workday", "holiday"


def _published(day: date) -> bool | None:
    """The package's answer for `day`: True (working day), False, or None
    when its data does not reach that year."""
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        return None


class WorkingCalendar:
    """Working days from the published schedule, corrected by the office."""

    def __init__(self, overrides: dict | None = None):
        # {date: True (working day) | False (holiday)}; settings.workday_overrides checked the values.
        self.overrides: dict[date, bool] = {
            (d if isinstance(d, date) else date.fromisoformat(d)): (v is True or v == WORKDAY)
            for d, v in (overrides or {}).items()}
        self._override_years = {d.year for d in self.overrides}
        self._warned: set[int] = set()

    def known(self, year: int) -> bool:
        """Whether the year's schedule is known: published in the package, or
        entered by the office (any override in that year counts as the
        office having entered it)."""
        return year in self._override_years or _published(date(year, 6, 1)) is not None

    def missing_years(self, years) -> list[int]:
        return sorted(y for y in set(years) if not self.known(y))

    def is_workday(self, day: date) -> bool:
        if day in self.overrides:
            return self.overrides[day]
        published = _published(day)
        if published is not None:
            return published
        if day.year not in self._override_years and day.year not in self._warned:
            self._warned.add(day.year)
            log.warning("working calendar: no holiday schedule for %s (neither chinese-calendar nor "
                        "LINLI_WORKDAY_OVERRIDES); counting Monday to Friday for that year", day.year)
        return day.weekday() < 5

    def is_public_holiday(self, day: date) -> bool:
        """A day of a holiday period (春节, 国庆 …), weekend days inside it
        included; an ordinary weekend is not one."""
        if day in self.overrides:
            return not self.overrides[day]
        try:
            return chinese_calendar.get_holiday_detail(day)[1] is not None and not chinese_calendar.is_workday(day)
        except NotImplementedError:
            return False

    def add_days_outside_holidays(self, start: datetime, days: int) -> datetime:
        """`start` + `days` calendar days, not counting public-holiday days:
        the hotline's "never more than 7 days" does not run out during 春节."""
        local = start.astimezone(SHANGHAI)
        while days > 0:
            local += timedelta(days=1)
            if not self.is_public_holiday(local.date()):
                days -= 1
        return local.astimezone(start.tzinfo)

    def next_workday(self, day: date) -> date:
        """`day` itself when it is a working day, else the next one."""
        while not self.is_workday(day):
            day += timedelta(days=1)
        return day

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """`start` moved on by `days` working days, at the same Hangzhou time
        of day (a request at 10:00 on a Friday before 春节 is due at 10:00 on
        the fifth working day after it)."""
        local = start.astimezone(SHANGHAI)
        while days > 0:
            local += timedelta(days=1)
            if self.is_workday(local.date()):
                days -= 1
        return local.astimezone(start.tzinfo)

    def on_working_day(self, moment: datetime) -> datetime:
        """`moment` if it falls on a working day (Hangzhou), else the start
        (08:00) of the next working day."""
        local = moment.astimezone(SHANGHAI)
        day = self.next_workday(local.date())
        if day == local.date():
            return moment
        return datetime.combine(day, datetime.min.time().replace(hour=8), SHANGHAI).astimezone(moment.tzinfo)


def years_ahead(now: datetime) -> list[int]:
    """The years whose schedule the timers need now: this one, and from
    November (when deadlines start to run into it) the next."""
    local = now.astimezone(SHANGHAI)
    return [local.year, local.year + 1] if local.month >= 11 else [local.year]


_DEFAULT = WorkingCalendar()


def calendar() -> WorkingCalendar:
    """The current app's calendar (services.common.factory makes it from the
    configuration); the package's schedule alone outside an app."""
    if has_app_context():
        return current_app.extensions.get("workdays", _DEFAULT)
    return _DEFAULT
