"""UK postcodes: validation, normalisation (upper case, one space) and the district."""

from __future__ import annotations

import re

# Outward code: A9, A99, A9A, AA9, AA99, AA9A; inward code: 9AA. Plus the GIR 0AA special.
_POSTCODE = re.compile(r"^(?P<out>[A-Z]{1,2}[0-9][A-Z0-9]?)(?P<in>[0-9][A-Z]{2})$")


def normalise(value: str) -> str | None:
    """``"dd37aa"`` -> ``"DD3 7AA"``; None when it is not a well-formed UK postcode."""
    compact = re.sub(r"\s+", "", value).upper()
    if compact == "GIR0AA":
        return "GIR 0AA"
    m = _POSTCODE.match(compact)
    if not m:
        return None
    outward = m.group("out")
    # A three-character outward code ending in a letter must be A9A (e.g. W1A), not AA?.
    if len(outward) == 3 and outward[2].isalpha() and not outward[1].isdigit():
        return None
    if (
        len(outward) == 4
        and outward[3].isalpha()
        and not (outward[0:2].isalpha() and outward[2].isdigit())
    ):
        return None
    return f"{outward} {m.group('in')}"


def district(postcode: str) -> str:
    """The outward code of a normalised postcode: ``"DD3 7AA"`` -> ``"DD3"``."""
    return postcode.split(" ", 1)[0]
