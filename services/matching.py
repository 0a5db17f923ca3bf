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
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import insert, or_, select, text
from sqlalchemy.orm import Session

from models.base import new_id
from models.person import Person, PossibleDuplicate

_DROP = set(" \t\n\r-\u2010\u2011\u2012\u2013\u2014'\u2019\u2018`\u00b4.")
# Latin letters that Unicode does not decompose into a base letter plus an accent.
_FOLD = str.maketrans(
    {"ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "æ": "ae", "œ": "oe", "þ": "th", "ð": "d"}
)
MAX_CANDIDATES = 20
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


def _fill_gaps(person: Person, details: PersonDetails, now: datetime) -> None:
    changed = False
    for field in ("given_name", "family_name", "date_of_birth", "sex", "postcode", "phone"):
        value = getattr(details, field)
        if value is not None and getattr(person, field) in (None, "unknown"):
            setattr(person, field, value)
            changed = True
    if changed:
        person.family_key = normalise_name(person.family_name)
        person.name_key = name_key(person.family_name, person.given_name)
        person.updated_at = now


def _similar(a: str | None, b: str | None) -> bool:
    if not a or not b:
        return False
    return a == b or difflib.SequenceMatcher(None, a, b).ratio() >= SIMILAR_NAME_RATIO


def _weak_reason(new: Person, other: Person) -> str | None:
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


def record_candidates(session: Session, person: Person, *, now: datetime) -> int:
    """Record weak matches of a newly created person as possible duplicates."""
    conditions = []
    if person.date_of_birth:
        conditions.append(Person.date_of_birth == person.date_of_birth)
        alt = swapped(person.date_of_birth)
        if alt:
            conditions.append(Person.date_of_birth == alt)
    if person.name_key:
        conditions.append(Person.name_key == person.name_key)
    if not conditions:
        return 0
    others = session.execute(
        select(Person)
        .where(or_(*conditions), Person.merged_into_id.is_(None), Person.id != person.id)
        .order_by(Person.created_at, Person.id)
        .limit(200)
    ).scalars()
    count = 0
    for other in others:
        reason = _weak_reason(person, other)
        if reason is None:
            continue
        session.add(
            PossibleDuplicate(
                person_id=person.id, candidate_id=other.id, reason=reason, created_at=now
            )
        )
        count += 1
        if count >= MAX_CANDIDATES:
            break
    return count


def _serialise_identity(session: Session, details: PersonDetails, nkey: str | None) -> None:
    """Two notifications about the same person at the same moment must find one person.

    Neither request sees the other's uncommitted person, so on PostgreSQL matching takes a
    transaction-scoped advisory lock per identity (CHI; name key + date of birth), in a fixed
    order so two keys can never deadlock. SQLite already serialises writers (BEGIN IMMEDIATE).
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = []
    if details.chi:
        keys.append(f"chi:{details.chi}")
    if nkey and details.date_of_birth:
        keys.append(f"name:{nkey}:{details.date_of_birth.isoformat()}")
    if not keys:
        return
    # One statement; PostgreSQL evaluates the select list left to right, so the locks are
    # taken in sorted order.
    keys.sort()
    locks = ", ".join(
        f"pg_advisory_xact_lock(hashtextextended(:k{i}, 7362))" for i in range(len(keys))
    )
    session.execute(text(f"SELECT {locks}"), {f"k{i}": key for i, key in enumerate(keys)})


def match_or_create(
    session: Session, details: PersonDetails, *, now: datetime
) -> tuple[Person, bool]:
    """The person these details describe: (person, created). Never merges on a guess."""
    fkey = normalise_name(details.family_name)
    nkey = name_key(details.family_name, details.given_name)
    _serialise_identity(session, details, nkey)
    if details.chi:
        found = session.execute(
            select(Person).where(Person.chi == details.chi)
        ).scalar_one_or_none()
        if found is not None:
            person = live(session, found.id) or found
            _fill_gaps(person, details, now)
            return person, False
    strong_name = (
        fkey is not None
        and normalise_name(details.given_name) is not None
        and details.date_of_birth is not None
    )
    if strong_name:
        stmt = (
            select(Person)
            .where(
                Person.name_key == nkey,
                Person.date_of_birth == details.date_of_birth,
                Person.merged_into_id.is_(None),
            )
            .order_by(Person.created_at, Person.id)
        )
        for candidate in session.execute(stmt).scalars():
            if details.chi and candidate.chi and candidate.chi != details.chi:
                continue  # a different CHI: a different person with the same name and birthday
            if details.chi and candidate.chi is None:
                candidate.chi = details.chi  # the unique constraint guards a concurrent fill
            _fill_gaps(candidate, details, now)
            return candidate, False
    values = {
        "id": new_id(),
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
    # A Core INSERT (intake's hot path skips the ORM unit of work); the Person built from the
    # same values is not added to the session.
    session.connection().execute(insert(Person.__table__), values)
    person = Person(**values)
    record_candidates(session, person, now=now)
    return person, True
