"""Canonical JSON: the bytes the stored hashes are made of - a request's and an incident's
hash (:func:`canonical_hash`) and an audit entry's content hash (services.audit).

The canonical form is ``json.dumps(value, sort_keys=True, separators=(",", ":"), ...)``,
and it stays that, byte for byte: one changed byte changes every hash made from then on, so
a retry that crosses an upgrade would be refused 422 and ``nfod audit verify`` would fail.

orjson writes the same bytes, several times faster, for the values on which the two agree,
and only those take it: strings, booleans, None, integers within 64 bits, and lists, tuples
and dicts with string keys of those, with datetimes and dates handed to the caller's
``default`` by both. Floats (orjson writes ``1e16`` and ``null`` where ``json.dumps`` writes
``1e+16`` and ``NaN``), larger integers (orjson refuses them), subclasses (an enum, a
string kept as JSON text) and every other type take ``json.dumps``. With ``ensure_ascii``
(``json.dumps``' own default, which escapes every non-ASCII character and DEL) orjson's
bytes are used only when they are ASCII without DEL, where the two agree.
tests/platform/test_canonical.py checks that they agree on every value hypothesis makes (it
found the DEL).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
_INT_LIMIT = 2**63  # orjson writes -2**63 .. 2**64 - 1; the bound is kept symmetric


def canonical_hash(value: Any) -> str:
    """SHA-256 of a canonical JSON rendering (sorted keys, no whitespace, non-ASCII kept,
    UTC timestamps), byte for byte what it has always been."""
    return hashlib.sha256(sorted_json(value, default=dates_as_text, ensure_ascii=False)).hexdigest()


def utc_text(value: datetime) -> str:
    """A timestamp as the canonical forms write it: UTC, microseconds, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dates_as_text(obj: Any) -> str:
    """:func:`canonical_hash`'s ``default``: datetimes (:func:`utc_text`) and dates as text."""
    if isinstance(obj, datetime):
        return utc_text(obj)
    if isinstance(obj, date):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


def sorted_json(value: Any, *, default: Callable[[Any], Any] | None, ensure_ascii: bool) -> bytes:
    """``json.dumps(value, sort_keys=True, separators=(",", ":"), default=default,
    ensure_ascii=ensure_ascii)``, encoded as UTF-8. ``default`` must return a string (both
    callers' do: a datetime's or a date's text, ``str``): orjson writes what it returns
    without looking at it again."""
    try:
        plain = is_plain(value)
    except RecursionError:  # nested deeper than this walk goes: json.dumps decides
        plain = False
    if plain:
        try:
            raw = orjson.dumps(value, default=default, option=_OPTIONS)
        except orjson.JSONEncodeError:  # e.g. a lone surrogate: json.dumps says what it says
            raw = None
        # ensure_ascii: json.dumps escapes DEL (0x7f) too; orjson escapes below 0x20 only.
        if raw is not None and (not ensure_ascii or (raw.isascii() and b"\x7f" not in raw)):
            return raw
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        default=default,
        ensure_ascii=ensure_ascii,
    ).encode()


def is_plain(value: Any) -> bool:
    """Whether ``value`` holds only what orjson writes exactly as ``json.dumps`` does (see
    the module's text). Exact types: a subclass may be written differently."""
    kind = type(value)
    if kind is str or kind is bool or value is None or kind is datetime or kind is date:
        return True
    if kind is int:
        return -_INT_LIMIT <= value < _INT_LIMIT
    # Plain loops, not all(...) over a generator: this runs four times a notification.
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not is_plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110
            if not is_plain(item):
                return False
        return True
    return False
