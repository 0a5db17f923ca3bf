"""Wire types for reports. Counts are integers, or the string "<5" for analysts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import ResponseModel

Count = int | Literal["<5", "suppressed"]
Rate = float | Literal["<5"] | None


class Referrals(ResponseModel):
    total: Count
    by_code: dict[str, Count]


class SummaryOut(ResponseModel):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    timezone: str
    generated_at: str
    incidents: Count
    people: Count
    people_with_repeat: Count
    contacted_within_72h_pct: Rate = Field(
        description="100 * incidents contacted within 72 h / incidents contacted or whose "
        "window has ended; null when there are none"
    )
    median_hours_to_first_contact: Rate
    open_overdue: Count
    naloxone_supplied: Count
    referrals: Referrals
    by_source: dict[str, Count]
    by_sex: dict[str, Count]
    by_age_band: dict[str, Count]
    by_substance: dict[str, Count]
    by_postcode_district: dict[str, Count]
    suppressed: bool = Field(
        description='true when small numbers were suppressed: counts 1-4 are "<5", and a '
        'second cell of a breakdown is "suppressed" when it would reveal one by subtraction'
    )
