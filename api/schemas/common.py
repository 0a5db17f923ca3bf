"""Wire types shared by every resource."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

T = TypeVar("T")


class RequestModel(BaseModel):
    """Base of every request body: unknown fields are refused (typos must not drop data).

    Use StrictStr / StrictBool / StrictInt fields where lax coercion would accept nonsense.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ResponseModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | None = None

    model_config = ConfigDict(extra="allow")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI declarations of problem responses, so schema-driven fuzzers can check them."""
    base = {400, 401, 403, 404, 413, 415, 422, 500} | set(statuses)
    return {
        s: {
            "model": Problem,
            "content": {"application/problem+json": {}},
            "description": "problem details",
        }
        for s in sorted(base)
    }
