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

# Digits with optional single separators, not glued to other digits: a run, of any length.
_RUN = re.compile(r"(?<![\d])\d(?:[ -]?\d)*(?![\d])")
_GROUP = re.compile(r"\d+")
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


def _pan_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, digits) of every card number in ``text``.

    A card number is a whole run of digits, or, in a run grouped by separators, any span of
    whole groups: "Tel 12 4111 1111 1111 1111" holds a card number after the "12".
    """
    spans = []
    for run in _RUN.finditer(text):
        groups = list(_GROUP.finditer(run.group()))
        first = 0
        while first < len(groups):
            found = None
            digits = ""
            for last in range(first, len(groups)):
                digits += groups[last].group()
                if len(digits) > 19:
                    break
                if is_pan(digits):  # 13-19 digits, scheme prefix, Luhn
                    found = (last, digits)  # the longest span from here wins
            if found is None:
                first += 1
                continue
            last, digits = found
            base = run.start()
            spans.append((base + groups[first].start(), base + groups[last].end(), digits))
            first = last + 1
    return spans


def find_pans(text: str) -> list[str]:
    """Every card number in ``text`` (as digits only)."""
    return [digits for _, _, digits in _pan_spans(text)]


@functools.lru_cache(maxsize=65_536)
def contains_pan(text: str) -> bool:
    # Descriptions, cashier and terminal ids repeat on every receipt: scan each text once.
    return bool(_pan_spans(text))


def mask_pans(text: str) -> str:
    """``text`` with every card number replaced by asterisks and its last four digits."""
    out, at = [], 0
    for start, end, digits in _pan_spans(text):
        out += [text[at:start], "*" * (len(digits) - 4) + digits[-4:]]
        at = end
    return "".join([*out, text[at:]])


def check_fields(fields: dict[str, str | None]) -> None:
    """Raise :class:`CardNumberError` for the first field that holds a card number."""
    for name, value in fields.items():
        if value and contains_pan(value):
            raise CardNumberError(name)
