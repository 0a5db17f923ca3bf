"""Webhooks: registration (with an SSRF guard), the outbox, and the delivery pass.

Delivery is at-least-once from the ``webhook_deliveries`` outbox, which the sweep writes
in the same transaction as the alerts. Messages are signed with the Standard Webhooks
scheme: ``webhook-id`` (the delivery id, the same on every retry), ``webhook-timestamp``
(unix seconds of the attempt) and ``webhook-signature: v1,<base64 HMAC-SHA256 over
"{id}.{timestamp}.{body}">`` keyed with the bytes after ``whsec_`` (base64-decoded).

A delivery pass is three steps so that no database transaction is held open while a
receiver is slow: :func:`claim_due` (lease rows; the caller commits), :func:`send`
(HTTP only, receivers in parallel, each bounded by the timeout) and
:func:`record_results` (the caller commits).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from models.agency import Agency
from models.alert import ALERT_KINDS
from models.base import new_id
from models.webhook import Webhook, WebhookDelivery
from services import audit
from services.config import Settings
from services.errors import Invalid, NotFound
from services.pagination import Page, keyset_page
from services.principal import Principal

log = logging.getLogger("nfod.webhooks")

FIRST_RETRY_SECONDS = 10.0  # with jitter the first retry comes 5 to 10 s later (<= 30 s)
MAX_BACKOFF_SECONDS = 3600.0
CLAIM_BATCH = 100
MAX_WORKERS = 16
USER_AGENT = "nfod-response-webhooks/1"


# --- the SSRF guard -------------------------------------------------------------------


class UnsafeUrl(ValueError):
    """The URL may not be called (scheme, or a host that is not a public address)."""


def _address_is_public(addr: str) -> bool:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def check_url(url: str, *, allow_private: bool, resolve_required: bool) -> None:
    """Refuse non-http(s) URLs and hosts resolving to loopback/private/link-local/reserved
    addresses (unless ``allow_private``). ``resolve_required``: an unresolvable host is an
    error (delivery time) rather than accepted for now (registration)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrl("only http and https URLs are accepted")
    host = parts.hostname
    if not host:
        raise UnsafeUrl("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrl("credentials in the URL are not accepted")
    if allow_private:
        return
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = socket.getaddrinfo(
                host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError, OSError):
            if resolve_required:
                raise UnsafeUrl("the host does not resolve") from None
            return
        addresses = [info[4][0] for info in infos]
    for addr in addresses:
        if not _address_is_public(addr):
            raise UnsafeUrl(
                "the host resolves to a loopback, private, link-local or reserved address"
            )


# --- registration ---------------------------------------------------------------------


@dataclass
class Registered:
    webhook: Webhook
    secret: str


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create_webhook(
    session: Session,
    *,
    actor: Principal,
    now: datetime,
    settings: Settings,
    url: str,
    kinds: list[str] | None,
    agency_id: str | None = None,
) -> Registered:
    try:
        check_url(url, allow_private=settings.webhook_allow_private, resolve_required=False)
    except UnsafeUrl as exc:
        raise Invalid(str(exc), loc=["body", "url"]) from None
    chosen = list(dict.fromkeys(kinds)) if kinds else list(ALERT_KINDS)
    for index, kind in enumerate(chosen):
        if kind not in ALERT_KINDS:
            raise Invalid(f"unknown alert kind {kind!r}", loc=["body", "kinds", index])
    agency_id = agency_id or actor.agency_id
    if agency_id and session.get(Agency, agency_id) is None:
        raise Invalid("no such agency", loc=["body", "agency_id"])
    secret = new_secret()
    webhook = Webhook(
        id=new_id(),
        url=url,
        kinds=chosen,
        secret=secret,
        agency_id=agency_id,
        active=True,
        created_by_id=actor.id,
        created_at=now,
    )
    session.add(webhook)
    session.flush()
    audit.record(
        session, actor=actor, action="create", at=now, subject_type="webhook", subject_id=webhook.id
    )
    return Registered(webhook=webhook, secret=secret)


def list_webhooks(session: Session, *, cursor: str | None, limit: int) -> Page[Webhook]:
    stmt = select(Webhook).where(Webhook.deleted_at.is_(None))
    return keyset_page(
        session,
        stmt,
        keys=[Webhook.created_at, Webhook.id],
        cursor=cursor,
        limit=limit,
        key_of=lambda w: (w.created_at, w.id),
    )


def get_webhook(session: Session, *, webhook_id: str) -> Webhook:
    webhook = session.execute(
        select(Webhook).where(Webhook.id == webhook_id, Webhook.deleted_at.is_(None))
    ).scalar_one_or_none()
    if webhook is None:
        raise NotFound("no such webhook")
    return webhook


def delete_webhook(session: Session, *, actor: Principal, now: datetime, webhook_id: str) -> None:
    """Deactivate at once; its pending deliveries are abandoned (status failed)."""
    webhook = get_webhook(session, webhook_id=webhook_id)
    webhook.active = False
    webhook.deleted_at = now
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="webhook deleted", locked_until=None)
    )
    session.flush()
    audit.record(
        session, actor=actor, action="delete", at=now, subject_type="webhook", subject_id=webhook.id
    )


# --- the outbox -----------------------------------------------------------------------


def envelope(alert: dict[str, Any]) -> dict[str, Any]:
    return {"type": "alert.raised", "timestamp": alert["raised_at"], "data": alert}


def active_hooks(session: Session) -> list[Any]:
    """(id, kinds) of every active webhook: who the outbox writes to."""
    return list(
        session.execute(
            select(Webhook.id, Webhook.kinds).where(
                Webhook.active.is_(True), Webhook.deleted_at.is_(None)
            )
        ).all()
    )


def enqueue(
    session: Session,
    *,
    alerts: list[dict[str, Any]],
    now: datetime,
    hooks: list[Any] | None = None,
) -> int:
    """Outbox rows for new alerts: one per active webhook subscribed to the alert's kind
    (``hooks``: :func:`active_hooks`, when the caller has them already)."""
    if hooks is None:
        hooks = active_hooks(session)
    rows = []
    for alert in alerts:
        for hook_id, kinds in hooks:
            if alert["kind"] in (kinds or []):
                rows.append(
                    {
                        "id": new_id(),
                        "webhook_id": hook_id,
                        "alert_id": alert["id"],
                        "payload": envelope(alert),
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
    if rows:
        session.execute(WebhookDelivery.__table__.insert(), rows)
    return len(rows)


def backlog(session: Session) -> int:
    return session.execute(
        select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.status == "pending")
    ).scalar_one()


# --- delivery -------------------------------------------------------------------------


@dataclass
class Claim:
    delivery_id: str
    webhook_id: str
    url: str
    secret: str
    body: str
    attempts: int


@dataclass
class Outcome:
    delivery_id: str
    ok: bool
    status_code: int | None
    error: str | None
    skipped: bool = False  # not attempted in this pass (its receiver is down or slow)


def claim_due(
    session: Session, *, now: datetime, settings: Settings, limit: int = CLAIM_BATCH
) -> list[Claim]:
    """Lease the due deliveries (PostgreSQL: FOR UPDATE SKIP LOCKED, then locked_until).

    The caller commits straight after, so a parallel pass skips them until the lease ends.
    """
    d = WebhookDelivery
    due = (
        select(d.id)
        .join(Webhook, Webhook.id == d.webhook_id)
        .where(
            d.status == "pending",
            d.next_attempt_at <= now,
            or_(d.locked_until.is_(None), d.locked_until < now),
            Webhook.active.is_(True),
        )
        .order_by(d.next_attempt_at, d.id)
        .limit(limit)
        .with_for_update(of=d, skip_locked=True)
    )
    ids = list(session.execute(due).scalars())
    if not ids:
        return []
    lease = now + timedelta(seconds=settings.webhook_timeout_seconds * 3 + 30)
    # Conditional: on SQLite (no row locks) this is what makes the claim exclusive.
    claimed = session.execute(
        update(d)
        .where(
            d.id.in_(ids),
            d.status == "pending",
            or_(d.locked_until.is_(None), d.locked_until < now),
        )
        .values(locked_until=lease)
        .returning(d.id)
        .execution_options(synchronize_session=False)
    ).scalars()
    claimed_ids = set(claimed)
    rows = session.execute(
        select(d.id, d.webhook_id, d.payload, d.attempts, Webhook.url, Webhook.secret)
        .join(Webhook, Webhook.id == d.webhook_id)
        .where(d.id.in_(claimed_ids))
        .order_by(d.next_attempt_at, d.id)
    ).all()
    session.flush()
    return [
        Claim(
            delivery_id=r.id,
            webhook_id=r.webhook_id,
            url=r.url,
            secret=r.secret,
            body=json.dumps(r.payload, separators=(",", ":"), sort_keys=True),
            attempts=r.attempts,
        )
        for r in rows
    ]


def sign(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _send_one(client: httpx.Client, claim: Claim, *, now: datetime, settings: Settings) -> Outcome:
    try:
        # Checked again at delivery: DNS may have changed since registration (rebinding).
        check_url(claim.url, allow_private=settings.webhook_allow_private, resolve_required=True)
    except UnsafeUrl as exc:
        return Outcome(claim.delivery_id, False, None, f"refused: {exc}")
    timestamp = int(now.timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": claim.delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(claim.secret, claim.delivery_id, timestamp, claim.body),
    }
    try:
        response = client.post(claim.url, content=claim.body.encode(), headers=headers)
    except httpx.TimeoutException:
        return Outcome(claim.delivery_id, False, None, "timed out")
    except httpx.HTTPError as exc:
        return Outcome(claim.delivery_id, False, None, f"{type(exc).__name__}")
    ok = 200 <= response.status_code < 300
    return Outcome(
        claim.delivery_id, ok, response.status_code, None if ok else f"HTTP {response.status_code}"
    )


def send(claims: list[Claim], *, now: datetime, settings: Settings) -> list[Outcome]:
    """POST the claimed messages. No database work.

    Receivers are served in parallel (one worker per webhook), each request bounded by the
    timeout. Within one receiver, messages go in order; after a timeout or connection
    failure, or once the pass has spent its time budget, that receiver's remaining
    messages are skipped (not attempted, left due) so a dead receiver costs one timeout
    per pass and never holds up the others or the next sweep.
    """
    if not claims:
        return []
    groups: dict[str, list[Claim]] = {}
    for claim in claims:
        groups.setdefault(claim.webhook_id, []).append(claim)
    deadline = time.monotonic() + max(10.0, 3 * settings.webhook_timeout_seconds)
    timeout = httpx.Timeout(settings.webhook_timeout_seconds)

    def run_group(group: list[Claim], client: httpx.Client) -> list[Outcome]:
        out: list[Outcome] = []
        give_up = False
        for claim in group:
            if give_up or time.monotonic() > deadline:
                out.append(Outcome(claim.delivery_id, False, None, None, skipped=True))
                continue
            outcome = _send_one(client, claim, now=now, settings=settings)
            out.append(outcome)
            give_up = not outcome.ok and outcome.status_code is None
        return out

    with (
        httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client,
        ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(groups))) as pool,
    ):
        results = pool.map(lambda g: run_group(g, client), groups.values())
        return [outcome for group in results for outcome in group]


def backoff_seconds(attempts: int, rng: random.Random | None = None) -> float:
    """Exponential with jitter: 5-10 s after the first failure, doubling, capped at 1 hour."""
    base = min(MAX_BACKOFF_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))
    return base * (0.5 + 0.5 * (rng or random).random())


def record_results(
    session: Session, *, outcomes: list[Outcome], now: datetime, settings: Settings
) -> dict[str, int]:
    counts = {"delivered": 0, "retry": 0, "failed": 0, "skipped": 0}
    d = WebhookDelivery
    for outcome in outcomes:
        delivery = session.get(d, outcome.delivery_id)
        if delivery is None or delivery.status != "pending":
            continue
        if outcome.skipped:
            delivery.locked_until = None
            counts["skipped"] += 1
            continue
        delivery.attempts += 1
        delivery.last_status_code = outcome.status_code
        delivery.locked_until = None
        if outcome.ok:
            delivery.status = "delivered"
            delivery.delivered_at = now
            delivery.last_error = None
            counts["delivered"] += 1
        elif delivery.attempts >= settings.webhook_max_attempts:
            delivery.status = "failed"
            delivery.last_error = outcome.error
            counts["failed"] += 1
        else:
            delivery.last_error = outcome.error
            delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
            counts["retry"] += 1
    session.flush()
    if counts["failed"] or counts["retry"]:
        log.info("webhook deliveries not accepted", extra={"outcomes": counts})
    return counts


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
