"""Idempotency-Key handling for any POST (see services.idempotency for the semantics).

Usage in a route::

    return idempotent(request, session, principal, now, settings, body_for_hash, work)

where ``body_for_hash`` is the request body as a JSON-mode dump (``model_dump(mode="json")``)
or the body model itself (see :func:`request_hash`), and ``work()`` returns
``(status_code, json_body, headers)``, ``json_body`` already JSON-safe (a JSON-mode dump,
or plain dicts, lists, strings and numbers) or rendered (``services.db.JSONText``): it is
stored and sent as is.
Without the header the work simply runs. With it, the key is claimed in the work's own
transaction, and the work, its answer and the key are committed together, here: a failure
anywhere (the commit included) rolls all of it back, and the key is free for the retry.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.responses import RenderedJSON
from services import idempotency as idem
from services.canonical import canonical_hash
from services.config import Settings
from services.principal import Principal

HEADER = "Idempotency-Key"
Work = Callable[[], tuple[int, Any, dict[str, str]]]


def request_hash(request: Request, body: Any) -> str:
    """The hash a key's row keeps of its request: of ``body``, a JSON-safe value, or a
    Pydantic model, taken as ``model_dump(mode="json", exclude_unset=True)``. A model's is
    made once per request (api.direct hashes it before the endpoint runs)."""
    if not isinstance(body, BaseModel):
        return canonical_hash({"body": body})
    made = getattr(request.state, "idempotency_hash", None)
    if made is not None and made[0] is body:
        return made[1]
    hashed = canonical_hash({"body": body.model_dump(mode="json", exclude_unset=True)})
    request.state.idempotency_hash = (body, hashed)
    return hashed


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
    hashed = request_hash(request, body)
    # The key's look, when it was made with the caller's look-up (api.direct): good for the
    # first attempt only (a rollback ends it, with its locks).
    looked = getattr(request.state, "idempotency_look", None)
    for attempt in (1, 2):
        claim = idem.claim(
            session,
            principal_key=principal.key,
            key=key,
            method=method,
            path=path,
            request_hash=hashed,
            now=now,
            settings=settings,
            looked=looked if attempt == 1 else None,
        )
        if claim.replay is not None:
            stored = claim.replay
            headers = dict(stored.response_headers or {})
            headers["Idempotent-Replayed"] = "true"
            return RenderedJSON(
                stored.response_body, status_code=stored.status_code, headers=headers
            )
        status, content, headers = work()
        idem.complete(session, claim, status_code=status, body=content, headers=headers)
        try:
            # The work, its answer and the key, committed together.
            session.commit()
        except IntegrityError as exc:
            # Another request with this key claimed it after this one looked and committed
            # first (PostgreSQL: its row was not visible yet, and its locks were gone by the
            # time this one took them). Nothing of this request is kept: look again, and
            # answer as that request's retry would be answered.
            if attempt == 2 or not idem.is_taken_meanwhile(exc):
                raise
            session.rollback()
            continue
        return RenderedJSON(content, status_code=status, headers=headers)
    raise AssertionError("unreachable")  # pragma: no cover
