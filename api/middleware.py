"""Pure ASGI middleware: request id, body size limit, media type, metrics, access log and
the last line of defence for unhandled errors (a problem+json 500 with the request id)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import metrics
from api.logging_setup import request_id_var
from api.problems import (
    database_unavailable,
    log_failure,
    problem_response,
    unavailable_response,
)

log = logging.getLogger("nfod.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:/+=-]{1,100}$")
_JSON_TYPES = ("application/json", "application/merge-patch+json")
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


# The request headers this middleware reads, found in one pass over the request's.
_READ = frozenset((b"x-request-id", b"content-length", b"content-type", b"transfer-encoding"))


def _headers(scope: Scope) -> dict[bytes, str]:
    """The first value of each header in ``_READ`` that the request has."""
    found: dict[bytes, str] = {}
    for key, value in scope.get("headers", ()):
        if key in _READ and key not in found:
            found[key] = value.decode("latin-1")
    return found


# (method, route template, status) -> its request counter and latency histogram. Asking
# prometheus_client for a labelled child takes a lock and a look-up every time; these are
# the same few objects for ever (routes are templates, not raw paths).
_SERIES: dict[tuple[str, str, int], tuple] = {}
_SERIES_LIMIT = 5000  # a bound, not a policy: forgetting only costs a labels() call


def _series(method: str, route: str, status: int) -> tuple:
    key = (method, route, status)
    found = _SERIES.get(key)
    if found is None:
        if len(_SERIES) >= _SERIES_LIMIT:
            _SERIES.clear()
        labels = (method, route, str(status))
        found = _SERIES[key] = (
            metrics.REQUESTS.labels(*labels),
            metrics.LATENCY.labels(*labels),
        )
    return found


class RequestContextMiddleware:
    """Every response gets X-Request-ID (the caller's when it is sane, else a new UUID);
    bodies over the limit get 413 (by Content-Length up front, or while a chunked body
    streams in), bodies of an unsupported media type 415; an unhandled exception becomes a
    problem+json 500 that names no SQL and no trace; each request is counted, timed and
    logged by route template (never the raw path or query string)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        incoming = headers.get(b"x-request-id")
        request_id = (
            incoming if incoming and _VALID_REQUEST_ID.match(incoming) else str(uuid.uuid4())
        )
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        state = {"status": 500, "started": False, "too_large": False}

        async def send_out(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                state["status"] = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"
                ]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        async def send_from_app(message: Message) -> None:
            if state["too_large"] and not state["started"]:
                return  # the app's answer to a cut-off body is replaced by our 413
            await send_out(message)

        received = 0
        # A body sent with a Content-Length (and no Transfer-Encoding) is at most that long -
        # the HTTP server reads no further - and _reject_early has checked the length, so
        # only a chunked body is counted as it streams in.
        counted = b"content-length" not in headers or b"transfer-encoding" in headers

        async def receive_limited() -> Message:
            nonlocal received
            if state["too_large"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # Stop reading: the app sees a disconnect, we answer 413 below.
                    state["too_large"] = True
                    return {"type": "http.disconnect"}
            return message

        try:
            rejection = self._reject_early(scope, headers)
            if rejection is not None:
                await rejection(scope, receive, send_out)
                return
            try:
                await self.app(scope, receive_limited if counted else receive, send_from_app)
            except Exception as exc:  # noqa: BLE001 - answered below, logged without its message
                if not state["too_large"]:
                    log_failure(exc)
                    if state["started"]:
                        raise
                    if database_unavailable(exc):
                        await unavailable_response(exc)(scope, receive, send_out)
                    else:
                        await problem_response(
                            500, "something went wrong on our side; it has been logged"
                        )(scope, receive, send_out)
            if state["too_large"] and not state["started"]:
                await self._too_large()(scope, receive, send_out)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "")
            status = state["status"]
            count, latency = _series(method, route, status)
            count.inc()
            latency.observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)

    def _too_large(self):
        return problem_response(413, f"the request body is larger than {self.max_body_bytes} bytes")

    def _reject_early(self, scope: Scope, headers: dict[bytes, str]):
        length = headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > self.max_body_bytes:
                    return self._too_large()
            except ValueError:
                return problem_response(400, "Content-Length is not a number")
        method = scope.get("method")
        if method in ("POST", "PUT", "PATCH") and scope.get("path", "").startswith("/v1/"):
            ctype = (headers.get(b"content-type") or "").split(";")[0].strip().lower()
            has_body = length not in (None, "0") or b"transfer-encoding" in headers
            if has_body and ctype and ctype not in _JSON_TYPES and ctype not in _FORM_TYPES:
                return problem_response(415, f"send the body as application/json, not {ctype}")
        return None
