"""A POSLog sale's totals, in the sale schema's terms and signs.

- ``gross_amount`` is always the lines' (SALE lines added, RETURN and VOID lines taken
  off: the shared totals rule), never the vendor's ``TransactionGrossAmount``, which some
  vendors write with tax added and some without.
- ``tax_amount`` is ``TransactionTaxAmount``, else the ``Tax`` line items, else the lines';
  ``net_amount`` (what the customer is due) is ``TransactionGrandAmount``, else what the
  tenders paid, else computed. ARTS ``TransactionNetAmount`` is before tax: not ours.
- **Signs**: a transaction that pays money back (its lines come to less than nothing: a
  return) has a negative tax and net, whichever sign the vendor writes its totals with;
  many write them positive. A tax the lines give as negative stays negative (an adjustment).
"""

from __future__ import annotations

from decimal import Decimal
from xml.etree.ElementTree import Element

from tillstream.core.rules import LINE_SIGNS
from tillstream_edge.poslog_items import Items, ParseContext, Tender
from tillstream_edge.poslog_xml import attr, children, is_true, local, text

_ZERO = Decimal("0.0000")
# The ARTS totals read; vendor totals (acs:GrossPositive, fu:..., text values) are never
# read, so one a vendor fills with text cannot set a transaction aside.
_TOTALS = ("TransactionTaxAmount", "TransactionGrandAmount")


def totals(retail: Element, items: Items, ctx: ParseContext) -> dict[str, Decimal]:
    """The sale's ``totals`` record (see the module)."""
    given: dict[str, Decimal | None] = {}
    for total in children(retail, "Total"):
        kind = attr(total, "TotalType")
        if kind in _TOTALS and kind not in given:
            given[kind] = ctx.amount(total, f"Total {kind}")
    records = [line.record for line in items.lines]
    gross = sum((r["extended_amount"] * LINE_SIGNS[r["kind"]] for r in records), _ZERO)
    line_tax = sum((r["tax_amount"] * LINE_SIGNS[r["kind"]] for r in records), _ZERO)
    pays_back = gross < 0
    tax = given.get("TransactionTaxAmount")
    if tax is None:
        tax = items.tax_lines
    if tax is None:
        tax = line_tax
    elif tax > 0 and (line_tax < 0 or (not line_tax and pays_back)):
        tax = -tax  # a return's tax written positive
    net = given.get("TransactionGrandAmount")
    if net is not None and net > 0 and pays_back:
        net = -net  # a refund's amount due written positive
    if net is None and items.tenders:
        net = paid(items.tenders)
    if net is None:
        net = gross - items.discount + (tax if _tax_added(retail) else _ZERO)
    return {
        "gross_amount": gross,
        "discount_amount": items.discount,
        "tax_amount": tax,
        "net_amount": net,
    }


def paid(tenders: list[Tender]) -> Decimal:
    """What the tenders paid: captured money in, refunded money out (others: nothing)."""
    sign = {"CAPTURED": 1, "REFUNDED": -1}
    return sum((sign.get(t.status, 0) * t.amount for t in tenders), _ZERO)


def _tax_added(retail: Element) -> bool:
    """Whether the till says prices exclude tax (US sales tax); EU-style inclusive otherwise."""
    for element in retail.iter():
        if local(element.tag) == "TaxIncludedInPriceFlag":
            value = text(element)
        else:
            value = attr(element, "TaxIncludedInPriceFlag")
        if value is not None and not is_true(value):
            return True
    return False
