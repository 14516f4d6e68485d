"""One cell of a master-data file to its value, or the problem with it (never quoting it).

The rules are the project's: SKUs, GTINs and free text by ``tillstream.core.identifiers``
(never a card number), free text never a spreadsheet formula (``tillstream.core.spreadsheet``),
units of measure by ``tillstream.core.units``, money and quantities as
:class:`~decimal.Decimal` within the schemas' precision (written in ASCII digits and ``.``
only), times with an offset, an end of validity "for ever" as none
(``tillstream.core.prices``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from tillstream.core.identifiers import sku_problem, text_problem
from tillstream.core.prices import FOREVER_YEAR, is_forever
from tillstream.core.spreadsheet import looks_like_formula
from tillstream.core.units import UNIT_CODES_HINT, unit_code, unit_of_code


class CellProblem(ValueError):
    """What is wrong with a cell, in words that do not quote it."""


_STORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # as Settings.store_id
_CURRENCY = re.compile(r"[A-Z]{3}")  # as the edge's Currency: what sales carry
# What the docs promise: ASCII digits and at most one '.' (never 1e3, 1_000 or '１.00', which
# Decimal() would take); a leading '-' only to say that it must be zero or more.
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NOT_DECIMAL = "not a decimal number (ASCII digits, a '.' for the decimal point)"
TEXT_MAX_LENGTH = 200


def sku(text: str) -> str:
    if not text:
        raise CellProblem("a SKU is required")
    if (problem := sku_problem(text)) is not None:
        raise CellProblem(problem.message)
    return text


def text(text: str, *, required: bool = False) -> str | None:
    if not text:
        if required:
            raise CellProblem("required")
        return None
    if (problem := text_problem(text)) is not None:
        raise CellProblem(problem.message)
    if looks_like_formula(text):  # refused, not altered: the file is head office's to fix
        raise CellProblem(
            "starts like a spreadsheet formula (=, +, -, @): a spreadsheet opening an export "
            "would run it; start the text otherwise"
        )
    if len(text) > TEXT_MAX_LENGTH:
        raise CellProblem(f"longer than {TEXT_MAX_LENGTH} characters")
    return text


def unit(text: str) -> str:
    """A unit of measure tillstream reads, as its code (upper case)."""
    if unit_of_code(text) is None:
        raise CellProblem(f"not a unit of measure tillstream reads ({UNIT_CODES_HINT})")
    return unit_code(text)


def boolean(text: str) -> bool:
    lowered = text.lower()
    if lowered not in ("true", "false"):
        raise CellProblem("must be true or false")
    return lowered == "true"


def decimal(text: str, *, scale: int, precision: int, positive: bool = False) -> Decimal:
    """A decimal of at most ``scale`` places and ``precision`` digits, zero or more (more
    than zero if ``positive``)."""
    if not _DECIMAL.fullmatch(text):
        raise CellProblem(_NOT_DECIMAL)
    try:
        value = Decimal(text)
    except InvalidOperation:  # not after the pattern; kept so no text can raise past here
        raise CellProblem(_NOT_DECIMAL) from None
    if value < 0 or (positive and value == 0):
        raise CellProblem("must be more than zero" if positive else "must be zero or more")
    if int(value.as_tuple().exponent) < -scale:
        raise CellProblem(f"more than {scale} decimal places")
    if value.adjusted() >= precision - scale:
        raise CellProblem(f"more than {precision - scale} digits before the decimal point")
    return value


def whole_number(text: str, *, most: int) -> int:
    digits = text.lstrip("0") or "0"  # and never int() of thousands of digits
    if (
        not (text.isascii() and text.isdigit())
        or len(digits) > len(str(most))
        or int(digits) > most
    ):
        raise CellProblem(f"must be a whole number from 0 to {most}")
    return int(text)


def store_id(text: str) -> str | None:
    """A store id, or None (empty: the chain)."""
    if not text:
        return None
    if not _STORE_ID.fullmatch(text) or text_problem(text) is not None:
        raise CellProblem("a store id is 1-64 letters, digits, '_', '.' or '-'")
    return text


def currency(text: str) -> str:
    if not _CURRENCY.fullmatch(text):
        raise CellProblem("must be an ISO 4217 code in capitals, such as EUR")
    return text


def validity(text: str) -> date | datetime | None:
    """A day (``2026-03-01``: the store's own day), an instant in UTC (``2026-03-01T06:00:00
    +01:00``: the offset is required), or None (empty: open-ended)."""
    return _in_utc(_day_or_time(text))


def validity_end(text: str) -> date | datetime | None:
    """As :func:`validity`; a day or time in the year 9999 (ERP exports' "for ever", SAP's
    ``9999-12-31``) is None: open-ended."""
    value = _day_or_time(text)
    return None if is_forever(value) else _in_utc(value)


def _day_or_time(text: str) -> date | datetime | None:
    if not text:
        return None
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            raise CellProblem("not a date (YYYY-MM-DD)") from None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise CellProblem(
            "not a date (YYYY-MM-DD) or a time with an offset (YYYY-MM-DDTHH:MM:SS+01:00)"
        ) from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise CellProblem("a time needs its offset (+01:00, or Z for UTC): whose time is it?")
    return at


def _in_utc(value: date | datetime | None) -> date | datetime | None:
    if not isinstance(value, datetime):
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is in the year 0 in UTC
        raise CellProblem(f"out of range in UTC (years 1 to {FOREVER_YEAR})") from None
