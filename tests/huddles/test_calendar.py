"""The working-day calendar: Scottish holidays, closed dates, and the cut-off across the
clock changes (example-based and property-based)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from services.calendar import WorkingCalendar, is_scottish_holiday
from tests.conftest import make_settings

LONDON = ZoneInfo("Europe/London")
CAL = WorkingCalendar(tz=LONDON)


def test_monday_follows_friday_and_friday_precedes_monday():
    assert CAL.previous_working_day(date(2026, 11, 23)) == date(2026, 11, 20)  # Mon -> Fri
    assert CAL.next_working_day(date(2026, 11, 20)) == date(2026, 11, 23)
    # A weekend day is not a working day but has neighbours.
    assert not CAL.is_working_day(date(2026, 11, 22))
    assert CAL.next_working_day(date(2026, 11, 21)) == date(2026, 11, 23)
    assert CAL.previous_working_day(date(2026, 11, 22)) == date(2026, 11, 20)


def test_tuesday_after_a_bank_holiday_monday():
    # St Andrew's Day 2026 is Monday 30 November: Tuesday's previous huddle is Friday.
    assert is_scottish_holiday(date(2026, 11, 30))
    assert CAL.previous_working_day(date(2026, 12, 1)) == date(2026, 11, 27)
    assert CAL.next_working_day(date(2026, 11, 27)) == date(2026, 12, 1)
    # May Day 2027 (Monday 3 May).
    assert CAL.previous_working_day(date(2027, 5, 4)) == date(2027, 4, 30)


def test_christmas_and_new_year_including_2_january():
    # 2026: Christmas Friday, Boxing Day Saturday -> observed Monday 28th.
    assert CAL.next_working_day(date(2026, 12, 24)) == date(2026, 12, 29)
    # New Year's Day Friday 2027, 2 January Saturday -> observed Monday 4th (Scotland only).
    assert CAL.next_working_day(date(2026, 12, 31)) == date(2027, 1, 5)
    # 2 January is a holiday in Scotland (not in England): Tuesday 2 January 2029.
    assert is_scottish_holiday(date(2029, 1, 2))
    assert CAL.next_working_day(date(2028, 12, 29)) == date(2029, 1, 3)
    # 2027: Christmas Saturday, Boxing Day Sunday -> Mon 27 and Tue 28 observed.
    assert CAL.next_working_day(date(2027, 12, 24)) == date(2027, 12, 29)


def test_st_andrews_day_substitute_rules_as_the_package_gives_them():
    assert is_scottish_holiday(date(2027, 11, 30))  # a Tuesday
    assert not CAL.is_working_day(date(2027, 11, 30))
    # 30 November 2030 is a Saturday: the substitute is Monday 2 December.
    assert is_scottish_holiday(date(2030, 12, 2))
    assert CAL.next_working_day(date(2030, 11, 29)) == date(2030, 12, 3)


def test_closed_dates_from_settings():
    s = make_settings("sqlite://", closed_dates="2026-11-25, 2026-11-26")
    cal = WorkingCalendar.from_settings(s)
    assert not cal.is_working_day(date(2026, 11, 25))
    assert cal.next_working_day(date(2026, 11, 24)) == date(2026, 11, 27)
    assert cal.previous_working_day(date(2026, 11, 27)) == date(2026, 11, 24)
    assert "closed" in cal.why_not_working(date(2026, 11, 25))
    assert cal.why_not_working(date(2026, 11, 24)) is None


def test_cutoff_on_both_sides_of_the_clock_changes():
    # Last Sunday of March 2026 is the 29th; of October the 25th.
    assert CAL.cutoff_at(date(2026, 3, 27)) == datetime(2026, 3, 27, 9, 0, tzinfo=UTC)
    assert CAL.cutoff_at(date(2026, 3, 30)) == datetime(2026, 3, 30, 8, 0, tzinfo=UTC)
    assert CAL.cutoff_at(date(2026, 10, 23)) == datetime(2026, 10, 23, 8, 0, tzinfo=UTC)
    assert CAL.cutoff_at(date(2026, 10, 26)) == datetime(2026, 10, 26, 9, 0, tzinfo=UTC)
    # The change days themselves (Sundays, not working days, but a cut-off still exists).
    assert CAL.cutoff_at(date(2026, 3, 29)) == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)
    assert CAL.cutoff_at(date(2026, 10, 25)) == datetime(2026, 10, 25, 9, 0, tzinfo=UTC)


def _last_sunday(year: int, month: int) -> date:
    d = date(year, month, 31)
    return d - timedelta(days=(d.weekday() - 6) % 7)


def _is_bst(day: date) -> bool:
    """Independent rule: BST from the last Sunday of March to the last Sunday of October."""
    return _last_sunday(day.year, 3) <= day < _last_sunday(day.year, 10)


dates = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))


@settings(max_examples=200, deadline=None)
@given(day=dates)
def test_property_cutoff_is_0900_local_with_the_right_offset(day):
    cut = CAL.cutoff_at(day)
    assert cut.tzinfo is not None and cut.utcoffset() == timedelta(0)
    local = cut.astimezone(LONDON)
    assert (local.date(), local.time()) == (day, time(9, 0))
    assert cut.hour == (8 if _is_bst(day) else 9)
    assert local.utcoffset() == timedelta(hours=1 if _is_bst(day) else 0)


@settings(max_examples=150, deadline=None)
@given(day=dates, hour=st.integers(3, 23), minute=st.sampled_from([0, 15, 30, 45]))
def test_property_any_configured_cutoff_is_that_local_time(day, hour, minute):
    cal = WorkingCalendar(tz=LONDON, cutoff=time(hour, minute))
    local = cal.cutoff_at(day).astimezone(LONDON)
    assert (local.date(), local.hour, local.minute) == (day, hour, minute)


@settings(max_examples=200, deadline=None)
@given(day=dates)
def test_property_previous_and_next_working_days(day):
    prev, nxt = CAL.previous_working_day(day), CAL.next_working_day(day)
    assert prev < day < nxt
    assert CAL.is_working_day(prev) and CAL.is_working_day(nxt)
    assert prev.weekday() < 5 and nxt.weekday() < 5
    # No working day is skipped in between.
    for gap in (prev, day):
        d = gap + timedelta(days=1)
        while d < (day if gap == prev else nxt):
            assert not CAL.is_working_day(d)
            d += timedelta(days=1)
    if CAL.is_working_day(day):
        assert CAL.next_working_day(prev) == day
        assert CAL.previous_working_day(nxt) == day


@settings(max_examples=150, deadline=None)
@given(
    day=st.sampled_from(
        [date(2026, 3, 27), date(2026, 3, 30), date(2026, 10, 23), date(2026, 10, 26)]
        + [date(2027, 3, 26), date(2027, 3, 29), date(2027, 10, 29), date(2027, 11, 1)]
    ),
    seconds=st.integers(-6 * 3600, 6 * 3600),
)
def test_property_instants_around_the_cutoff_fall_on_the_right_side(day, seconds):
    """An instant is before the cut-off exactly when its local wall time is before 09:00."""
    cut = CAL.cutoff_at(day)
    instant = cut + timedelta(seconds=seconds)
    local = instant.astimezone(LONDON)
    before_local_nine = (local.date(), local.time()) < (day, time(9, 0))
    assert (instant < cut) == before_local_nine
