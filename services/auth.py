"""Logging in (with throttling) and turning a bearer credential into a principal."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.orm import Session

from models.user import LoginFailure, User
from services import accounts, audit, idempotency
from services.config import Settings
from services.db import execute_direct
from services.errors import TooManyRequests
from services.principal import Principal
from services.security import (
    API_KEY_PREFIX,
    hash_api_key,
    issue_token,
    read_token,
)


@dataclass
class LoginResult:
    token: str | None
    expires_in: int
    user: User | None


def _retry_after(
    session: Session, column, value: str, since: datetime, now: datetime, window: timedelta
) -> int:
    oldest = session.execute(
        select(func.min(LoginFailure.at)).where(column == value, LoginFailure.at > since)
    ).scalar_one()
    if oldest is None:
        return 1
    return max(1, math.ceil((oldest + window - now).total_seconds()))


@dataclass(frozen=True)
class LoginAttempt:
    """What a sign-in checks the password against: the user's stored hash (None for an
    unknown username), read by :func:`begin_login`."""

    username: str
    client_addr: str
    user_id: str | None
    password_hash: str | None


def begin_login(
    session: Session,
    *,
    settings: Settings,
    now: datetime,
    username: str,
    client_addr: str,
) -> LoginAttempt:
    """The first part of a sign-in: the throttle, and the stored hash to check the password
    against. Raises TooManyRequests while the username or the address is throttled.

    A sign-in is in three parts so that the password's hash (argon2: 0.15 s of two cores and
    64 MiB) is checked between two transactions, by :func:`services.security.verify_password`,
    and a sign-in holds no database session while it waits for its turn or hashes."""
    window = timedelta(minutes=settings.login_window_minutes)
    since = now - window
    # Failures older than the window no longer count; drop this username's (keeps the table small).
    session.execute(
        delete(LoginFailure).where(LoginFailure.username == username, LoginFailure.at <= since)
    )
    for column, value, limit in (
        (LoginFailure.username, username, settings.login_max_failures),
        (LoginFailure.client_addr, client_addr, settings.login_max_failures_per_address),
    ):
        failures = session.execute(
            select(func.count())
            .select_from(LoginFailure)
            .where(column == value, LoginFailure.at > since)
        ).scalar_one()
        if failures >= limit:
            retry = _retry_after(session, column, value, since, now, window)
            raise TooManyRequests(
                "too many failed sign-in attempts; try again later",
                headers={"Retry-After": str(retry)},
            )
    found = session.execute(
        select(User.id, User.password_hash).where(User.username == username)
    ).one_or_none()
    return LoginAttempt(
        username=username,
        client_addr=client_addr,
        user_id=found.id if found else None,
        password_hash=found.password_hash if found else None,
    )


def end_login(
    session: Session,
    *,
    settings: Settings,
    now: datetime,
    attempt: LoginAttempt,
    password_ok: bool,
) -> LoginResult:
    """The last part of a sign-in, given whether the password matched the attempt's hash.
    A failure is recorded (and audited) but not raised: the caller commits it, then answers
    401 - identically for unknown users and bad passwords. The user is read again, so that
    one deactivated, or whose password changed, since :func:`begin_login` is refused. The
    statement runs for an unknown username too (``id IS NULL``, no row), so that it costs
    the same round trip either way."""
    user = session.execute(select(User).where(User.id == attempt.user_id)).scalar_one_or_none()
    if (
        not password_ok
        or user is None
        or not user.active
        or user.password_hash != attempt.password_hash
    ):
        session.add(
            LoginFailure(username=attempt.username, client_addr=attempt.client_addr, at=now)
        )
        audit.record(
            session,
            actor=None,
            action="login_failed",
            at=now,
            subject_type="user",
            subject_id=attempt.user_id,
        )
        return LoginResult(token=None, expires_in=0, user=None)

    session.execute(delete(LoginFailure).where(LoginFailure.username == attempt.username))
    token = issue_token(
        settings.effective_secret_key,
        user_id=user.id,
        version=user.token_version,
        now=now,
        ttl=settings.token_ttl_seconds,
    )
    principal = principal_for_user(user)
    audit.record(
        session, actor=principal, action="login", at=now, subject_type="user", subject_id=user.id
    )
    return LoginResult(token=token, expires_in=settings.token_ttl_seconds, user=user)


def principal_for_user(user) -> Principal:
    """From a User, or any row with its id, role, agency_id, username and display_name."""
    return Principal(
        kind="user",
        id=user.id,
        role=user.role,
        agency_id=user.agency_id,
        username=user.username,
        display_name=user.display_name,
    )


_USER_BY_ID = select(
    User.id,
    User.role,
    User.agency_id,
    User.username,
    User.display_name,
    User.active,
    User.token_version,
).where(User.id == bindparam("id"))  # built once: it runs on every signed-in request


def resolve_bearer(
    session: Session, *, settings: Settings, now: datetime, credential: str
) -> Principal | None:
    """The principal behind a bearer credential, or None when it is not (or no longer) valid.

    Runs on every request, so it reads only the columns a principal needs (Core rows, no ORM
    objects); revocation, deactivation and token_version changes still take effect at once.
    """
    if credential.startswith(API_KEY_PREFIX):
        client = accounts.client_by_key(session, credential)
        if client is None:
            return None
        return _principal_for_client(client.id, client.name, client.agency_id)
    claims = read_token(settings.effective_secret_key, credential, now=now)
    if claims is None:
        return None
    rows = execute_direct(session.connection(), _USER_BY_ID, {"id": claims.user_id})
    user = rows[0] if rows else None
    if user is None or not user.active or user.token_version != claims.version:
        return None
    return principal_for_user(user)


def _principal_for_client(client_id: str, name: str, agency_id: str) -> Principal:
    return Principal(
        kind="client",
        id=client_id,
        role="partner",
        agency_id=agency_id,
        username=name,
        display_name=name,
    )


def resolve_bearer_claiming(
    session: Session,
    *,
    settings: Settings,
    now: datetime,
    credential: str,
    key: str,
    method: str,
    path: str,
    request_hash: str,
) -> tuple[Principal | None, idempotency.Look | None]:
    """:func:`resolve_bearer`, and for a partner's API key on PostgreSQL also the look at its
    Idempotency-Key (services.idempotency.look_as_client) in the same statement: one round
    trip fewer on a keyed notification. The look is None when it was not made (a user's
    token, another database, no live client); the key's claim then looks by itself."""
    if (
        not credential.startswith(API_KEY_PREFIX)
        or session.connection().dialect.name != "postgresql"
    ):
        return resolve_bearer(session, settings=settings, now=now, credential=credential), None
    found = idempotency.look_as_client(
        session,
        key_hash=hash_api_key(credential),
        key=key,
        method=method,
        path=path,
        request_hash=request_hash,
    )
    if found is None:
        return None, None
    (client_id, name, agency_id), looked = found
    return _principal_for_client(client_id, name, agency_id), looked
