"""The summary report: figures the team lives by, computed in SQL, with small-number
suppression for analysts.

The period is a range of local dates (``settings.timezone``); an incident counts when the
local date of its ``occurred_at`` falls in it (the bounds are the local midnights, so
clock changes are handled). Every figure is about the period's incidents:

- ``incidents``; ``people`` (distinct identified people); ``people_with_repeat`` (people
  with two or more of the period's incidents).
- ``contacted_within_72h_pct`` = 100 * (incidents with ``within_window`` true) /
  (incidents whose first contact is recorded, or whose ``contact_due_at`` <= now), rounded
  to one decimal; ``null`` when that denominator is 0.
- ``median_hours_to_first_contact``: the median of ``first_contact_at - occurred_at`` in
  hours over the incidents with a first contact (one decimal); ``null`` when there is none.
- ``open_overdue``: awaiting contact with ``contact_due_at`` < now.
- ``naloxone_supplied``: contact attempts on the period's incidents recording the action
  ``naloxone_supplied``; ``referrals``: referral codes recorded on them, total and by code.
- Breakdowns of the incidents: ``by_source`` (source agency name), ``by_sex`` (the person's,
  ``unknown`` when not identified), ``by_age_band`` (age at the overdose, on its UTC date),
  ``by_substance`` (incidents naming each substance; an incident may name several),
  ``by_postcode_district`` (``unknown`` when no postcode).

Suppression (analysts): see :func:`suppress`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select
from sqlalchemy.orm import Session

from models.agency import Agency
from models.contact import REFERRALS, ContactAttempt, ContactCode
from models.incident import Incident, IncidentSubstance
from models.person import SEXES, Person
from services import audit
from services.config import Settings
from services.errors import Forbidden, Invalid
from services.principal import Principal

REPORT_ROLES = ("coordinator", "analyst")
SMALL = "<5"
SECONDARY = "suppressed"
AGE_BANDS = ("under 18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+", "unknown")
MAX_DAYS = 3660
MIN_YEAR, MAX_YEAR = 1900, 2199
# Breakdowns that partition the incidents (their cells add up to ``incidents``).
PARTITIONS = ("by_source", "by_sex", "by_age_band", "by_postcode_district")


@dataclass
class Period:
    start: date
    end: date
    lo: datetime  # first instant (UTC)
    hi: datetime  # first instant after the period (UTC)


def period(settings: Settings, start: date, end: date) -> Period:
    for name, value in (("from", start), ("to", end)):
        if not MIN_YEAR <= value.year <= MAX_YEAR:
            raise Invalid(
                f"{name} must be a date from {MIN_YEAR} to {MAX_YEAR}", loc=["query", name]
            )
    if start > end:
        raise Invalid("from must not be after to", loc=["query", "from"])
    if (end - start).days > MAX_DAYS:
        raise Invalid("the period may be at most ten years", loc=["query", "to"])
    tz = settings.tz
    lo = datetime.combine(start, time(0), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return Period(start, end, lo, hi)


def _hours(dialect: str, later, earlier):
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier) / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


def _age(dialect: str, occurred_at, dob):
    if dialect == "postgresql":
        o = func.timezone("UTC", occurred_at)
        years = cast(func.extract("year", o), Integer) - cast(func.extract("year", dob), Integer)
        before = func.to_char(o, "MM-DD") < func.to_char(dob, "MM-DD")
    else:
        years = cast(func.strftime("%Y", occurred_at), Integer) - cast(
            func.strftime("%Y", dob), Integer
        )
        before = func.strftime("%m-%d", occurred_at) < func.strftime("%m-%d", dob)
    return years - case((before, 1), else_=0)


def _age_band(age: int | None) -> str:
    """The band of an age (``None``: no date of birth)."""
    if age is None:
        return "unknown"
    for limit, band in ((18, "under 18"), (25, "18-24"), (35, "25-34"), (45, "35-44")):
        if age < limit:
            return band
    return "45-54" if age < 55 else "55-64" if age < 65 else "65+"


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def compute(session: Session, *, settings: Settings, now: datetime, start: date, end: date) -> dict:
    """The raw (unsuppressed) figures for the period."""
    p = period(settings, start, end)
    dialect = session.get_bind().dialect.name
    i = Incident
    in_period = and_(i.occurred_at >= p.lo, i.occurred_at < p.hi)

    # One pass over the period's incidents, grouped by person, gives every incident-level
    # count (a person's group sums its incidents; people are the non-null groups, repeaters
    # the non-null groups of two or more; all unidentified incidents form one null group).
    per_person = (
        select(
            i.person_id.label("person_id"),
            func.count().label("n"),
            func.sum(
                case((or_(i.first_contact_at.is_not(None), i.contact_due_at <= now), 1), else_=0)
            ).label("base"),
            func.sum(case((i.within_window.is_(True), 1), else_=0)).label("within"),
            func.sum(case((i.first_contact_at.is_not(None), 1), else_=0)).label("contacted"),
            func.sum(
                case((and_(i.fu_status == "awaiting_contact", i.contact_due_at < now), 1), else_=0)
            ).label("overdue"),
        )
        .where(in_period)
        .group_by(i.person_id)
        .subquery()
    )
    pp = per_person.c
    row = session.execute(
        select(
            func.sum(pp.n),
            func.count(pp.person_id),
            func.sum(case((and_(pp.person_id.is_not(None), pp.n >= 2), 1), else_=0)),
            func.sum(pp.base),
            func.sum(pp.within),
            func.sum(pp.contacted),
            func.sum(pp.overdue),
        )
    ).one()
    incidents, people, people_with_repeat, window_base, within, contacted, open_overdue = (
        int(v or 0) for v in row
    )

    hours = _hours(dialect, i.first_contact_at, i.occurred_at).label("h")
    contacted_q = select(hours).where(in_period, i.first_contact_at.is_not(None))
    median = None
    if contacted:
        if dialect == "postgresql":
            median = session.execute(
                select(func.percentile_cont(0.5).within_group(hours)).where(
                    in_period, i.first_contact_at.is_not(None)
                )
            ).scalar_one()
        else:
            middle = (
                contacted_q.order_by(hours).limit(2 - contacted % 2).offset((contacted - 1) // 2)
            )
            median = session.execute(select(func.avg(middle.subquery().c.h))).scalar_one()

    # Only the codes the report shows: the naloxone action and every referral. The period's
    # incidents are joined first (the occurred_at range), then their contacts and codes.
    codes = session.execute(
        select(ContactCode.kind, ContactCode.code, func.count())
        .select_from(i)
        .join(ContactAttempt, ContactAttempt.incident_id == i.id)
        .join(ContactCode, ContactCode.contact_id == ContactAttempt.id)
        .where(
            in_period,
            or_(
                ContactCode.kind == "referral",
                and_(ContactCode.kind == "action", ContactCode.code == "naloxone_supplied"),
            ),
        )
        .group_by(ContactCode.kind, ContactCode.code)
    ).all()
    naloxone = sum(n for kind, code, n in codes if kind == "action" and code == "naloxone_supplied")
    by_code = dict.fromkeys(REFERRALS, 0)
    for kind, code, n in codes:
        if kind == "referral":
            by_code[code] = by_code.get(code, 0) + n

    def add(cells: dict[str, int], key: Any, n: int) -> None:
        cells[str(key)] = cells.get(str(key), 0) + int(n)

    # Source and district in one pass, sex and age band in one pass (with the person).
    by_source: dict[str, int] = {}
    by_district: dict[str, int] = {}
    district = func.coalesce(i.postcode_district, literal("unknown"))
    for name, dist, n in session.execute(
        select(Agency.name, district, func.count())
        .select_from(i)
        .join(Agency, Agency.id == i.source_agency_id)
        .where(in_period)
        .group_by(Agency.name, district)
    ).all():
        add(by_source, name, n)
        add(by_district, dist, n)
    sex = func.coalesce(Person.sex, literal("unknown"))
    # Grouped by the age itself (computed once a row; null without a date of birth), banded here.
    age = _age(dialect, i.occurred_at, Person.date_of_birth)
    by_sex: dict[str, int] = dict.fromkeys(SEXES, 0)
    by_age_band: dict[str, int] = dict.fromkeys(AGE_BANDS, 0)
    for s, years, n in session.execute(
        select(sex, age, func.count())
        .select_from(i)
        .outerjoin(Person, Person.id == i.person_id)
        .where(in_period)
        .group_by(sex, age)
    ).all():
        add(by_sex, s, n)
        add(by_age_band, _age_band(None if years is None else int(years)), n)
    # Incidents naming each substance (an incident may list one twice: distinct pairs).
    pairs = (
        select(IncidentSubstance.incident_id, IncidentSubstance.substance)
        .join(i, i.id == IncidentSubstance.incident_id)
        .where(in_period)
        .distinct()
        .subquery()
    )
    by_substance = {
        str(k): int(n)
        for k, n in session.execute(
            select(pairs.c.substance, func.count()).group_by(pairs.c.substance)
        ).all()
    }

    return {
        "from": p.start.isoformat(),
        "to": p.end.isoformat(),
        "timezone": settings.timezone,
        "generated_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "incidents": incidents,
        "people": people,
        "people_with_repeat": int(people_with_repeat),
        "contacted_within_72h_pct": _round(100.0 * within / window_base) if window_base else None,
        "median_hours_to_first_contact": _round(median),
        "open_overdue": open_overdue,
        "naloxone_supplied": int(naloxone),
        "referrals": {"total": sum(by_code.values()), "by_code": by_code},
        "by_source": dict(sorted(by_source.items())),
        "by_sex": by_sex,
        "by_age_band": by_age_band,
        "by_substance": dict(sorted(by_substance.items())),
        "by_postcode_district": dict(sorted(by_district.items())),
        # The bases of the two rates (used by suppression, then dropped for analysts).
        "_window_base": window_base,
        "_within": within,
        "_contacted": contacted,
    }


def _small(n: Any) -> bool:
    return isinstance(n, int) and 1 <= n <= 4


def _mask(n: Any) -> Any:
    return SMALL if _small(n) else n


def _suppress_cells(cells: dict[str, int], total: Any) -> tuple[dict[str, Any], bool]:
    """Primary: cells 1..4 -> "<5". Secondary: when the total is shown, the hidden cells'
    sum is known (total minus the visible cells); if that pins them down - one hidden
    cell, or several that must all be 1 (sum = their number) or all 4 (sum = 4 x their
    number) - the smallest other non-zero cell is hidden too, as "suppressed".

    Returns the cells and whether they are safe next to a shown total; when no other cell
    can be hidden (False), the caller hides the total instead."""
    out: dict[str, Any] = {k: _mask(v) for k, v in cells.items()}
    hidden = [k for k, v in cells.items() if _small(v)]
    if not hidden or not isinstance(total, int) or _small(total):
        return out, True
    hidden_sum = sum(cells[k] for k in hidden)
    if len(hidden) == 1 or hidden_sum in (len(hidden), 4 * len(hidden)):
        others = sorted((v, k) for k, v in cells.items() if k not in hidden and v > 0)
        if not others:
            return out, False
        out[others[0][1]] = SECONDARY
    return out, True


def suppress(figures: dict) -> dict:
    """The analyst view. Every count from 1 to 4 becomes "<5"; in every breakdown whose
    cells add up to a shown total (the incident partitions, referrals by code) another
    cell is hidden when subtraction would pin the hidden ones down (see
    :func:`_suppress_cells`); the rates are "<5" when
    their base, their numerator or the rest of their base is 1 to 4 (a percentage of a
    known base would give the count back). Zero stays 0."""
    out = dict(figures)
    for key in ("incidents", "people", "people_with_repeat", "open_overdue", "naloxone_supplied"):
        out[key] = _mask(figures[key])
    total: Any = figures["incidents"]
    results = {key: _suppress_cells(figures[key], total) for key in PARTITIONS}
    if not all(safe for _, safe in results.values()):
        # A breakdown would give its small cells back from the total: hide the total.
        total = out["incidents"] = SECONDARY
        results = {key: _suppress_cells(figures[key], total) for key in PARTITIONS}
        for cells, _ in results.values():
            # ...and keep every other breakdown from adding it back up.
            if all(isinstance(v, int) for v in cells.values()):
                nonzero = sorted((v, k) for k, v in cells.items() if v > 0)
                if nonzero:
                    cells[nonzero[0][1]] = SECONDARY
    for key, (cells, _) in results.items():
        out[key] = cells
    out["by_substance"] = {k: _mask(v) for k, v in figures["by_substance"].items()}
    referrals = figures["referrals"]
    by_code, safe = _suppress_cells(referrals["by_code"], referrals["total"])
    referral_total = _mask(referrals["total"])
    if not safe:
        referral_total = SECONDARY
        by_code, _ = _suppress_cells(referrals["by_code"], SECONDARY)
    out["referrals"] = {"total": referral_total, "by_code": by_code}
    base, within = figures["_window_base"], figures["_within"]
    if any(_small(n) for n in (base, within, base - within)):
        out["contacted_within_72h_pct"] = SMALL
    if _small(figures["_contacted"]):
        out["median_hours_to_first_contact"] = SMALL
    out["suppressed"] = True
    return out


def summary(
    session: Session,
    *,
    principal: Principal,
    settings: Settings,
    now: datetime,
    start: date,
    end: date,
    export: bool = False,
) -> dict:
    if principal.role not in REPORT_ROLES:
        raise Forbidden("your role may not read reports")
    figures = compute(session, settings=settings, now=now, start=start, end=end)
    result = suppress(figures) if principal.role == "analyst" else dict(figures, suppressed=False)
    for key in ("_window_base", "_within", "_contacted"):
        result.pop(key, None)
    audit.record(
        session,
        actor=principal,
        action="export" if export else "read",
        at=now,
        subject_type="report",
        subject_id="summary",
        details={"from": start.isoformat(), "to": end.isoformat()},
    )
    return result


def csv_rows(report: dict) -> list[tuple[str, str, Any]]:
    """(figure, category, value) rows for the CSV form of the same report."""
    rows: list[tuple[str, str, Any]] = [
        ("from", "", report["from"]),
        ("to", "", report["to"]),
    ]
    for key in (
        "incidents",
        "people",
        "people_with_repeat",
        "contacted_within_72h_pct",
        "median_hours_to_first_contact",
        "open_overdue",
        "naloxone_supplied",
    ):
        rows.append((key, "", "" if report[key] is None else report[key]))
    rows.append(("referrals", "total", report["referrals"]["total"]))
    rows.extend(("referrals", code, n) for code, n in report["referrals"]["by_code"].items())
    for key in ("by_source", "by_sex", "by_age_band", "by_substance", "by_postcode_district"):
        rows.extend((key, category, n) for category, n in report[key].items())
    return rows
