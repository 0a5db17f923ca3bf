"""models.base's ids: time-ordered version 7 UUIDs for rows, random version 4 for persons,
both in canonical text as ``str(uuid.UUID(...))`` writes it."""

from __future__ import annotations

import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from models.base import new_id, new_random_id, time_ordered_id

MS = st.integers(min_value=0, max_value=2**48 - 1)
RAND = st.binary(min_size=10, max_size=10)


def _positions(ids: list[str], fixed: dict[int, set[str]], first_random: int) -> None:
    """Every position from ``first_random`` on that is not ``fixed`` takes every hex digit:
    none of the random bits was fixed by mistake."""
    for position in range(first_random, 36):
        seen = {value[position] for value in ids}
        if position in (8, 13, 18, 23):
            assert seen == {"-"}
        elif position in fixed:
            assert seen == fixed[position], position
        else:
            assert seen == set("0123456789abcdef"), position


def test_random_ids_are_canonical_random_version_4_uuids():
    ids = [new_random_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value  # lower-case, dashes where uuid puts them
    _positions(ids, {14: {"4"}, 19: set("89ab")}, first_random=0)


@given(MS, RAND)
def test_a_time_ordered_id_is_the_version_7_uuid_of_its_millisecond(ms, rand):
    value = time_ordered_id(ms, rand)
    parsed = uuid.UUID(value)
    assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
    assert str(parsed) == value
    assert parsed.int >> 80 == ms  # RFC 9562: unix_ts_ms is the first 48 bits
    # 74 random bits: rand_a (12) and rand_b (62) are the random bytes' first 74 bits, but for
    # the two of rand_b's first hex digit that the variant takes.
    bits = int.from_bytes(rand, "big") >> 4
    rand_a, rand_b = (parsed.int >> 64) & 0xFFF, parsed.int & (2**62 - 1)
    assert rand_a == bits >> 64
    assert rand_b == bits & (2**62 - 1)


@given(MS, MS, RAND, RAND)
def test_time_ordered_ids_sort_by_their_millisecond_as_text(ms1, ms2, rand1, rand2):
    a, b = time_ordered_id(ms1, rand1), time_ordered_id(ms2, rand2)
    if ms1 < ms2:
        assert a < b
    elif ms1 > ms2:
        assert a > b


def test_new_ids_are_version_7_of_now_and_unique():
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after
    assert ids == sorted(ids, key=lambda v: uuid.UUID(v).int >> 80)
    _positions(ids, {14: {"7"}, 19: set("89ab")}, first_random=15)
