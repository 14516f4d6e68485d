"""Item identifiers (SKU, GTIN) and free text: one rule each for every channel, and never a
card number.

- A **GTIN** is 8, 12, 13 or 14 ASCII digits with a valid check digit and a GS1 prefix
  that GS1 has assigned (biip's table: no made-up or reserved ranges). Its lengths are one
  GTIN: :func:`gtin14` pads each to the 14 digits GS1 compares them in, so the GTIN-13
  ``4006381333931`` and the GTIN-14 ``04006381333931`` scan as the same item. A 14-digit value
  that is also a Diners Club card number (prefix 300-305, 3095, 36, 38 or 39, passing
  Luhn) is refused as a card number: Diners is the scheme that issues 14-digit cards, and
  a card number must not travel as an item even if it happens to pass the GTIN check.
- A **SKU** is 1-64 characters: a letter or digit, then letters, digits and ``_ . / -``.
  A SKU holding a card number (in any spelling ``tillstream.core.pan`` reads) is refused,
  unless the SKU is itself a GTIN by the rule above: stores use GTINs as SKUs.
- **Free text** (descriptions, references, cashier, customer and terminal ids, tokens) may
  hold anything but a card number and control characters (:func:`control_problem`: NUL
  breaks PostgreSQL's text, ESC reaches terminals, a line break splits a log line), in
  every event and in head office's master data alike.

:func:`field_problem` walks a whole event (every channel at the edge, and every consumer
again: a record written to Kafka another way is held to the same rules).

Each returns a :class:`Problem` naming what is wrong and the limit, never the value.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from biip import ParseError
from biip.gtin import Gtin

from tillstream.core.pan import PAN_MIN_DIGITS, brand_of, contains_pan, is_pan

SKU_MAX_LENGTH = 64
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./-]*$"
GTIN_LENGTHS = (8, 12, 13, 14)
_SKU = re.compile(SKU_PATTERN)
CARD_NUMBER = "card_number"
"""The kind (and metric reason) of a refusal because a value looks like a card number."""


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # CARD_NUMBER or "invalid"
    message: str


_GTIN_IS_CARD = Problem(CARD_NUMBER, "looks like a card number (PAN), not a GTIN")
_SKU_IS_CARD = Problem(CARD_NUMBER, "looks like a card number (PAN); a SKU may not hold one")
_TEXT_IS_CARD = Problem(
    CARD_NUMBER,
    "looks like a card number (PAN); only brand, last four digits and a token may leave the till",
)
_NOT_GTIN = Problem(
    "invalid",
    "not a valid GTIN (8, 12, 13 or 14 digits, a valid check digit and an assigned GS1 prefix)",
)
_SKU_LENGTH = Problem("invalid", f"a SKU is 1 to {SKU_MAX_LENGTH} characters")
_SKU_CHARACTERS = Problem(
    "invalid", "a SKU starts with a letter or digit and holds only letters, digits and _ . / -"
)


def _diners(value: str) -> bool:
    # The card rule's own prefixes and Luhn check (tillstream.core.pan): no second copy here.
    return len(value) == 14 and is_pan(value) and brand_of(value) == "DINERS"


@functools.lru_cache(maxsize=65_536)
def gtin_problem(value: str) -> Problem | None:
    # A store sells the same few thousand GTINs all day: check each once, not on every line.
    if not (len(value) in GTIN_LENGTHS and value.isascii() and value.isdigit()):
        return _GTIN_IS_CARD if contains_pan(value) else _NOT_GTIN
    if _diners(value):
        return _GTIN_IS_CARD
    try:
        prefix = Gtin.parse(value).prefix
    except ParseError:  # wrong check digit
        return _NOT_GTIN
    return None if prefix is not None else _NOT_GTIN


def is_gtin(value: str) -> bool:
    return gtin_problem(value) is None


def gtin14(code: str) -> str | None:
    """A GTIN of any length (8, 12, 13, 14 digits) as the 14 digits GS1 pads it to: the one
    form GTINs are compared in. None for anything that is not digits of those lengths."""
    if code.isascii() and code.isdigit() and len(code) in GTIN_LENGTHS:
        return code.zfill(14)
    return None


@functools.lru_cache(maxsize=65_536)
def sku_problem(value: str) -> Problem | None:
    # The card check comes first: a card number is refused as one, whatever else is wrong.
    if contains_pan(value) and not is_gtin(value):
        return _SKU_IS_CARD
    if not 1 <= len(value) <= SKU_MAX_LENGTH:
        return _SKU_LENGTH
    if not _SKU.match(value):
        return _SKU_CHARACTERS
    return None


def text_problem(value: str) -> Problem | None:
    if len(value) < PAN_MIN_DIGITS and value.isascii():
        # Most fields (ids, codes, numbers): too short to hold a card number's digits (one
        # non-ASCII character may normalise to two: '⑩').
        return None if value.isprintable() else _CONTROL
    if contains_pan(value):
        return _TEXT_IS_CARD
    return control_problem(value)


_CONTROL = Problem(
    "invalid",
    "holds a control character (NUL, a tab, a line break, ESC...): not text a till, a "
    "terminal or a database shows as written",
)
# Line and paragraph separators break lines as a newline does, though they are not Cc.
_LINE_BREAKS = frozenset("\u2028\u2029")


@functools.lru_cache(maxsize=65_536)
def control_problem(value: str) -> Problem | None:
    # C0 (NUL breaks PostgreSQL text, ESC starts terminal sequences, newlines split log
    # lines), DEL and C1 (0x9B is a terminal's CSI too).
    if value.isascii() and value.isprintable():
        return None  # the usual case, without a look at each character
    for char in value:
        if unicodedata.category(char) == "Cc" or char in _LINE_BREAKS:
            return _CONTROL
    return None


# Event identifiers: UUIDs, checked by the codec, never read as card numbers.
_EVENT_IDS = frozenset({"event_id", "sale_event_id", "voided_event_id", "report_id", "change_id"})
_SHA256 = re.compile(r"[0-9a-f]{64}")
_NOT_SHA256 = Problem("invalid", "a SHA-256 is 64 lowercase hexadecimal digits")


def sha256_problem(value: str) -> Problem | None:
    """A till token's SHA-256 in head office's desired state: hex digits, not text (one in
    a few hundred holds a run of digits passing for a card number)."""
    return None if _SHA256.fullmatch(value) else _NOT_SHA256


# Identifiers with a rule of their own: the SKU and GTIN rules above, a token's SHA-256;
# every other string is free text.
_ITEM_IDS: dict[str, Callable[[str], Problem | None]] = {
    "sku": sku_problem,
    "gtin": gtin_problem,
    "token_sha256": sha256_problem,
    "previous_token_sha256": sha256_problem,
}


def field_problem(value: Any, path: str = "") -> tuple[str, Problem] | None:
    """The path and problem of the first string field of an event (a decoded record or a
    till's JSON) holding a card number, else of the first breaking another rule above."""
    found: list[tuple[str, Problem]] = []
    if isinstance(value, dict | list):
        _scan(value, [path] if path else [], found)
    cards = [f for f in found if f[1].kind == CARD_NUMBER]
    return cards[0] if cards else (found[0] if found else None)


def _scan(
    value: dict[str, Any] | list[Any], trail: list[str | int], found: list[tuple[str, Problem]]
) -> bool:
    """Add each bad field under ``value`` to ``found``; True once a card number is found.
    Runs on every event at the edge and in every consumer: exact type tests (decoded Avro
    and JSON hold plain str, dict and list), and a field's path written only when it is bad
    (``trail``: the keys down to ``value``)."""
    items: Any = value.items() if type(value) is dict else enumerate(value)
    for key, item in items:
        kind = type(item)
        if kind is str:
            if key in _EVENT_IDS:
                continue
            rule = _ITEM_IDS.get(key) if type(key) is str else None
            problem = (rule or text_problem)(item)
            if problem is not None:
                found.append((_path(*trail, key), problem))
                if problem.kind == CARD_NUMBER:
                    return True
        elif kind is dict or kind is list:
            trail.append(key)
            card = _scan(item, trail, found)
            trail.pop()
            if card:
                return True
    return False


def _path(*keys: str | int) -> str:
    """``lines[0].description`` from ``"lines", 0, "description"``."""
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out
