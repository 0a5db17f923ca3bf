"""Declarative base, naming convention and column types shared by every model."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, MetaData, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores ``timestamptz``; SQLite stores text without an offset, so values
    are normalised to UTC on the way in and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSON(none_as_null=True), "postgresql")


# The RFC 4122 variant: the high two bits of the 17th hex digit are 10 (8, 9, a or b).
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_random_id() -> str:
    """A random (version 4) UUID in its canonical text form, made from 16 random bytes
    directly: the same 122 random bits as ``str(uuid.uuid4())``, at a fifth of its cost.

    For a person: a person's id is shown to every partner whose incident names them, and a
    time-ordered id (:func:`new_id`) would tell each of them when the person's first
    overdose was recorded, by whichever agency."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


def time_ordered_id(ms: int, rand: bytes) -> str:
    """The version 7 UUID (RFC 9562) of Unix time ``ms`` (milliseconds, 48 bits) and 10
    random bytes (74 of their bits are used), in canonical text form."""
    t = f"{ms:012x}"
    r = rand.hex()
    return f"{t[:8]}-{t[8:12]}-7{r[:3]}-{_VARIANT[r[3]]}{r[4:7]}-{r[7:19]}"


def new_id() -> str:
    """A new row's id: a version 7 UUID, its creation time in milliseconds and then 74 random
    bits, so that ids sort by creation time, as text too.

    A random id puts each new row's entry in its primary key (and in every index on a column
    that refers to it) on a random page: with a cold cache a read from disk, after a
    checkpoint a whole page written to the WAL, and pages split half-full. A time-ordered one
    puts it at the right-hand edge, a page already in memory (BENCHMARKS.md, seventeenth and
    nineteenth rounds). The id tells its row's creation time to whoever sees it: so it is
    used for rows whose creation time those who see the id see anyway (an incident, a
    contact attempt, an audit entry, a key's stored answer), never for a person's
    (:func:`new_random_id`)."""
    return time_ordered_id(time.time_ns() // 1_000_000, os.urandom(10))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


def id_column(*, time_ordered: bool = True) -> Mapped[str]:
    """A 36-character UUID primary key: time-ordered (:func:`new_id`) unless the row's
    creation time must not be told by its id (:func:`new_random_id`)."""
    return mapped_column(
        String(36), primary_key=True, default=new_id if time_ordered else new_random_id
    )
