"""Keyset pagination: opaque cursors over a (sort key..., id) tuple, never OFFSET."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, tuple_
from sqlalchemy.orm import Session

from services.errors import Invalid

T = TypeVar("T")
MAX_LIMIT = 500
DEFAULT_LIMIT = 50


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"d": value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and "dt" in value:
        return datetime.fromisoformat(value["dt"])
    if isinstance(value, dict) and "d" in value:
        return date.fromisoformat(value["d"])
    return value


def encode_cursor(values: Sequence[Any]) -> str:
    raw = json.dumps([_encode_value(v) for v in values], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, width: int) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != width:
            raise ValueError("wrong width")
        return [_decode_value(v) for v in values]
    except (ValueError, TypeError):
        raise Invalid("cursor is not valid for this list", loc=["query", "cursor"]) from None


def keyset_page(
    session: Session,
    stmt: Select,
    *,
    keys: Sequence[Any],
    cursor: str | None,
    limit: int,
    descending: bool = False,
    key_of: Callable[[Any], Sequence[Any]],
    scalars: bool = True,
) -> Page:
    """Run ``stmt`` ordered by ``keys`` (the last one unique, usually ``id``) after ``cursor``.

    ``key_of`` extracts the key values from a returned row for the next cursor.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}", loc=["query", "limit"])
    if cursor:
        values = decode_cursor(cursor, len(keys))
        row = tuple_(*keys)
        stmt = stmt.where(row < tuple_(*values) if descending else row > tuple_(*values))
    order = [k.desc() for k in keys] if descending else [k.asc() for k in keys]
    stmt = stmt.order_by(*order).limit(limit + 1)
    result = session.execute(stmt)
    rows = list(result.scalars() if scalars else result.all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(key_of(rows[-1]))
    return Page(items=rows, next_cursor=next_cursor)
