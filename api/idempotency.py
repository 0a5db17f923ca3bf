"""Idempotency-Key handling for any POST (see services.idempotency for the semantics).

Usage in a route::

    return idempotent(request, session, principal, now, settings, body_for_hash, work)

where ``body_for_hash`` is the request body as a JSON-mode dump (``model_dump(mode="json")``)
and ``work()`` returns ``(status_code, json_body, headers)``, ``json_body`` already JSON-safe
(a JSON-mode dump, or plain dicts, lists, strings and numbers) or rendered
(``services.db.JSONText``): it is stored and sent as is.
Without the header the work simply runs. With it: phase 1 commits an in-flight marker on
the request session; phase 2 runs the work, stores its answer on the marker and commits
both. A failure in phase 2 (its commit included) removes the marker so a retry can run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from fastapi import Request
from sqlalchemy.orm import Session

from api.responses import RenderedJSON
from services import audit
from services import idempotency as idem
from services.config import Settings
from services.db import RequestSession, has_writes_at_commit
from services.intake import canonical_hash
from services.principal import Principal

HEADER = "Idempotency-Key"
Work = Callable[[], tuple[int, Any, dict[str, str]]]
CLAIMS_KEYS = "claims_idempotency_keys"
Handler = TypeVar("Handler", bound=Callable[..., Any])


def claims_keys(handler: Handler) -> Handler:
    """Mark a route handler that answers through :func:`idempotent` (put it under the
    route decorator). A keyed request to it starts its session in autocommit mode on
    PostgreSQL (api.deps._session): the caller's look-up and the key's claim then run
    without a transaction of their own, and ``idempotent`` begins the work's."""
    setattr(handler, CLAIMS_KEYS, True)
    return handler


def _nothing_to_write(session: Session) -> bool:
    return (
        isinstance(session, RequestSession)
        and not audit.has_pending(session)
        and not has_writes_at_commit(session)
    )


def idempotent(
    request: Request,
    session: Session,
    principal: Principal,
    now: datetime,
    settings: Settings,
    body: Any,
    work: Work,
) -> RenderedJSON:
    key = request.headers.get(HEADER)
    if key is None:
        status, content, headers = work()
        return RenderedJSON(content, status_code=status, headers=headers)
    method, path = request.method, request.url.path
    claim = idem.claim(
        session,
        principal_key=principal.key,
        key=key,
        method=method,
        path=path,
        request_hash=canonical_hash({"body": body}),
        now=now,
        settings=settings,
    )
    if claim.replay is not None:
        stored = claim.replay
        headers = dict(stored.response_headers or {})
        headers["Idempotent-Replayed"] = "true"
        return RenderedJSON(stored.response_body, status_code=stored.status_code, headers=headers)
    # Phase 1 ends: the marker is visible to concurrent duplicates from now on. A session in
    # its autocommit phase (keyed, PostgreSQL: api.deps._session) had it committed by the
    # server with the claim itself, and only turns transactional for the work.
    if not (_nothing_to_write(session) and session.end_autocommit()):
        session.commit()
        if isinstance(session, RequestSession):
            session.begin_transactions()  # the work is one transaction
    try:
        status, content, headers = work()
        idem.complete(
            session, record_id=claim.record_id, status_code=status, body=content, headers=headers
        )
        # Phase 2 ends here: the work and its stored answer (written with the commit) are
        # committed together, inside this try, so that a failed commit releases the key too.
        session.commit()
    except BaseException:
        # The work is rolled back; remove the marker in its own commit so a retry is not
        # refused as "in flight" until the lease runs out.
        session.rollback()
        audit.keep_only_survivors(session)
        try:
            idem.release(session, record_id=claim.record_id)
            session.commit()
        except Exception:  # noqa: BLE001 - the original error matters more; the lease expires
            session.rollback()
        raise
    return RenderedJSON(content, status_code=status, headers=headers)
