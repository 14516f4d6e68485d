"""POSLog line items: sales, returns, voids, taxes, tenders and card data.

Everything personal or card-like is dropped or masked here, at the point where it is read:
only ``Context.clean`` text (PANs masked) and the last four digits of a card leave.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from xml.etree.ElementTree import Element

from producers.identifiers import is_gtin
from producers.pan import brand_of, digits_of, find_pans, is_pan, mask_pans
from producers.poslog_xml import (
    PoslogError,
    attr,
    child,
    child_text,
    children,
    decimal,
    flag,
    local,
    text,
)

_AMOUNT = Decimal("0.0001")
_QUANTITY = Decimal("0.001")
_AMOUNT_LIMIT = Decimal(10) ** 14  # Avro decimal(18, 4)
_QUANTITY_LIMIT = Decimal(10) ** 12  # Avro decimal(15, 3)
_ZERO = Decimal("0.0000")
_NO_CURRENCY = "XXX"  # ISO 4217 "no currency"; roqqio writes it on zero discounts

_UNITS = {
    **dict.fromkeys(("EA", "EACH", "C62", "H87", "PCE", "PC", "PCS", "UNIT", "ST"), "EA"),
    **dict.fromkeys(("KG", "KGM", "KILOGRAM", "KILOGRAMS"), "KG"),
    **dict.fromkeys(("G", "GR", "GRM", "GRAM", "GRAMS"), "G"),
    **dict.fromkeys(("L", "LT", "LTR", "LITRE", "LITER"), "L"),
    **dict.fromkeys(("M", "MTR", "METRE", "METER"), "M"),
}
_TENDER_METHODS = (  # (substring of the lower-cased TenderType, method); first match wins
    ("giftcert", "VOUCHER"),
    ("gift", "GIFT_CARD"),
    ("storedvalue", "GIFT_CARD"),
    ("voucher", "VOUCHER"),
    ("coupon", "VOUCHER"),
    ("storecredit", "STORE_CREDIT"),
    ("loyalty", "LOYALTY_POINTS"),
    ("point", "LOYALTY_POINTS"),
    ("mobile", "MOBILE"),
    ("wallet", "MOBILE"),
    ("applepay", "MOBILE"),
    ("googlepay", "MOBILE"),
    ("credit", "CARD"),
    ("debit", "CARD"),
    ("card", "CARD"),
    ("cash", "CASH"),
)
# ARTS tender detail elements, for tenders whose TenderType says nothing we know.
_TENDER_ELEMENTS = {
    "CreditDebit": "CARD",
    "GiftCard": "GIFT_CARD",
    "GiftCertificate": "VOUCHER",
    "Voucher": "VOUCHER",
    "Coupon": "VOUCHER",
    "StoreCredit": "STORE_CREDIT",
    "LoyaltyRedemption": "LOYALTY_POINTS",
}
_BRANDS = (  # (pattern over a brand name as vendors write it, canonical brand)
    (re.compile(r"visa"), "VISA"),
    (re.compile(r"master|^mc$|eurocard"), "MASTERCARD"),
    (re.compile(r"amex|american"), "AMEX"),
    (re.compile(r"diner"), "DINERS"),
    (re.compile(r"jcb"), "JCB"),
    (re.compile(r"discover"), "DISCOVER"),
    (re.compile(r"union|^cup$"), "UNIONPAY"),
    (re.compile(r"maestro"), "MAESTRO"),
    (re.compile(r"girocard|^ec$"), "GIROCARD"),
)


@dataclass
class Context:
    """Per-transaction state: where we are (for errors), the currency, PANs masked."""

    currency: str
    masked_pans: int = 0

    def clean(self, value: str | None) -> str | None:
        """Free text as it may leave: card numbers masked (and counted)."""
        if value is None:
            return None
        found = find_pans(value)
        if not found:
            return value
        self.masked_pans += len(found)
        return mask_pans(value)

    def amount(self, element: Element | None, what: str) -> Decimal | None:
        """A money amount, checked against the transaction currency."""
        raw = text(element)
        if element is None or raw is None:
            return None
        currency = attr(element, "Currency") or attr(element, "CurrencyCode")
        if currency and currency.upper() not in (self.currency, _NO_CURRENCY):
            raise PoslogError(f"{what} is in {currency}, the transaction in {self.currency}")
        return money(decimal(raw, what), what)


def money(value: Decimal, what: str) -> Decimal:
    if abs(value) >= _AMOUNT_LIMIT:
        raise PoslogError(f"{what}: {value} is too large")
    return value.quantize(_AMOUNT, rounding=ROUND_HALF_EVEN)


def quantity(value: Decimal, what: str) -> Decimal:
    if abs(value) >= _QUANTITY_LIMIT:
        raise PoslogError(f"{what}: {value} is too large")
    return value.quantize(_QUANTITY, rounding=ROUND_HALF_EVEN)


@dataclass
class Line:
    """A sale/return line before numbering; ``seq`` is the POSLog LineItem sequence."""

    seq: str | None
    record: dict[str, Any]
    tax_given: bool


@dataclass
class Tender:
    seq: str | None
    method: str
    status: str
    amount: Decimal
    card: dict[str, Any] | None
    at: Element | None  # LineItem/DateTime, if the vendor stamps lines


@dataclass
class Items:
    """What a RetailTransaction's line items add up to."""

    lines: list[Line] = field(default_factory=list)
    tenders: list[Tender] = field(default_factory=list)
    tax_lines: Decimal | None = None  # sum of separate Tax line items, if any
    discount: Decimal = _ZERO  # transaction-level Discount line items
    change: list[tuple[str, Decimal]] = field(default_factory=list)


def read_items(retail: Element, ctx: Context) -> Items:
    """Read every LineItem; unknown ones (loyalty, vendor extensions) are ignored."""
    items = Items()
    taxes: list[tuple[Element, Decimal, Line | None]] = []
    for line_item in _in_sequence(list(children(retail, "LineItem"))):
        seq = child_text(line_item, "SequenceNumber")
        voided = flag(line_item, "VoidFlag") or flag(line_item, "CancelFlag")
        where = f"line item {seq}" if seq else "line item"
        owner: Line | None = None  # the sale/return line of this LineItem, if any
        for element in line_item:
            name = local(element.tag)
            if name in ("Sale", "Return"):
                owner = _line(element, seq, voided, ctx, where)
                items.lines.append(owner)
            elif name == "Tender":
                tender = _tender(element, voided, ctx, where)
                tender.seq, tender.at = seq, child(line_item, "DateTime")
                items.tenders.append(tender)
                change = child(element, "TenderChange")
                if change is not None and not voided:
                    items.change.append(_change(change, tender.method, ctx, where))
            elif name == "TenderChange" and not voided:
                inner = child(element, "TenderChange")
                items.change.append(
                    _change(inner if inner is not None else element, None, ctx, where)
                )
            elif name == "Tax" and not voided:
                tax = ctx.amount(child(element, "Amount"), f"{where}: Tax/Amount") or _ZERO
                if attr(element, "TypeCode") == "Refund" and tax > 0:
                    tax = -tax
                taxes.append((element, tax, owner))
            elif name == "Discount" and not voided:
                off = ctx.amount(child(element, "Amount"), f"{where}: Discount/Amount")
                items.discount += abs(off or _ZERO)
    if taxes:
        items.tax_lines = sum((amount for _, amount, _ in taxes), _ZERO)
        _attribute_taxes(items.lines, taxes)
    return items


def _in_sequence(line_items: list[Element]) -> list[Element]:
    """Sort by LineItem/SequenceNumber when every line has a numeric one, else keep order."""
    seqs = [child_text(li, "SequenceNumber") or "" for li in line_items]
    if not all(s.isascii() and s.isdigit() for s in seqs):
        return line_items
    # Numeric order without int(): isdigit() alone admits '²', int() refuses 4301+ digits.
    numbers = [s.lstrip("0") for s in seqs]
    ordered = sorted(zip(numbers, line_items, strict=True), key=lambda p: (len(p[0]), p[0]))
    return [li for _, li in ordered]


def _line(item: Element, seq: str | None, voided: bool, ctx: Context, where: str) -> Line:
    name = local(item.tag)
    sku_text = child_text(item, "ItemID")
    identity = child(item, "POSIdentity")
    if sku_text is None and identity is not None:
        sku_text = child_text(identity, "POSItemID")
    if sku_text is None:
        raise PoslogError(f"{where}: {name} has no ItemID or POSIdentity/POSItemID")
    qty_el = child(item, "Quantity")
    raw_qty = decimal(text(qty_el) or "1", f"{where}: Quantity")
    unit = _unit(qty_el, where)
    regular = ctx.amount(child(item, "RegularSalesUnitPrice"), f"{where}: RegularSalesUnitPrice")
    actual = ctx.amount(child(item, "ActualSalesUnitPrice"), f"{where}: ActualSalesUnitPrice")
    extended = ctx.amount(child(item, "ExtendedAmount"), f"{where}: ExtendedAmount")
    discount = _ZERO
    for modifier in children(item, "RetailPriceModifier"):
        if attr(child(modifier, "Amount") or modifier, "Action") == "Add":
            continue  # a surcharge, already in ExtendedAmount; not a discount
        value = ctx.amount(child(modifier, "Amount"), f"{where}: RetailPriceModifier/Amount")
        discount += abs(value or _ZERO)
    if not discount:
        discount = abs(
            ctx.amount(child(item, "DiscountAmount"), f"{where}: DiscountAmount") or _ZERO
        )
    is_return = name == "Return" or raw_qty < 0 or (extended is not None and extended < 0)
    qty = quantity(abs(raw_qty), f"{where}: Quantity")
    price = regular if regular is not None else actual
    if price is None:
        if extended is None or not qty:
            raise PoslogError(f"{where}: {name} has neither a unit price nor an ExtendedAmount")
        price = money((abs(extended) + discount) / qty, f"{where}: unit price")
    price = abs(price)
    gross = money(qty * price, f"{where}: amount")
    if extended is None:
        amount = gross - discount
    elif discount and abs(extended) == gross:
        amount = abs(extended) - discount  # this vendor's ExtendedAmount is before discount
    else:
        amount = abs(extended)
    tax_els = list(children(item, "Tax"))
    tax = sum(
        (abs(ctx.amount(child(t, "Amount"), f"{where}: Tax/Amount") or _ZERO) for t in tax_els),
        _ZERO,
    )
    record = {
        "line_number": 0,  # numbered once the sale is assembled
        "kind": "VOID" if voided else ("RETURN" if is_return else "SALE"),
        "sku": sku_text,
        "gtin": _gtin(item, sku_text, identity),
        "description": ctx.clean(child_text(item, "Description") or attr_of(item, "ItemID")),
        "quantity": qty,
        "unit_of_measure": unit,
        "unit_price": price,
        "discount_amount": discount,
        "tax_amount": tax,
        "extended_amount": amount,
    }
    return Line(seq, record, tax_given=bool(tax_els))


def attr_of(element: Element, child_name: str, name: str = "Name") -> str | None:
    found = child(element, child_name)
    return None if found is None else attr(found, name)


def _unit(qty_el: Element | None, where: str) -> str:
    if qty_el is None:
        return "EA"
    code = attr(qty_el, "UnitOfMeasureCode") or attr(qty_el, "UnitOfMeasure")
    if code is None:
        return "EA"
    unit = _UNITS.get(code.upper())
    if unit is None:
        raise PoslogError(f"{where}: unsupported unit of measure {code!r} (EA, KG, G, L, M)")
    return unit


def _gtin(item: Element, sku: str, identity: Element | None) -> str | None:
    candidates = [sku]
    if identity is not None:
        candidates.append(child_text(identity, "POSItemID") or "")
    candidates += [
        text(s) or "" for s in children(item, "SerialNumber") if attr(s, "Type") == "GTIN"
    ]
    for value in candidates:
        if is_gtin(value):  # the one GTIN rule (never a card number)
            return value
    return None


def _attribute_taxes(lines: list[Line], taxes: list[tuple[Element, Decimal, Line | None]]) -> None:
    """Give a separate Tax line item's amount to the line it names, if it names one."""
    by_seq = {line.seq: line for line in lines if line.seq is not None}
    for element, amount, owner in taxes:
        target = owner
        for ref in element.iter():
            name = local(ref.tag)
            if "LineItemSequenceNumber" in name or name.endswith("SequenceNumberReference"):
                target = by_seq.get(text(ref) or "")
                break
        if target is not None and not target.tax_given:
            target.record["tax_amount"] += abs(amount)


def _tender(element: Element, voided: bool, ctx: Context, where: str) -> Tender:
    amount = ctx.amount(child(element, "Amount"), f"{where}: Tender/Amount")
    if amount is None:
        raise PoslogError(f"{where}: Tender has no Amount")
    method = _method(element)
    refund = attr(element, "TypeCode") == "Refund" or amount < 0
    status = "VOIDED" if voided else ("REFUNDED" if refund else "CAPTURED")
    card = _card(element, ctx) if method == "CARD" else None
    return Tender(None, method, status, abs(amount), card, None)


def _method(element: Element) -> str:
    tender_type = (attr(element, "TenderType") or "").rsplit(":", 1)[-1].lower()  # DKT:CreditCard
    for needle, method in _TENDER_METHODS:
        if needle in tender_type:
            return method
    for detail in element:
        found = _TENDER_ELEMENTS.get(local(detail.tag))
        if found is not None:
            return found
    return "OTHER"


def _change(element: Element, method: str | None, ctx: Context, where: str) -> tuple[str, Decimal]:
    """Change handed back: (method it was given in, amount); cash unless stated."""
    amount = ctx.amount(child(element, "Amount"), f"{where}: TenderChange/Amount") or _ZERO
    if method is None:
        method = _method(element) if attr(element, "TenderType") else "CASH"
    return method, abs(amount)


def _card(element: Element, ctx: Context) -> dict[str, Any]:
    """Brand, last four and token; a full PAN is read only to take those and is counted."""
    card = child(element, "CreditDebit", "DebitCard", "CreditCard") or element
    # Read as the guard reads it: any separators, any Unicode digits ('４１１１.１１１１...').
    written = child_text(card, "PrimaryAccountNumber", "PAN", "CardNumber") or ""
    pan = digits_of(written)
    if len(pan) >= 12 or is_pan(pan):
        ctx.masked_pans += 1
    trailing = pan[-4:] if written[-1:].isdecimal() else ""  # "************4242" too
    brand = (
        _brand_name(attr(card, "CardBrand") or attr(element, "CardBrand"))
        or _brand_name(child_text(card, "CardBrand", "Brand", "CreditCardCompanyCode"))
        or _brand_name(attr(card, "CardType"))
        or brand_of(digits_of(child_text(card, "IssuerIdentificationNumber") or ""))
        or brand_of(pan if written[:1].isdecimal() else None)
        or _brand_name(attr_of(element, "ReasonCode", "Description"))
        or _brand_name(attr(element, "TenderType"))
        or "UNKNOWN"
    )
    token = child_text(card, "Token", "CardToken", "PaymentToken", "TokenValue")
    return {
        "brand": brand,
        "last_four": trailing,
        "token": ctx.clean(token),
    }


def _brand_name(value: str | None) -> str | None:
    if not value:
        return None
    key = value.rsplit(":", 1)[-1].strip().lower()
    for pattern, brand in _BRANDS:
        if pattern.search(key):
            return brand
    return None
