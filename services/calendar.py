"""The working-day calendar of the daily huddle.

A working day is Monday to Friday, minus Scottish public holidays (the ``holidays``
package, country GB, subdivision SCT, which already applies the substitute-day rules:
2 January, St Andrew's Day on a weekend moved to the Monday, and so on) and minus the
locally configured closed dates (``NFOD_CLOSED_DATES``).

The huddle cut-off of a local date is ``NFOD_HUDDLE_CUTOFF`` (default 09:00) on that date
in ``NFOD_TIMEZONE`` (default Europe/London), converted to UTC: 09:00Z in winter (GMT),
08:00Z in summer (BST). The conversion goes through ``zoneinfo`` for each date, so it is
right on both sides of the March and October clock changes. A cut-off configured inside
the spring-forward gap (e.g. 01:30 on the last Sunday of March) resolves with ``fold=0``,
i.e. the UTC offset in force before the change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

from services.config import Settings

# No realistic calendar closes for a year; this bounds the search for the next working day.
_MAX_SEARCH_DAYS = 400


@lru_cache(maxsize=128)
def scottish_holidays(year: int) -> dict[date, str]:
    """Scottish public holidays of one year: date -> name, as the ``holidays`` package has them."""
    return dict(holidays.country_holidays("GB", subdiv="SCT", years=year).items())


def is_scottish_holiday(day: date) -> bool:
    return day in scottish_holidays(day.year)


@dataclass(frozen=True)
class WorkingCalendar:
    tz: ZoneInfo
    cutoff: time = time(9, 0)
    closed: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkingCalendar:
        return cls(tz=settings.tz, cutoff=settings.huddle_cutoff, closed=settings.closed_date_set)

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and not is_scottish_holiday(day) and day not in self.closed

    def why_not_working(self, day: date) -> str | None:
        """A short reason why ``day`` is not a working day, or None when it is one."""
        if day.weekday() >= 5:
            return "weekend"
        if is_scottish_holiday(day):
            return f"public holiday ({scottish_holidays(day.year)[day]})"
        if day in self.closed:
            return "closed date (NFOD_CLOSED_DATES)"
        return None

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        candidate = day
        for _ in range(_MAX_SEARCH_DAYS):
            candidate += timedelta(days=1)
            if self.is_working_day(candidate):
                return candidate
        raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days after {day}")

    def previous_working_day(self, day: date) -> date:
        """The last working day strictly before ``day``."""
        candidate = day
        for _ in range(_MAX_SEARCH_DAYS):
            candidate -= timedelta(days=1)
            if self.is_working_day(candidate):
                return candidate
        raise ValueError(f"no working day within {_MAX_SEARCH_DAYS} days before {day}")

    def cutoff_at(self, day: date) -> datetime:
        """The huddle cut-off of a local date, in UTC."""
        local = datetime.combine(day, self.cutoff, tzinfo=self.tz)
        return local.astimezone(UTC)

    def local_date(self, at: datetime) -> date:
        """The local calendar date of an instant."""
        return at.astimezone(self.tz).date()
