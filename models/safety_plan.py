from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, id_column

RISK_LEVELS = ("red", "amber", "green")
RISK_FACTORS = (
    "repeat_overdose",
    "recent_prison_release",
    "no_fixed_address",
    "children_in_household",
    "domestic_abuse",
    "mental_health_crisis",
    "recently_left_treatment",
    "polysubstance_use",
    "injecting",
    "lives_alone",
)


class SafetyPlanVersion(Base):
    """One immutable version of a person's safety plan; the highest version is current."""

    __tablename__ = "safety_plan_versions"
    __table_args__ = (
        UniqueConstraint("person_id", "version"),
        Index("ix_safety_plan_versions_person_id_is_current", "person_id", "is_current"),
    )

    id: Mapped[str] = id_column()
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"))
    version: Mapped[int]
    is_current: Mapped[bool] = mapped_column(default=True)
    risk_level: Mapped[str] = mapped_column(String(10))
    risk_factors: Mapped[list[str]] = mapped_column(JSONType)
    lead_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    review_on: Mapped[date | None]
    notes: Mapped[str | None] = mapped_column(Text)
    created_by_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime]


class SafetyPlanAction(Base):
    __tablename__ = "safety_plan_actions"
    __table_args__ = (Index("ix_safety_plan_actions_done_due_on", "done", "due_on"),)

    id: Mapped[str] = id_column()
    plan_version_id: Mapped[str] = mapped_column(
        ForeignKey("safety_plan_versions.id", ondelete="CASCADE"), index=True
    )
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id"), index=True)
    position: Mapped[int]
    description: Mapped[str] = mapped_column(String(1000))
    owner_agency_id: Mapped[str | None] = mapped_column(ForeignKey("agencies.id"))
    due_on: Mapped[date | None]
    done: Mapped[bool] = mapped_column(default=False)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
