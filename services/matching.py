"""Person matching: the one place that decides whether an incident's person is someone we know.

Rules (README "Person matching"):

1. Same CHI number -> the same person (a merged person resolves to its survivor).
2. Else the same normalised family name + given name + date of birth -> the same person.
   Normalised: Unicode NFKD with accents dropped, case-folded, and spaces, hyphens,
   apostrophes and full stops removed, so "O'Neil-Smith" and "oneil smith" agree.
3. Anything weaker never links: a new person is created and each weak candidate is
   recorded as a PossibleDuplicate for a coordinator to merge or dismiss.
"""

from __future__ import annotations

import difflib
import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, bindparam, case, delete, or_, select, text, update
from sqlalchemy.orm import Session

from models.base import new_id, new_random_id
from models.person import Person, PossibleDuplicate
from services.db import execute_direct, insert_rows, plain_insert

_DROP = set(" \t\n\r-\u2010\u2011\u2012\u2013\u2014'\u2019\u2018`\u00b4.")
# Latin letters that Unicode does not decompose into a base letter plus an accent.
_FOLD = str.maketrans(
    {"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}
)
MAX_CANDIDATES = 20
CANDIDATE_LIMIT = 200
SIMILAR_NAME_RATIO = 0.75


def normalise_name(value: str | None) -> str | None:
    """Case-, accent- and punctuation-insensitive key of a name; None when nothing is left."""
    if value is None:
        return None
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = stripped.casefold()
    # casefold can produce new combining marks or characters (e.g. "ß" -> "ss"): normalise again.
    folded = "".join(
        c for c in unicodedata.normalize("NFKD", folded) if not unicodedata.combining(c)
    )
    key = "".join(c for c in folded.translate(_FOLD) if c not in _DROP and not c.isspace())
    return key or None


def name_key(family: str | None, given: str | None) -> str | None:
    fk, gk = normalise_name(family), normalise_name(given)
    if fk is None and gk is None:
        return None
    return f"{fk or ''}|{gk or ''}"


def swapped(dob: date) -> date | None:
    """The date with day and month exchanged, if that is a different real date."""
    if dob.day > 12 or dob.day == dob.month:
        return None
    try:
        return dob.replace(month=dob.day, day=dob.month)
    except ValueError:
        return None


@dataclass
class PersonDetails:
    chi: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    postcode: str | None = None
    phone: str | None = None

    @property
    def identifying(self) -> bool:
        return bool(self.chi or normalise_name(self.family_name) or normalise_name(self.given_name))


def live(session: Session, person_id: str) -> Person | None:
    """Follow merged_into_id to the surviving person."""
    person = session.get(Person, person_id)
    seen = 0
    while person is not None and person.merged_into_id is not None and seen < 50:
        person = session.get(Person, person.merged_into_id)
        seen += 1
    return person


_GAP_FIELDS = ("given_name", "family_name", "date_of_birth", "sex", "postcode", "phone")


def _gaps(current: Any, details: PersonDetails, now: datetime) -> dict[str, Any]:
    """The fields these details fill in a known person (blank or "unknown" ones only)."""
    changes = {
        field: getattr(details, field)
        for field in _GAP_FIELDS
        if getattr(details, field) is not None and getattr(current, field) in (None, "unknown")
    }
    if changes:
        family = changes.get("family_name", current.family_name)
        given = changes.get("given_name", current.given_name)
        changes["family_key"] = normalise_name(family)
        changes["name_key"] = name_key(family, given)
        changes["updated_at"] = now
    return changes


def _fill_gaps(person: Person, details: PersonDetails, now: datetime) -> None:
    for name, value in _gaps(person, details, now).items():
        setattr(person, name, value)


def _update(session: Session, person_id: str, changes: dict[str, Any]) -> None:
    if changes:
        session.connection().execute(
            update(Person.__table__).where(Person.__table__.c.id == person_id).values(changes)
        )


def _similar(a: str | None, b: str | None) -> bool:
    """Two name keys alike enough: difflib's ratio() at least ``SIMILAR_NAME_RATIO``.

    Checked cheapest first with difflib's upper bounds of ratio(), which decide most pairs
    (a new person's same-date-of-birth candidates are mostly unlike names): the length bound
    2 * min(len) / (len + len) before a matcher is even built, then quick_ratio()."""
    if not a or not b:
        return False
    if a == b:
        return True
    total = len(a) + len(b)
    if 2 * min(len(a), len(b)) < SIMILAR_NAME_RATIO * total:  # real_quick_ratio() too low
        return False
    matcher = difflib.SequenceMatcher(None, a, b)
    return matcher.quick_ratio() >= SIMILAR_NAME_RATIO and matcher.ratio() >= SIMILAR_NAME_RATIO


def _weak_reason(new: Any, other: Any) -> str | None:
    """Why ``other`` (a Person or a row with its columns) may be ``new``; None if it is not."""
    if other.id == new.id:
        return None
    if new.chi and other.chi and new.chi != other.chi:
        # Two different CHI numbers are two different people, however alike the names.
        return None
    same_name = new.name_key is not None and new.name_key == other.name_key
    if new.date_of_birth and other.date_of_birth:
        if new.date_of_birth == other.date_of_birth:
            new_f, new_g = (new.name_key or "|").split("|")
            oth_f, oth_g = (other.name_key or "|").split("|")
            if same_name:
                return "same_name_and_date_of_birth"
            if _similar(new_f, oth_f) or _similar(new_g, oth_g):
                return "same_date_of_birth_similar_name"
            return None
        if swapped(new.date_of_birth) == other.date_of_birth and new.family_key == other.family_key:
            return "date_of_birth_day_month_swapped"
        return None
    if same_name:
        return "same_name_date_of_birth_missing"
    return None


@dataclass(frozen=True)
class _Shape:
    """Which details a look-up has: the statements differ only by these, so each shape's
    statement is built once (with bound parameters) and reused."""

    chi: bool
    strong_name: bool
    dob: bool
    swapped_dob: bool
    family_key: bool
    name_key: bool


def _shape(
    chi: str | None, fkey: str | None, nkey: str | None, dob: date | None, *, strong_name: bool
) -> _Shape:
    return _Shape(
        chi=bool(chi),
        strong_name=strong_name,
        dob=dob is not None,
        swapped_dob=dob is not None and swapped(dob) is not None,
        family_key=fkey is not None,
        name_key=nkey is not None,
    )


def _parameters(chi, fkey, nkey, dob) -> dict[str, Any]:
    return {
        "chi": chi,
        "family_key": fkey,
        "name_key": nkey,
        "dob": dob,
        "swapped_dob": swapped(dob) if dob else None,
    }


def _candidate_conditions(shape: _Shape) -> list:
    """SQL for every person :func:`_weak_reason` could accept (it decides; this narrows)."""
    conditions = []
    if shape.dob:
        # Same birthday: names are compared in Python.
        conditions.append(Person.date_of_birth == bindparam("dob"))
        if shape.swapped_dob:
            # Found by the birthday (a handful of people), the family compared on those rows
            # only: with a plain "=", PostgreSQL ANDed the whole family name's index range
            # into the bitmap (4,600 entries for a common name: 0.4-0.6 ms of a 0.8 ms
            # look-up), and IS NOT DISTINCT FROM (SQLite: IS) cannot be searched by an index.
            same_family = (
                Person.family_key.is_not_distinct_from(bindparam("family_key"))
                if shape.family_key
                else Person.family_key.is_(None)
            )
            conditions.append(and_(Person.date_of_birth == bindparam("swapped_dob"), same_family))
    if shape.name_key:
        # The same name counts on its own only when a date of birth is missing.
        same_name = Person.name_key == bindparam("name_key")
        conditions.append(
            same_name if not shape.dob else and_(same_name, Person.date_of_birth.is_(None))
        )
    return conditions


def candidate_rows(person: Any, others: Iterable[Any], *, now: datetime) -> list[dict[str, Any]]:
    """The possible-duplicate rows (at most ``MAX_CANDIDATES``) recording ``others`` that
    are weak matches of the newly created ``person`` (anything with a person's columns as
    attributes)."""
    rows = []
    for other in others:
        reason = _weak_reason(person, other)
        if reason is None:
            continue
        rows.append(
            {
                "id": new_id(),
                "person_id": person.id,
                "candidate_id": other.id,
                "reason": reason,
                "created_at": now,
            }
        )
        if len(rows) >= MAX_CANDIDATES:
            break
    return rows


@functools.cache
def _identity_lock(keys: int):
    """``SELECT pg_advisory_xact_lock(...)`` for that many identity keys, built once.
    PostgreSQL evaluates the select list left to right, so the locks are taken in the order
    of the parameters."""
    locks = ", ".join(f"pg_advisory_xact_lock(hashtextextended(:k{i}, 7362))" for i in range(keys))
    return text(f"SELECT {locks}")


def _serialise_identity(session: Session, details: PersonDetails, nkey: str | None) -> None:
    """Two notifications about the same person at the same moment must find one person.

    Neither request sees the other's uncommitted person, so on PostgreSQL matching takes a
    transaction-scoped advisory lock per identity (CHI; name key + date of birth), in a fixed
    order so two keys can never deadlock. SQLite already serialises writers (BEGIN IMMEDIATE).
    """
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    keys = []
    if details.chi:
        keys.append(f"chi:{details.chi}")
    if nkey and details.date_of_birth:
        keys.append(f"name:{nkey}:{details.date_of_birth.isoformat()}")
    if not keys:
        return
    keys.sort()  # one statement, the locks in sorted order
    execute_direct(conn, _identity_lock(len(keys)), {f"k{i}": key for i, key in enumerate(keys)})


_MATCH_COLUMNS = (
    Person.id,
    Person.chi,
    Person.given_name,
    Person.family_name,
    Person.family_key,
    Person.name_key,
    Person.date_of_birth,
    Person.sex,
    Person.postcode,
    Person.phone,
    Person.merged_into_id,
)


@functools.cache
def _match_statement(shape: _Shape):
    """The one ranked look-up of :func:`match_or_create` for details of this shape (None
    when they give nothing to look up by): the person holding the CHI first, then strong
    name matches, then the weak candidates a new person is compared with."""
    rank = []
    if shape.chi:
        rank.append((Person.chi == bindparam("chi"), 0))
    if shape.strong_name:
        rank.append(
            (
                and_(
                    Person.name_key == bindparam("name_key"),
                    Person.date_of_birth == bindparam("dob"),
                    Person.merged_into_id.is_(None),
                ),
                1,
            )
        )
    conditions = [condition for condition, _ in rank]
    weak = _candidate_conditions(shape)
    if weak:
        conditions.append(and_(or_(*weak), Person.merged_into_id.is_(None)))
    if not conditions:
        return None
    order = [Person.created_at, Person.id]
    if rank:
        order.insert(0, case(*rank, else_=2))
    return select(*_MATCH_COLUMNS).where(or_(*conditions)).order_by(*order).limit(CANDIDATE_LIMIT)


@dataclass
class Match:
    """What :func:`match` decided: a known person (``created`` False), or a new one whose
    row and possible-duplicate rows are still to be written (:func:`write_new_person`, or
    intake's single statement on PostgreSQL)."""

    person_id: str
    created: bool
    new_person: dict[str, Any] | None = None
    duplicates: list[dict[str, Any]] = field(default_factory=list)


def match(session: Session, details: PersonDetails, *, now: datetime) -> Match:
    """Decide which person these details describe. Never merges on a guess.

    A known person is returned as it is (the gaps these details fill are updated here); a
    new one is only described: nothing of it is written yet, so the caller can write it in
    the same statement as the incident it comes with. The identity locks taken here are
    held until the transaction ends, so the new person is written under them.

    One query (plain rows, no ORM objects) reads everything the decision needs: the person
    holding the CHI, the strong name matches, and the weak candidates a new person is
    compared with - ranked in that order, so the limit never cuts off a match.
    """
    fkey = normalise_name(details.family_name)
    nkey = name_key(details.family_name, details.given_name)
    _serialise_identity(session, details, nkey)
    dob = details.date_of_birth
    strong_name = (
        fkey is not None and normalise_name(details.given_name) is not None and dob is not None
    )
    shape = _shape(details.chi, fkey, nkey, dob, strong_name=strong_name)
    statement = _match_statement(shape)
    conn = session.connection()
    rows = []
    if statement is not None:
        rows = execute_direct(conn, statement, _parameters(details.chi, fkey, nkey, dob))
    if details.chi:
        for row in rows:
            if row.chi == details.chi:
                if row.merged_into_id is not None:  # rare: follow the merge with the ORM
                    person = live(session, row.id)
                    if person is not None:
                        _fill_gaps(person, details, now)
                        return Match(person.id, False)
                _update(session, row.id, _gaps(row, details, now))
                return Match(row.id, False)
    if strong_name:
        for row in rows:
            if (
                row.name_key != nkey
                or row.date_of_birth != details.date_of_birth
                or row.merged_into_id is not None
            ):
                continue
            if details.chi and row.chi and row.chi != details.chi:
                continue  # a different CHI: a different person with the same name and birthday
            changes = _gaps(row, details, now)
            if details.chi and row.chi is None:
                changes["chi"] = details.chi  # the unique constraint guards a concurrent fill
                changes["updated_at"] = now
            _update(session, row.id, changes)
            return Match(row.id, False)
    values = {
        "id": new_random_id(),  # a person's: its creation time is not to be told
        "chi": details.chi,
        "given_name": details.given_name,
        "family_name": details.family_name,
        "family_key": fkey,
        "name_key": nkey,
        "date_of_birth": details.date_of_birth,
        "sex": details.sex,
        "postcode": details.postcode,
        "phone": details.phone,
        "created_at": now,
        "updated_at": now,
    }
    duplicates = candidate_rows(
        SimpleNamespace(**values), [row for row in rows if row.merged_into_id is None], now=now
    )
    return Match(values["id"], True, values, duplicates)


def write_new_person(session: Session, found: Match) -> None:
    """Insert the new person :func:`match` described, and its possible duplicates (Core
    statements: intake's hot path skips the ORM unit of work)."""
    if not found.created or found.new_person is None:
        raise ValueError("write_new_person: the match found a known person")
    execute_direct(session.connection(), plain_insert(Person.__table__), found.new_person)
    if found.duplicates:
        insert_rows(session, PossibleDuplicate.__table__, found.duplicates)


def match_or_create(session: Session, details: PersonDetails, *, now: datetime) -> tuple[str, bool]:
    """The id of the person these details describe, and whether it was created (written
    here): :func:`match`, then :func:`write_new_person` for a new person."""
    found = match(session, details, now=now)
    if found.created:
        write_new_person(session, found)
    return found.person_id, found.created


def forget_new_person(session: Session, person_id: str) -> None:
    """Delete a person created earlier in this transaction (and its possible duplicates),
    when the incident it was created for turns out to be a repeat."""
    conn = session.connection()
    table = PossibleDuplicate.__table__
    conn.execute(delete(table).where(table.c.person_id == person_id))
    conn.execute(delete(Person.__table__).where(Person.__table__.c.id == person_id))
