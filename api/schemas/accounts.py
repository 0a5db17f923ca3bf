from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, StrictBool, StrictStr

from api.schemas.common import RequestModel, ResponseModel
from models.agency import AGENCY_KINDS
from models.user import USER_ROLES

Role = Literal[USER_ROLES]


class TokenOut(ResponseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MeOut(ResponseModel):
    id: str
    username: str
    role: str
    agency_id: str | None
    display_name: str | None
    kind: Literal["user", "client"] = "user"


class AgencyCreate(RequestModel):
    name: StrictStr = Field(min_length=1, max_length=200)
    kind: Literal[AGENCY_KINDS]


class AgencyOut(ResponseModel):
    id: str
    name: str
    kind: str
    created_at: datetime


class UserCreate(RequestModel):
    username: StrictStr = Field(min_length=1, max_length=150, pattern=r"^[A-Za-z0-9._@+-]+$")
    password: StrictStr = Field(min_length=10, max_length=1000)
    role: Role
    agency_id: StrictStr | None = None
    display_name: StrictStr | None = Field(default=None, max_length=200)


class UserUpdate(RequestModel):
    password: StrictStr | None = Field(default=None, min_length=10, max_length=1000)
    role: Role | None = None
    agency_id: StrictStr | None = None
    display_name: StrictStr | None = Field(default=None, min_length=1, max_length=200)
    active: StrictBool | None = None


class UserOut(ResponseModel):
    id: str
    username: str
    role: str
    agency_id: str | None
    display_name: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class ClientCreate(RequestModel):
    name: StrictStr = Field(min_length=1, max_length=200)
    agency_id: StrictStr


class ClientOut(ResponseModel):
    id: str
    name: str
    agency_id: str
    key_prefix: str
    created_at: datetime
    revoked_at: datetime | None


class ClientCreated(ClientOut):
    api_key: str


class AuditOut(ResponseModel):
    seq: int
    id: str
    at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    subject_type: str | None
    subject_id: str | None
    request_id: str | None
    client_addr: str | None
    details: dict | None
    # The entry's link in the hash chain (null only if that link was removed: `nfod audit
    # verify` reports it).
    hash: str | None
