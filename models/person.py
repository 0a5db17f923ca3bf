from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, id_column

SEXES = ("male", "female", "other", "unknown")


class Person(Base):
    """Someone who overdosed. A merged duplicate keeps its row (for the audit trail)
    with ``merged_into_id`` set and is invisible everywhere."""

    __tablename__ = "persons"
    __table_args__ = (
        Index("ix_persons_name_key_date_of_birth", "name_key", "date_of_birth"),
        Index("ix_persons_family_key", "family_key"),
        # Weak matching looks up people born on the same (or day/month-swapped) date.
        Index("ix_persons_date_of_birth", "date_of_birth"),
        # Search by name is "name_key contains each word" (LIKE '%word%'): on PostgreSQL a
        # trigram GIN index answers it without reading every person (pg_trgm, created in the
        # migration). On SQLite the same name is a plain index (alembic check compares names;
        # SQLite search keeps its scan).
        Index(
            "ix_persons_name_key_trgm",
            "name_key",
            postgresql_using="gin",
            postgresql_ops={"name_key": "gin_trgm_ops"},
        ),
    )

    id: Mapped[str] = id_column(time_ordered=False)  # models.base.new_random_id says why
    chi: Mapped[str | None] = mapped_column(String(10), unique=True)
    given_name: Mapped[str | None] = mapped_column(String(100))
    family_name: Mapped[str | None] = mapped_column(String(100))
    # Normalised (case, spacing and accents folded) keys used for matching and search.
    family_key: Mapped[str | None] = mapped_column(String(100))
    name_key: Mapped[str | None] = mapped_column(String(201))
    date_of_birth: Mapped[date | None]
    sex: Mapped[str | None] = mapped_column(String(10))
    postcode: Mapped[str | None] = mapped_column(String(8))
    phone: Mapped[str | None] = mapped_column(String(30))
    merged_into_id: Mapped[str | None] = mapped_column(ForeignKey("persons.id"), index=True)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PossibleDuplicate(Base):
    """A weak match a coordinator must confirm (merge) or dismiss. Never merged automatically."""

    __tablename__ = "possible_duplicates"
    __table_args__ = (UniqueConstraint("person_id", "candidate_id"),)

    id: Mapped[str] = id_column()
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    candidate_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    reason: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime]
    dismissed_at: Mapped[datetime | None]
