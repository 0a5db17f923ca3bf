"""models.base.new_id: random version 4 UUIDs in canonical text, as str(uuid.uuid4())."""

from __future__ import annotations

import uuid

from models.base import new_id


def test_ids_are_canonical_random_version_4_uuids():
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for value in ids:
        parsed = uuid.UUID(value)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == value  # lower-case, dashes where uuid puts them
    # Every position that uuid4 leaves random takes every value it can (122 random bits):
    # none of them was fixed by mistake.
    for position in range(36):
        seen = {value[position] for value in ids}
        if position in (8, 13, 18, 23):
            assert seen == {"-"}
        elif position == 14:
            assert seen == {"4"}
        elif position == 19:
            assert seen == set("89ab")
        else:
            assert seen == set("0123456789abcdef"), position
