"""Agencies, users and partner API clients (administration)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.agency import AGENCY_KINDS, Agency
from models.api_client import ApiClient
from models.user import USER_ROLES, User
from services import audit
from services.db import execute_direct
from services.errors import Conflict, Invalid, NotFound
from services.pagination import Page, keyset_page
from services.principal import Principal
from services.security import hash_api_key, hash_password, new_api_key

MIN_PASSWORD_LENGTH = 10


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters",
            loc=["body", "password"],
        )


def _flush_unique(session: Session, what: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"{what} already exists") from None


# Agencies ---------------------------------------------------------------------------


def create_agency(
    session: Session, *, actor: Principal, now: datetime, name: str, kind: str
) -> Agency:
    if kind not in AGENCY_KINDS:
        raise Invalid(f"kind must be one of {', '.join(AGENCY_KINDS)}", loc=["body", "kind"])
    name = name.strip()
    if not name:
        raise Invalid("name must not be empty", loc=["body", "name"])
    if session.execute(select(Agency.id).where(Agency.name == name)).first():
        raise Conflict("an agency with that name already exists")
    agency = Agency(name=name, kind=kind, created_at=now)
    session.add(agency)
    _flush_unique(session, "an agency with that name")
    audit.record(
        session, actor=actor, action="create", at=now, subject_type="agency", subject_id=agency.id
    )
    return agency


def list_agencies(session: Session, *, cursor: str | None, limit: int) -> Page[Agency]:
    return keyset_page(
        session,
        select(Agency),
        keys=[Agency.name, Agency.id],
        cursor=cursor,
        limit=limit,
        key_of=lambda a: (a.name, a.id),
    )


def get_agency(session: Session, agency_id: str) -> Agency:
    agency = session.get(Agency, agency_id)
    if agency is None:
        raise NotFound("no such agency")
    return agency


def _existing_agency(session: Session, agency_id: str | None, loc: list) -> str | None:
    if agency_id is None:
        return None
    if session.get(Agency, agency_id) is None:
        raise Invalid("no such agency", loc=loc)
    return agency_id


# Users ------------------------------------------------------------------------------


def create_user(
    session: Session,
    *,
    actor: Principal | None,
    now: datetime,
    username: str,
    password: str,
    role: str,
    agency_id: str | None,
    display_name: str | None,
) -> User:
    if role not in USER_ROLES:
        raise Invalid(f"role must be one of {', '.join(USER_ROLES)}", loc=["body", "role"])
    username = username.strip()
    if not username:
        raise Invalid("username must not be empty", loc=["body", "username"])
    _check_password(password)
    agency_id = _existing_agency(session, agency_id, ["body", "agency_id"])
    if role == "outreach" and agency_id is None:
        raise Invalid("an outreach worker must belong to an agency", loc=["body", "agency_id"])
    if session.execute(select(User.id).where(User.username == username)).first():
        raise Conflict("a user with that username already exists")
    user = User(
        username=username,
        password_hash=hash_password(password),
        role=role,
        agency_id=agency_id,
        display_name=(display_name or username).strip(),
        active=True,
        token_version=0,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    _flush_unique(session, "a user with that username")
    audit.record(
        session,
        actor=actor,
        action="create",
        at=now,
        subject_type="user",
        subject_id=user.id,
        details={"role": role},
    )
    return user


def list_users(session: Session, *, cursor: str | None, limit: int) -> Page[User]:
    return keyset_page(
        session,
        select(User),
        keys=[User.username, User.id],
        cursor=cursor,
        limit=limit,
        key_of=lambda u: (u.username, u.id),
    )


def get_user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("no such user")
    return user


def update_user(
    session: Session, *, actor: Principal, now: datetime, user_id: str, changes: dict
) -> User:
    user = get_user(session, user_id)
    changed: list[str] = []
    if "role" in changes:
        if changes["role"] not in USER_ROLES:
            raise Invalid(f"role must be one of {', '.join(USER_ROLES)}", loc=["body", "role"])
        user.role = changes["role"]
        user.token_version += 1
        changed.append("role")
    if "agency_id" in changes:
        user.agency_id = _existing_agency(session, changes["agency_id"], ["body", "agency_id"])
        user.token_version += 1
        changed.append("agency_id")
    if user.role == "outreach" and user.agency_id is None:
        raise Invalid("an outreach worker must belong to an agency", loc=["body", "agency_id"])
    if "display_name" in changes and changes["display_name"] is not None:
        user.display_name = changes["display_name"].strip()
        changed.append("display_name")
    if "password" in changes and changes["password"] is not None:
        _check_password(changes["password"])
        user.password_hash = hash_password(changes["password"])
        user.token_version += 1
        changed.append("password")
    if "active" in changes and changes["active"] is not None and changes["active"] != user.active:
        if actor.kind == "user" and actor.id == user.id and not changes["active"]:
            raise Conflict("you cannot deactivate yourself")
        user.active = bool(changes["active"])
        user.token_version += 1  # tokens already issued die on the next request
        changed.append("active")
    user.updated_at = now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="update",
        at=now,
        subject_type="user",
        subject_id=user.id,
        details={"fields": changed},
    )
    return user


# API clients ------------------------------------------------------------------------


@dataclass
class IssuedClient:
    client: ApiClient
    api_key: str


def create_client(
    session: Session, *, actor: Principal | None, now: datetime, name: str, agency_id: str
) -> IssuedClient:
    name = name.strip()
    if not name:
        raise Invalid("name must not be empty", loc=["body", "name"])
    _existing_agency(session, agency_id, ["body", "agency_id"])
    key = new_api_key()
    client = ApiClient(
        name=name,
        agency_id=agency_id,
        key_hash=hash_api_key(key),
        key_prefix=key[:12],
        created_at=now,
    )
    session.add(client)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="create",
        at=now,
        subject_type="api_client",
        subject_id=client.id,
    )
    return IssuedClient(client=client, api_key=key)


def list_clients(session: Session, *, cursor: str | None, limit: int) -> Page[ApiClient]:
    return keyset_page(
        session,
        select(ApiClient),
        keys=[ApiClient.created_at, ApiClient.id],
        cursor=cursor,
        limit=limit,
        key_of=lambda c: (c.created_at, c.id),
    )


def revoke_client(
    session: Session, *, actor: Principal, now: datetime, client_id: str
) -> ApiClient:
    client = session.get(ApiClient, client_id)
    if client is None:
        raise NotFound("no such API client")
    if client.revoked_at is None:
        client.revoked_at = now
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="delete",
            at=now,
            subject_type="api_client",
            subject_id=client.id,
        )
    return client


_CLIENT_BY_KEY = select(ApiClient.id, ApiClient.name, ApiClient.agency_id).where(
    ApiClient.key_hash == bindparam("key_hash"), ApiClient.revoked_at.is_(None)
)  # built once: it runs on every partner request (see services.db.plain_insert)


def client_by_key(session: Session, key: str):
    """The live API client holding this key: a row of (id, name, agency_id), or None."""
    rows = execute_direct(session.connection(), _CLIENT_BY_KEY, {"key_hash": hash_api_key(key)})
    return rows[0] if rows else None  # key_hash is unique


def ensure_bootstrap_admin(
    session: Session, *, now: datetime, username: str | None, password: str | None
) -> User | None:
    """Create the first administrator when the database has no users yet."""
    if not username or not password:
        return None
    if session.execute(select(User.id).limit(1)).first():
        return None
    return create_user(
        session,
        actor=None,
        now=now,
        username=username,
        password=password,
        role="admin",
        agency_id=None,
        display_name="Administrator",
    )
