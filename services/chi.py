"""CHI numbers: Scotland's 10-digit health identifier (see DOMAIN.md).

A CHI is valid when it is ten digits and its check digit passes modulus 11 (numbers
issued before November 2025) or modulus 10 / Luhn (numbers issued since). Its first six
digits are the date of birth as DDMMYY.
"""

from __future__ import annotations

from datetime import date


def mod11_ok(chi: str) -> bool:
    digits = [int(c) for c in chi]
    total = sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        check = 0
    if check == 10:
        return False
    return check == digits[9]


def mod10_ok(chi: str) -> bool:
    digits = [int(c) for c in chi]
    total = 0
    for i, d in enumerate(digits[:9]):
        if i % 2 == 0:  # the 1st, 3rd, 5th, 7th and 9th digits
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == digits[9]


def well_formed(chi: str) -> bool:
    return len(chi) == 10 and chi.isascii() and chi.isdigit()


def problem(chi: str) -> str | None:
    """Why this CHI is not acceptable, or None when it is."""
    if not well_formed(chi):
        return "a CHI number is exactly 10 digits"
    if not (mod11_ok(chi) or mod10_ok(chi)):
        return "the CHI number fails its check digit (neither modulus 11 nor modulus 10)"
    return None


def is_valid(chi: str) -> bool:
    return problem(chi) is None


def matches_date_of_birth(chi: str, dob: date) -> bool:
    return chi[:6] == dob.strftime("%d%m%y")
