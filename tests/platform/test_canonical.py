"""services.canonical: the canonical JSON behind every stored hash is, byte for byte,
``json.dumps(sort_keys=True, separators=(",", ":"))`` - whichever encoder wrote it."""

from __future__ import annotations

import enum
import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services import audit, canonical
from services.canonical import canonical_hash, dates_as_text


def reference(value, *, default, ensure_ascii: bool) -> bytes:
    """The canonical form as it was written before services.canonical existed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), default=default, ensure_ascii=ensure_ascii
    ).encode()


class Level(enum.IntEnum):
    LOW = 1


class Text(str):
    pass


# Every kind of text: control characters, quotes, backslashes, non-ASCII, astral characters,
# U+2028, and lone surrogates (which a JSON body's "\ud800" escape can carry).
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),  # exponents, NaN, infinities
    texts,
    st.datetimes(timezones=zones),
    st.dates(),
    st.sampled_from([Level.LOW, Text("kept as text")]),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(texts, inner, max_size=4),
    ),
    max_leaves=12,
)


def outcome(make):
    try:
        return make()
    except Exception as exc:  # noqa: BLE001 - the same failure is part of the same answer
        return type(exc)


@settings(max_examples=500, deadline=None)
@given(values, st.booleans())
def test_sorted_json_is_json_dumps_byte_for_byte(value, ensure_ascii):
    for default in (dates_as_text, str):
        assert outcome(
            lambda d=default: canonical.sorted_json(value, default=d, ensure_ascii=ensure_ascii)
        ) == outcome(lambda d=default: reference(value, default=d, ensure_ascii=ensure_ascii))


def test_the_fast_encoder_is_what_writes_an_intakes_values(monkeypatch):
    """Not a vacuous equivalence: the values intake and the audit hash are plain, so orjson
    writes them (json.dumps is not called)."""
    value = {
        "occurred_at": datetime(2026, 12, 7, 2, 59, tzinfo=UTC),
        "source_ref": "AMB-1",
        "naloxone_administered": True,
        "location": {"postcode": "AB24 3QZ", "description": "stairwell"},
        "substances": ["heroin", "etizolam"],
        "person": {"given_name": "Zoë", "date_of_birth": date(2002, 2, 4)},
    }
    assert canonical.is_plain(value)

    def refuse(*args, **kwargs):
        raise AssertionError("json.dumps was called")

    monkeypatch.setattr(canonical.json, "dumps", refuse)
    assert canonical.sorted_json(value, default=dates_as_text, ensure_ascii=False)
    ascii_only = {"id": "e1", "details": {"incident_id": "i1"}}
    assert canonical.sorted_json(ascii_only, default=str, ensure_ascii=True)


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        [1e16],
        {"a": float("nan")},
        2**64,
        Level.LOW,
        Text("x"),
        {1: "a"},
        datetime(2026, 1, 1, 12, 0).time(),
    ],
)
def test_what_orjson_would_write_differently_is_not_plain(value):
    assert not canonical.is_plain(value)


def test_a_deeply_nested_value_is_written_as_json_dumps_writes_it():
    value: list = []
    for _ in range(400):
        value = [value]
    assert canonical.sorted_json(value, default=None, ensure_ascii=True) == reference(
        value, default=None, ensure_ascii=True
    )


def test_hashes_made_before_the_fast_encoder_are_made_again():
    """Hashes computed by the code before services.canonical (a retry's request hash, an
    incident's, an audit entry's content hash): the same inputs give the same hashes."""
    value = {
        "source_ref": "AMB-0001",
        "occurred_at": datetime(2026, 3, 29, 0, 30, tzinfo=timezone(timedelta(hours=1))),
        "person": {
            "given_name": "Zoë",
            "family_name": 'O\'Brien "Tab"\t',
            "date_of_birth": date(1980, 1, 2),
            "chi": None,
        },
        "substances": ["heroin", "étizolam"],
        "naloxone_administered": True,
        "n": 3,
    }
    assert canonical_hash(value) == (
        "eddf2228ebe4a3c7ff49e5278a02d4ba5abb03c8e16ffcc124866db7a6e6a00b"
    )
    entry = {
        "id": "e1",
        "at": datetime(2026, 12, 7, 9, 0, 0, 123456, tzinfo=UTC),
        "actor_type": "client",
        "actor_id": "c1",
        "action": "create",
        "subject_type": "incident",
        "subject_id": "i1",
        "request_id": "r1",
        "client_addr": "127.0.0.1",
        "details": {"reason": "Zoë", "count": 2, "ok": True, "nested": {"b": [1, None], "a": "x"}},
    }
    assert audit.content_hash(entry) == (
        "32825d9f875880e0260121cac2a9969b31bd6b48f008802f04910e7eb6ef8a70"
    )
    with_a_float = entry | {"details": {"ratio": 1e16, "when": datetime(2026, 1, 1, tzinfo=UTC)}}
    assert audit.content_hash(with_a_float) == (
        "6aea215fcabf62e63f8923f12cf4db3d5aea138e784f040a56aeab85bbd9d1b4"
    )
