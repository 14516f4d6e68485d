"""The card-number guard: no primary account number (PAN) ever leaves the store.

A PAN here is 13 to 19 digits, optionally grouped by single spaces or dashes, that starts
with a card scheme's prefix and passes the Luhn check. Item identifiers are not PANs: fields
that hold SKUs and GTINs are never scanned, and a 13-digit number in free text that is a
valid GTIN-13 is taken for an item (13-digit card numbers are no longer issued).
"""

from __future__ import annotations

import functools
import re

from stdnum import ean, luhn

# Digits with optional single separators, not glued to other digits.
_CANDIDATE = re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])")
# Issuer prefixes (ISO/IEC 7812 IINs) of the schemes that issue 13-19 digit cards.
_SCHEME_PREFIX = re.compile(
    r"^(?:4"  # Visa
    r"|5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"  # Mastercard
    r"|3[47]"  # American Express
    r"|3(?:0[0-5]|[689])"  # Diners Club
    r"|35(?:2[89]|[3-8]\d)"  # JCB
    r"|6(?:011|4[4-9]|5)"  # Discover
    r"|62"  # UnionPay
    r"|5[06-9]|6\d)"  # Maestro
)


class CardNumberError(ValueError):
    """A field holds what looks like a full card number."""

    def __init__(self, field: str) -> None:
        super().__init__(
            f"{field}: looks like a card number (PAN); only brand, last four digits and a "
            "token may leave the till"
        )
        self.field = field


def is_pan(digits: str) -> bool:
    """Whether a run of 13-19 digits is a plausible card number."""
    return (
        13 <= len(digits) <= 19
        and digits.isdigit()
        and _SCHEME_PREFIX.match(digits) is not None
        and luhn.is_valid(digits)
        and not (len(digits) == 13 and ean.is_valid(digits))
    )


def find_pans(text: str) -> list[str]:
    """Every card number in ``text`` (as digits only)."""
    found = []
    for match in _CANDIDATE.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if is_pan(digits):
            found.append(digits)
    return found


@functools.lru_cache(maxsize=65_536)
def contains_pan(text: str) -> bool:
    # Descriptions, cashier and terminal ids repeat on every receipt: scan each text once.
    return bool(find_pans(text))


def mask_pans(text: str) -> str:
    """``text`` with every card number replaced by asterisks and its last four digits."""

    def mask(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group())
        return "*" * (len(digits) - 4) + digits[-4:] if is_pan(digits) else match.group()

    return _CANDIDATE.sub(mask, text)


def check_fields(fields: dict[str, str | None]) -> None:
    """Raise :class:`CardNumberError` for the first field that holds a card number."""
    for name, value in fields.items():
        if value and contains_pan(value):
            raise CardNumberError(name)
