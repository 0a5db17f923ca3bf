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
  ``unknown`` when not identified), ``by_age_band`` (age at the overdose, on its UTC date:
  :func:`age_at`; both read from the incident's copies of its person's, migration 0008),
  ``by_substance`` (incidents naming each substance; an incident may name several),
  ``by_postcode_district`` (``unknown`` when no postcode).

Suppression (analysts): see :func:`suppress`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.orm import Session

from models.agency import Agency
from models.contact import REFERRALS, ContactCode
from models.incident import Incident, IncidentSubstance
from models.person import SEXES
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


# PostgreSQL: date_part, not EXTRACT. Since PostgreSQL 14 EXTRACT returns numeric, and
# numeric arithmetic, comparisons and sorts over a year's 100 k incidents cost about a fifth
# of the summary's time (BENCHMARKS.md, fifteenth round); date_part's double precision is
# exact for these values (whole years; seconds of an interval to the microsecond).
def _hours(dialect: str, later, earlier):
    if dialect == "postgresql":
        return func.date_part("epoch", later - earlier) / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


def age_on(date_of_birth: date | None, day: date) -> int | None:
    """Whole years from a date of birth to ``day`` (a birthday on the day counts; 29 February
    birthdays count from 1 March in other years); None without a date of birth."""
    if date_of_birth is None:
        return None
    before = (day.month, day.day) < (date_of_birth.month, date_of_birth.day)
    return day.year - date_of_birth.year - before


def age_at(occurred_at: datetime, dob: date | None) -> int | None:
    """Age at an overdose: :func:`age_on` the UTC date of ``occurred_at``. The same rule as
    the database's copy on each incident (migration 0008), which the report bands."""
    return age_on(dob, occurred_at.astimezone(UTC).date())


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

    if dialect == "postgresql":
        # The sorts, hashes and the materialised period below fit in memory at national scale
        # (a year: ~170 k incidents); for this transaction only.
        session.execute(text("SET LOCAL work_mem = '64MB'"))
        # JIT compiling costs more than it saves on these few-hundred-millisecond statements.
        session.execute(text("SET LOCAL jit = off"))
    # The period's incidents are read once (materialised) and every incident-level figure
    # comes from that one set, in one statement: the counts, source x district, sex x age
    # and (PostgreSQL) the median. A branch tag says which figure a row belongs to.
    period_incidents = select(
        i.person_id,
        i.source_agency_id,
        i.postcode_district,
        i.occurred_at,
        i.first_contact_at,
        i.contact_due_at,
        i.within_window,
        i.fu_status,
        i.person_sex,
        i.person_age,
    ).where(in_period)
    period_cte = period_incidents.cte("period_incidents")
    if dialect == "postgresql":
        period_cte = period_cte.prefix_with("MATERIALIZED")  # (its default when used twice)
    pi = period_cte.c
    # Grouped by person: a person's group sums its incidents; people are the non-null
    # groups, repeaters the non-null groups of two or more; all unidentified incidents form
    # one null group.
    per_person = (
        select(
            pi.person_id.label("person_id"),
            func.count().label("n"),
            func.sum(
                case((or_(pi.first_contact_at.is_not(None), pi.contact_due_at <= now), 1), else_=0)
            ).label("base"),
            func.sum(case((pi.within_window.is_(True), 1), else_=0)).label("within"),
            func.sum(case((pi.first_contact_at.is_not(None), 1), else_=0)).label("contacted"),
            func.sum(
                case(
                    (and_(pi.fu_status == "awaiting_contact", pi.contact_due_at < now), 1), else_=0
                )
            ).label("overdue"),
        )
        .group_by(pi.person_id)
        .subquery()
    )
    pp = per_person.c
    none_text, none_int, none_float = (
        cast(null(), String),
        cast(null(), BigInteger),
        cast(null(), Float),
    )

    def branch(tag: str, k1, k2, age, counts, median=none_float):
        counts = list(counts) + [none_int] * (7 - len(counts))
        return [literal(tag).label("tag"), k1, k2, age, *counts, median]

    totals = select(
        *branch(
            "totals",
            none_text,
            none_text,
            none_int,
            [
                cast(func.sum(pp.n), BigInteger),
                cast(func.count(pp.person_id), BigInteger),
                cast(
                    func.sum(case((and_(pp.person_id.is_not(None), pp.n >= 2), 1), else_=0)),
                    BigInteger,
                ),
                cast(func.sum(pp.base), BigInteger),
                cast(func.sum(pp.within), BigInteger),
                cast(func.sum(pp.contacted), BigInteger),
                cast(func.sum(pp.overdue), BigInteger),
            ],
        )
    )
    district = func.coalesce(pi.postcode_district, literal("unknown"))
    source_district = (
        select(
            *branch(
                "source",
                cast(Agency.name, String),
                cast(district, String),
                none_int,
                [cast(func.count(), BigInteger)],
            )
        )
        .select_from(period_cte)
        .join(Agency, Agency.id == pi.source_agency_id)
        .group_by(Agency.name, district)
    )
    # Sex and age at the overdose are the incident's own copies of its person's (kept by
    # the database, migration 0008): no join of the period's incidents to every person.
    # Grouped by the age itself (null without a date of birth), banded in Python.
    sex = func.coalesce(pi.person_sex, literal("unknown"))
    sex_age = (
        select(
            *branch(
                "sex",
                cast(sex, String),
                none_text,
                cast(pi.person_age, BigInteger),
                [cast(func.count(), BigInteger)],
            )
        )
        .select_from(period_cte)
        .group_by(sex, pi.person_age)
    )
    hours = _hours(dialect, pi.first_contact_at, pi.occurred_at)
    branches = [totals, source_district, sex_age]
    if dialect == "postgresql":
        branches.append(
            select(
                *branch(
                    "median",
                    none_text,
                    none_text,
                    none_int,
                    [],
                    cast(func.percentile_cont(0.5).within_group(hours), Float),
                )
            ).where(pi.first_contact_at.is_not(None))
        )
    rows = session.execute(union_all(*branches)).all()
    # Only the codes the report shows: the naloxone action and every referral. Each code row
    # carries its incident's occurred_at (kept by triggers, migration 0002): one range scan.
    cc = ContactCode
    codes = session.execute(
        select(cc.kind, cc.code, func.count())
        .where(
            cc.occurred_at >= p.lo,
            cc.occurred_at < p.hi,
            or_(cc.kind == "referral", and_(cc.kind == "action", cc.code == "naloxone_supplied")),
        )
        .group_by(cc.kind, cc.code)
    ).all()
    naloxone = sum(n for kind, code, n in codes if kind == "action" and code == "naloxone_supplied")
    by_code = dict.fromkeys(REFERRALS, 0)
    for kind, code, n in codes:
        if kind == "referral":
            by_code[code] = by_code.get(code, 0) + n

    def add(cells: dict[str, int], key: Any, n: int) -> None:
        cells[str(key)] = cells.get(str(key), 0) + int(n)

    counts = [0] * 7
    median = None
    by_source: dict[str, int] = {}
    by_district: dict[str, int] = {}
    by_sex: dict[str, int] = dict.fromkeys(SEXES, 0)
    by_age_band: dict[str, int] = dict.fromkeys(AGE_BANDS, 0)
    for tag, k1, k2, years, n, *rest in rows:
        if tag == "totals":
            counts = [int(v or 0) for v in (n, *rest[:6])]
        elif tag == "source":
            add(by_source, k1, n)
            add(by_district, k2, n)
        elif tag == "sex":
            add(by_sex, k1, n)
            add(by_age_band, _age_band(None if years is None else int(years)), n)
        elif tag == "median":
            median = rest[-1]
    incidents, people, people_with_repeat, window_base, within, contacted, open_overdue = counts
    if contacted and dialect != "postgresql":
        # No percentile_cont: the middle one or two of the ordered hours, averaged.
        hours = _hours(dialect, i.first_contact_at, i.occurred_at).label("h")
        middle = (
            select(hours)
            .where(in_period, i.first_contact_at.is_not(None))
            .order_by(hours)
            .limit(2 - contacted % 2)
            .offset((contacted - 1) // 2)
        )
        median = session.execute(select(func.avg(middle.subquery().c.h))).scalar_one()

    # Incidents naming each substance (an incident may list one twice: distinct pairs). Each
    # substance row carries its incident's occurred_at (triggers, migration 0002), so an
    # incident's rows are neighbours in the (occurred_at, incident_id, substance) index this
    # reads: distinct on all three is distinct on the pair, and needs no hash table of the
    # period's pairs (PostgreSQL drops the repeats as the ordered rows stream past).
    pairs = (
        select(
            IncidentSubstance.occurred_at,
            IncidentSubstance.incident_id,
            IncidentSubstance.substance,
        )
        .where(IncidentSubstance.occurred_at >= p.lo, IncidentSubstance.occurred_at < p.hi)
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
