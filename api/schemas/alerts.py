"""Wire types for alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from api.schemas.common import ResponseModel
from models.alert import ALERT_KINDS, ALERT_STATES

AlertKind = Literal[ALERT_KINDS]
AlertState = Literal[ALERT_STATES]


class AlertOut(ResponseModel):
    id: str
    kind: AlertKind
    state: AlertState
    raised_at: datetime
    incident_id: str | None
    person_id: str | None
    details: dict[str, Any]
    acknowledged_at: datetime | None = None
