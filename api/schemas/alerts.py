"""Wire types for alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from api.schemas.common import ResponseModel

AlertKind = Literal[
    "contact_overdue", "contact_due_soon", "repeat_overdose", "action_overdue", "cluster"
]
AlertState = Literal["open", "acknowledged"]


class AlertOut(ResponseModel):
    id: str
    kind: AlertKind
    state: AlertState
    raised_at: datetime
    incident_id: str | None
    person_id: str | None
    details: dict[str, Any]
    acknowledged_at: datetime | None = None
