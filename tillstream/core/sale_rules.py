"""A sale's lines: what each kind means, and the rules of a sale's lines and totals.

Part of :mod:`tillstream.core.rules` (which names them all, and applies them to a sale among
every event's rules): the line kinds' meaning every consumer reads (:data:`LINE_KINDS`,
:func:`is_stock_item`), line quantities, the totals rule (the module docstring of ``rules``),
and, for a whole sale, line numbers, amounts never negative and SKUs. The totals are also
what the POSLog converter tells its readings of a receipt apart by (:func:`sale_problems`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tillstream.core.identifiers import sku_problem

Problem = tuple[str, str]
"""(field path, message), as :mod:`tillstream.core.rules` gives them."""

_ZERO = Decimal(0)
MIN_LINE_NUMBER = 1


@dataclass(frozen=True, slots=True)
class LineEffect:
    """What a sale line of one kind means: the one definition every consumer reads.

    Each sign multiplies the line's (always positive) quantity or amount. A ``SALE`` sells,
    a ``RETURN`` takes goods back and pays money back, a ``VOID`` cancels an earlier
    ``SALE`` line of the same receipt, so it undoes that line everywhere.
    """

    money: int
    """Sign of the extended and tax amounts in the receipt totals and in revenue."""
    units: int
    """Sign in net units sold (analytics: units, top SKUs)."""
    demand: int
    """Sign in demand, the units sold the ERP's reorder velocity counts: a return is not
    negative demand, a void is (it cancels a sale)."""
    stock: int
    """Sign of the change to stock on hand (for a line with ``stock_item`` true)."""
    lines: int
    """Sign in the receipt's line count: a VOID takes away the line it cancels."""
    is_return: bool = False
    """Goods a customer brought back (the analytics returns rate counts these lines)."""


LINE_KINDS: Mapping[str, LineEffect] = {
    "SALE": LineEffect(money=1, units=1, demand=1, stock=-1, lines=1),
    "RETURN": LineEffect(money=-1, units=-1, demand=0, stock=1, lines=1, is_return=True),
    "VOID": LineEffect(money=-1, units=-1, demand=-1, stock=1, lines=-1),
}
"""The meaning of each sale line kind (schemas/sale ``LineKind``), by name."""

LINE_SIGNS: Mapping[str, int] = {name: kind.money for name, kind in LINE_KINDS.items()}
"""Sign of a sale line's extended and tax amounts in the receipt totals, by kind."""


def sale_revenue(sale: Mapping[str, Any]) -> Decimal:
    """What a sale is worth in revenue and customer spend: its net total, the customer's due.

    Every line kind's money is in it by its sign (the totals rule ties it to the lines), and
    so are lines that are not stock items: a deposit is money the customer paid.
    """
    return Decimal(sale["totals"]["net_amount"])


def is_stock_item(line: Mapping[str, Any]) -> bool:
    """Whether a sale line is merchandise that moves stock and counts as units sold.

    Deposits, fees, gift card sales and coupons are not (``stock_item`` false, sale schema
    v2): their money is revenue like any line's, but no stock moves and no units are sold.
    A line without the field (written before v2) is merchandise.
    """
    return bool(line.get("stock_item", True))


ROUNDING_PER_LINE = Decimal("0.01")
"""Totals may differ from what the lines add up to by this much per line (tills round each
line's tax and discount to the cent)."""

_QUANTITY_POSITIVE = "must be positive (the line's kind says whether goods leave or come back)"


def sale_line_quantity_problem(quantity: Decimal) -> str | None:
    """Why a sale line's quantity is invalid, or None (the line's kind gives the direction)."""
    if not quantity.is_finite() or quantity <= 0:
        return _QUANTITY_POSITIVE
    return None


def sale_problems(sale: Mapping[str, Any]) -> list[Problem]:
    """The rules a sale's lines and totals break that tell the POSLog converter's readings of a
    receipt apart: at least one line, line quantities, totals against the lines."""
    return _sale_problems(sale, whole=False)


def totals_problems(sale: Mapping[str, Any]) -> list[Problem]:
    """Where a sale's totals disagree with its lines (see the module's rule)."""
    sums = _line_sums(sale["lines"], [], whole=False)
    return [] if sums is None else _totals_problems(sale["totals"], sums, len(sale["lines"]))


def lines_and_totals_problems(sale: Mapping[str, Any]) -> list[Problem]:
    """Every rule a sale's lines and totals break: :func:`sale_problems`, and line numbers
    from 1 and unique (the ERP keys its ledger on them), line amounts never negative (the kind
    gives the direction) and SKUs by the SKU rule (``tillstream.core.identifiers``)."""
    return _sale_problems(sale, whole=True)


def _sale_problems(sale: Mapping[str, Any], *, whole: bool) -> list[Problem]:
    """:func:`sale_problems`; ``whole``: also the rest of the line rules (line numbers, amounts
    never negative, SKUs): every rule of a sale's lines in one pass (it runs per record)."""
    lines: Sequence[Mapping[str, Any]] = sale["lines"]
    if not lines:
        return [("lines", "a sale has at least one line")]
    problems: list[Problem] = []
    sums = _line_sums(lines, problems, whole=whole)
    if sums is None:
        return problems
    return problems + _totals_problems(sale["totals"], sums, len(lines))


_Sums = tuple[Decimal, Decimal, Decimal, bool]
"""(gross, the lines' tax, the goods' amount, whether every line states its tax)."""
_NEVER_NEGATIVE = "must be zero or more (the line's kind gives the direction)"


def _line_sums(
    lines: Sequence[Mapping[str, Any]], problems: list[Problem], *, whole: bool
) -> _Sums | None:
    """The lines' sums for the totals rule, adding each line's broken rules to ``problems``;
    None if a line has a kind the totals cannot sign.

    Written for speed: it runs for every sale a consumer reads (about 1 µs a line). Money in
    and out is summed apart (a sign times a Decimal costs more than an addition), each rule
    is one comparison on the way, and field paths are built only for a broken rule.
    """
    zero, signs, sku_rule = _ZERO, LINE_SIGNS, sku_problem
    added = taken = goods = tax_added = tax_taken = zero
    every_line_taxed = True
    numbers: set[int] = set()
    for i, ln in enumerate(lines):
        quantity = ln["quantity"]
        if type(quantity) is not Decimal:  # decoded and edge records hold Decimals already
            quantity = Decimal(quantity)
        if not quantity.is_finite() or quantity <= zero:
            problems.append((f"lines[{i}].quantity", _QUANTITY_POSITIVE))
        sign = signs.get(ln["kind"])
        if sign is None:
            problems.append(("lines", f"kind must be one of {', '.join(signs)}"))
            return None
        amount, tax = ln["extended_amount"], ln["tax_amount"]  # Decimal or int: both add
        if sign > 0:
            added += amount
            tax_added += tax
        else:
            taken += amount
            tax_taken += tax
        if amount < zero:
            goods -= amount
            if whole:
                problems.append((f"lines[{i}].extended_amount", _NEVER_NEGATIVE))
        else:
            goods += amount
        if not tax:
            every_line_taxed = False
        if whole:
            n = ln["line_number"]
            if n < MIN_LINE_NUMBER or n in numbers:
                problems.append((f"lines[{i}].line_number", "must be 1 or more, once per sale"))
            numbers.add(n)
            if ln["unit_price"] < zero:
                problems.append((f"lines[{i}].unit_price", _NEVER_NEGATIVE))
            if ln["discount_amount"] < zero:
                problems.append((f"lines[{i}].discount_amount", _NEVER_NEGATIVE))
            if (sku := sku_rule(ln["sku"])) is not None:
                problems.append((f"lines[{i}].sku", sku.message))
    return added - taken, tax_added - tax_taken, goods, every_line_taxed


def _totals_problems(totals: Mapping[str, Any], sums: _Sums, lines: int) -> list[Problem]:
    gross, line_tax, goods, every_line_taxed = sums
    tolerance = _tolerance(lines)
    given_gross = _decimal(totals["gross_amount"])
    discount = _decimal(totals["discount_amount"])
    tax = _decimal(totals["tax_amount"])
    net = _decimal(totals["net_amount"])
    problems: list[Problem] = []
    if abs(given_gross - gross) > tolerance:
        problems.append(
            (
                "totals.gross_amount",
                "does not match the lines: it must be the extended amounts of SALE lines less "
                f"those of RETURN and VOID lines, within {tolerance} for rounding",
            )
        )
    # Tax and discount can be no more than the goods they are on; tills that itemise the tax
    # of every line must total it.
    goods += tolerance
    if discount < 0 or discount > goods:
        problems.append(
            (
                "totals.discount_amount",
                "must be between 0 and the sum of the lines' extended amounts",
            )
        )
    if abs(tax) > goods:
        problems.append(
            ("totals.tax_amount", "cannot be more than the sum of the lines' extended amounts")
        )
    elif every_line_taxed and not line_tax - discount - tolerance <= tax <= line_tax + tolerance:
        # A receipt discount lowers the tax too (by at most its own amount): the tax on it
        # comes off the lines' tax.
        problems.append(
            (
                "totals.tax_amount",
                "does not match the lines' tax (SALE lines less RETURN and VOID lines, less "
                f"the tax on a receipt discount), within {tolerance} for rounding",
            )
        )
    due = given_gross - discount
    if abs(net - due) > tolerance and abs(net - (due + tax)) > tolerance:
        problems.append(
            (
                "totals.net_amount",
                "does not match the totals: it must be gross_amount - discount_amount (tax "
                "included in prices) or gross_amount - discount_amount + tax_amount (tax added), "
                f"within {tolerance} for rounding",
            )
        )
    return problems


@functools.lru_cache(maxsize=256)
def _tolerance(lines: int) -> Decimal:
    """:data:`ROUNDING_PER_LINE` per line (at least one)."""
    return ROUNDING_PER_LINE * max(lines, 1)


def _decimal(value: Any) -> Decimal:
    return value if type(value) is Decimal else Decimal(value)
