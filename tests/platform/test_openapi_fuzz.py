"""Schema-driven fuzzing (schemathesis) of every operation in the served /openapi.json.

Runs in-process against the ASGI app, as an admin on admin-only operations and as a
coordinator elsewhere, with valid (positive) and invalid (negative) data. Checks: no 5xx,
every error is problem+json, and every response conforms to the content type and schema
the OpenAPI document declares for it. Generic over whatever routes exist (one test per
operation), bounded to a few examples each so the whole run stays well under 60 s.

(schemathesis' own pytest integration, ``schemathesis.pytest.from_fixture``, does not
work with the installed pytest 9, so the Hypothesis loop is driven here directly.)
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from api.app import create_app
from api.routes import ROUTERS
from services.config import Settings

MAX_EXAMPLES = 4


def _admin_only_operations() -> set[tuple[str, str]]:
    found = set()
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and any(
                getattr(d.call, "__name__", "") == "require_admin"
                for d in route.dependant.dependencies
            ):
                found |= {(m, route.path) for m in route.methods}
    return found


DOCUMENT = create_app(Settings(_env_file=None, env="test", database_url="sqlite://")).openapi()
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in {"get", "post", "put", "patch", "delete"}
)
ADMIN_ONLY = _admin_only_operations()


def _can_be_negated(method: str, path: str) -> bool:
    """Invalid data exists only for operations with a body or non-path parameters
    (any string is a valid path id: a wrong one is simply 404)."""
    spec = DOCUMENT["paths"][path][method.lower()]
    return "requestBody" in spec or any(p["in"] != "path" for p in spec.get("parameters", []))


def problem_json_errors(ctx, response, case):
    """Every 4xx/5xx answer is application/problem+json with the RFC 9457 members."""
    if response.status_code < 400:
        return None
    media = response.headers.get("content-type", [""])
    media = media[0] if isinstance(media, list) else media
    assert media.startswith("application/problem+json"), (
        f"{case.method} {case.path} answered {response.status_code} as {media!r}"
    )
    body = response.json()
    assert body["status"] == response.status_code
    assert isinstance(body["title"], str) and isinstance(body["type"], str)
    assert "detail" in body
    return True


CHECKS = [
    not_a_server_error,
    problem_json_errors,
    content_type_conformance,
    response_schema_conformance,
]


def test_the_document_lists_the_platform_operations():
    assert {("POST", "/v1/auth/token"), ("GET", "/v1/audit"), ("GET", "/healthz")} <= set(
        OPERATIONS
    )


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_survives_fuzzing(app, factory, method, path):
    role = "admin" if (method, path) in ADMIN_ONLY else "coordinator"
    headers = {"Authorization": f"Bearer {factory.user(role).token}"}
    loaded = schemathesis.openapi.from_dict(DOCUMENT)
    loaded.app = app  # in-process ASGI calls against this test's app and database
    operation = loaded[path][method]
    modes = [GenerationMode.POSITIVE]
    if _can_be_negated(method, path):
        modes.append(GenerationMode.NEGATIVE)

    for mode in modes:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        run()
