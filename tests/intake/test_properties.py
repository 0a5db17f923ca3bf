"""Property tests: CHI validation (both check-digit schemes) and name normalisation."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from services import chi, matching, postcodes

dobs = st.dates(min_value=date(1920, 1, 1), max_value=date(2025, 12, 31))
serials = st.integers(min_value=0, max_value=999)


def mod11_digit(stem: str) -> int | None:
    check = 11 - sum(int(c) * w for c, w in zip(stem, range(10, 1, -1), strict=True)) % 11
    return None if check == 10 else check % 11


def mod10_digit(stem: str) -> int:
    total = 0
    for i, c in enumerate(stem):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


@settings(max_examples=200, deadline=None)
@given(dobs, serials)
def test_valid_mod11_chis_are_accepted(dob, serial):
    stem = f"{dob:%d%m%y}{serial:03d}"
    digit = mod11_digit(stem)
    if digit is None:
        # no modulus-11 number exists for this stem; only the modulus-10 digit can be valid
        assert [d for d in range(10) if chi.is_valid(stem + str(d))] == [mod10_digit(stem)]
        return
    number = stem + str(digit)
    assert chi.is_valid(number) and chi.mod11_ok(number)
    assert chi.matches_date_of_birth(number, dob)


@settings(max_examples=200, deadline=None)
@given(dobs, serials)
def test_valid_mod10_chis_are_accepted(dob, serial):
    number = f"{dob:%d%m%y}{serial:03d}"
    number += str(mod10_digit(number))
    assert chi.is_valid(number) and chi.mod10_ok(number)


@settings(max_examples=300, deadline=None)
@given(
    dobs,
    serials,
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=1, max_value=9),
    st.sampled_from(["mod11", "mod10"]),
)
def test_a_single_digit_change_is_rejected_unless_it_passes_the_other_check(
    dob, serial, position, delta, scheme
):
    stem = f"{dob:%d%m%y}{serial:03d}"
    digit = mod11_digit(stem) if scheme == "mod11" else mod10_digit(stem)
    if digit is None:
        return
    number = stem + str(digit)
    changed = number[:position] + str((int(number[position]) + delta) % 10) + number[position + 1 :]
    same_scheme_ok = chi.mod11_ok(changed) if scheme == "mod11" else chi.mod10_ok(changed)
    assert not same_scheme_ok  # each scheme detects every single-digit error
    other_ok = chi.mod10_ok(changed) if scheme == "mod11" else chi.mod11_ok(changed)
    assert chi.is_valid(changed) == other_ok


@given(st.text(max_size=12).filter(lambda s: not (len(s) == 10 and s.isascii() and s.isdigit())))
def test_anything_but_ten_digits_is_rejected(value):
    assert not chi.is_valid(value)


def test_documented_examples():
    assert chi.mod11_ok("1904851231") and chi.is_valid("1904851231")
    assert chi.mod10_ok("0101201234") and chi.is_valid("0101201234")
    assert not chi.is_valid("1904851232")


names = st.text(
    alphabet=st.characters(categories=["L", "Zs"], max_codepoint=0x24F, include_characters="-'’."),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(names)
def test_normalisation_is_idempotent_and_case_insensitive(name):
    key = matching.normalise_name(name)
    if key is None:
        return
    assert matching.normalise_name(key) == key
    assert matching.normalise_name(name.upper()) == matching.normalise_name(name.lower())
    assert " " not in key and "-" not in key and "'" not in key


@settings(max_examples=200, deadline=None)
@given(names, st.sampled_from([" ", "-", "'", "  ", " - "]))
def test_spacing_hyphens_and_apostrophes_do_not_matter(name, sep):
    parts = name.split()
    if len(parts) < 2:
        return
    assert matching.normalise_name(sep.join(parts)) == matching.normalise_name("".join(parts))


def test_accents_are_ignored():
    assert (
        matching.normalise_name("Seán Ó Briain")
        == matching.normalise_name("sean o'briain")
        == "seanobriain"
    )
    assert matching.normalise_name("Zoë") == matching.normalise_name("ZOE")
    assert matching.normalise_name("   ") is None
    assert matching.name_key("O'Neil-Smith", "Mary Jane") == "oneilsmith|maryjane"


@given(st.from_regex(r"\A[A-Z]{1,2}[0-9][0-9]? ?[0-9][A-Z]{2}\Z"))
def test_postcodes_normalise_to_outward_space_inward(raw):
    norm = postcodes.normalise(raw.lower())
    assert norm is not None and norm == norm.upper() and norm.count(" ") == 1
    assert postcodes.normalise(norm) == norm
    assert postcodes.district(norm) == norm.split(" ")[0]
    assert norm.replace(" ", "") == raw.replace(" ", "")


def test_postcode_examples():
    assert postcodes.normalise("dd37aa") == "DD3 7AA"
    assert postcodes.normalise("DD3 7AA ") == "DD3 7AA"
    for bad in ("", "DD3", "7AA DD3", "DDD3 7AA", "DD3 7A", "D 7AA", "DD3 77A"):
        assert postcodes.normalise(bad) is None, bad


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="abcdeilmnorst", max_size=14),
    st.text(alphabet="abcdeilmnorst", max_size=14),
)
def test_similar_names_agree_with_difflibs_ratio(a, b):
    """matching._similar's shortcuts (length bound, quick_ratio) never change its answer."""
    import difflib

    expected = (
        bool(a)
        and bool(b)
        and (a == b or difflib.SequenceMatcher(None, a, b).ratio() >= matching.SIMILAR_NAME_RATIO)
    )
    assert matching._similar(a, b) == expected
    assert matching._similar(a or None, None) is False
