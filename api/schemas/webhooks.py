"""Wire types for webhooks."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, StrictStr

from api.schemas.alerts import AlertKind
from api.schemas.common import RequestModel, ResponseModel


class WebhookCreate(RequestModel):
    url: StrictStr = Field(
        min_length=1, max_length=2000, description="http or https URL of the receiver"
    )
    kinds: list[AlertKind] | None = Field(
        default=None, min_length=1, description="alert kinds to deliver; every kind when omitted"
    )
    agency_id: StrictStr | None = Field(default=None, max_length=36)


class WebhookOut(ResponseModel):
    id: str
    url: str
    kinds: list[str]
    agency_id: str | None
    active: bool
    created_at: datetime


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_<base64>: shown once; verify webhook-signature with it")
