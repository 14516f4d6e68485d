"""The card-number guard: no primary account number (PAN) ever leaves the store.

A PAN here is 13 to 19 digits that starts with a card scheme's prefix and passes the Luhn
check. Text is normalised before it is searched, so a number cannot hide behind its spelling:
NFKC (full-width and other compatibility forms), every Unicode decimal digit read as its
ASCII digit, and any run of characters that are neither letters nor digits (spaces, tabs,
no-break and zero-width spaces, dots, slashes, underscores...) taken as a separator between
groups. A 13-digit number that is a valid GTIN-13 is taken for an item (13-digit card
numbers are no longer issued). Item identifiers have their own rule in
``tillstream.core.identifiers``, built on this one.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from stdnum import ean, luhn

# Digits with any separators between them (never letters): a run, of any length.
_RUN = re.compile(r"(?<![0-9])[0-9](?:[\W_]*[0-9])*")
_GROUP = re.compile(r"[0-9]+")
# Issuer prefixes (ISO/IEC 7812 IINs) of the schemes that issue 13-19 digit cards, most
# specific first: the first match names the brand.
_SCHEMES = (
    ("VISA", re.compile(r"4")),
    ("MASTERCARD", re.compile(r"5[1-5]|2(?:2[2-9][1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)")),
    ("AMEX", re.compile(r"3[47]")),
    ("JCB", re.compile(r"35(?:2[89]|[3-8]\d)")),
    ("DINERS", re.compile(r"3(?:0[0-5]|095|[689])")),
    ("DISCOVER", re.compile(r"6(?:011|4[4-9]|5)")),
    ("UNIONPAY", re.compile(r"62")),
    ("MAESTRO", re.compile(r"5[06-9]|6")),
)


def brand_of(digits: str | None) -> str | None:
    """The card scheme whose issuer prefix ``digits`` starts with, if any."""
    if not digits:
        return None
    for brand, prefix in _SCHEMES:
        if prefix.match(digits):
            return brand
    return None


PAN_MIN_DIGITS = 13
"""The fewest digits a card number has."""


def is_pan(digits: str) -> bool:
    """Whether a run of 13-19 ASCII digits is a plausible card number."""
    return (
        PAN_MIN_DIGITS <= len(digits) <= 19
        and digits.isascii()
        and digits.isdigit()
        and brand_of(digits) is not None
        and luhn.is_valid(digits)
        and not (len(digits) == 13 and ean.is_valid(digits))
    )


def _normalise(text: str) -> tuple[str, list[int] | None]:
    """``text`` with every digit in ASCII, and where each of its characters came from
    (None: the same place, as for ASCII text, which needs no work)."""
    if text.isascii():
        return text, None
    out: list[str] = []
    where: list[int] = []
    for i, char in enumerate(text):
        if char.isascii():
            plain = char
        else:  # per character, so positions map back: NFKC turns '１' and '²' into
            # digits, unicodedata.decimal the scripts NFKC leaves alone ('٣', '৩', '๓').
            plain = "".join(
                str(unicodedata.decimal(c)) if c.isdecimal() else c
                for c in unicodedata.normalize("NFKC", char)
            )
        out.append(plain)
        where += [i] * len(plain)
    return "".join(out), where


def digits_of(text: str) -> str:
    """Every digit of ``text``, normalised to ASCII, in order."""
    return "".join(_GROUP.findall(_normalise(text)[0]))


def _pan_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, digits) of every card number in ``text`` (positions in ``text``).

    A card number is a whole run of digits, or, in a run grouped by separators, any span of
    whole groups: "Tel 12 4111 1111 1111 1111" holds a card number after the "12".
    """
    plain, where = _normalise(text)
    spans = []
    for run in _RUN.finditer(plain):
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
            start = run.start() + groups[first].start()
            end = run.start() + groups[last].end()
            if where is not None:
                start, end = where[start], where[end - 1] + 1
            spans.append((start, end, digits))
            first = last + 1
    return spans


def find_pans(text: str) -> list[str]:
    """Every card number in ``text`` (as ASCII digits only)."""
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
