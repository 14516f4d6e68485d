"""POSLog tenders: payment method, refunds, change handed back and card data.

Change is not a refund: the cash a customer gets back is netted into the tender it came
from (``poslog._apply_change``), so a sale's payments add up to what the customer paid. Vendors
write change three ways, all read here: a ``TenderChange`` inside the tender (ARTS, Wincor),
a ``LineItem/TenderChange`` of its own (roqqio), or a tender with a negative amount holding
a ``TenderChange`` (NCR ACS: the change is logged as a tender of -2.62).

A card leaves as brand, last four digits and token only, in the HTTP channel's shape: when
the till does not give four trailing digits the payment carries no card at all.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol
from xml.etree.ElementTree import Element

from tillstream.core.pan import brand_of, digits_of, is_pan
from tillstream_edge.poslog_xml import (
    PoslogError,
    attr,
    child,
    child_text,
    children,
    flag,
    local,
    text,
)

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
    ("currency", "CASH"),  # Xstore's CURRENCY
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
# Where vendors write the card number, masked or not ("************4242", "XXXX1234").
_CARD_NUMBERS = (
    "PrimaryAccountNumber",
    "PAN",
    "CardNumber",
    "MaskedPAN",
    "MaskedCardNumber",
    "AccountNumber",  # NCR RES
    "MaskedAccountId",  # NCR Retalix (r10Ex:)
    "MaskedAccountID",
)
_FOUR_DIGITS_AT_END = re.compile(r"\d{4}$")
_BASE64 = re.compile(r"[A-Za-z0-9+/]{8,}={0,2}")
_MASKED = re.compile(r"[0-9*Xx# -]{8,23}")


@dataclass
class Tender:
    seq: str | None
    method: str
    status: str
    amount: Decimal
    card: dict[str, Any] | None
    at: Element | None  # LineItem/DateTime, if the vendor stamps lines


class Reader(Protocol):
    """What the tender reader needs of the transaction: amounts in its currency, counted
    card numbers and masked free text (``poslog_items.ParseContext``)."""

    masked_pans: int

    def amount(self, element: Element | None, what: str) -> Decimal | None: ...

    def clean(self, value: str | None) -> str | None: ...


def is_change(element: Element, amount: Decimal) -> bool:
    """A tender line that is the change handed back: NCR ACS logs a tender of -2.62 holding
    ``TenderChange``, NCR Retalix a tender of 0 holding it (linked to the one it is from),
    Oracle Xstore a negative cash tender flagged ``ChangeFlag``."""
    holds_change = child(element, "TenderChange") is not None
    return (amount <= 0 and holds_change) or (amount < 0 and flag(element, "ChangeFlag"))


def tender_amount(element: Element, ctx: Reader, where: str) -> Decimal:
    amount = ctx.amount(child(element, "Amount"), f"{where}: Tender/Amount")
    if amount is None:
        raise PoslogError(f"{where}: Tender has no Amount")
    return amount


def tender(element: Element, amount: Decimal, voided: bool, ctx: Reader) -> Tender:
    method = method_of(element)
    type_code = attr(element, "TypeCode")
    # NCR writes a coupon redeemed in a sale as a tender of -1.00 (TypeCode Sale): it pays.
    coupon_paid = method == "VOUCHER" and type_code == "Sale"
    refund = type_code == "Refund" or (amount < 0 and not coupon_paid)
    status = "VOIDED" if voided else ("REFUNDED" if refund else "CAPTURED")
    card = _card(element, ctx) if method == "CARD" else None
    return Tender(None, method, status, abs(amount), card, None)


def method_of(element: Element) -> str:
    tender_type = (attr(element, "TenderType") or "").rsplit(":", 1)[-1].lower()  # DKT:CreditCard
    for needle, method in _TENDER_METHODS:
        if needle in tender_type:
            return method
    for detail in element:
        found = _TENDER_ELEMENTS.get(local(detail.tag))
        if found is not None:
            return found
    return "OTHER"


def change(element: Element, method: str | None, ctx: Reader, where: str) -> tuple[str, Decimal]:
    """Change handed back: (method it was given in, amount); cash unless stated."""
    amount = ctx.amount(child(element, "Amount"), f"{where}: TenderChange/Amount") or Decimal(0)
    if method is None:
        method = method_of(element) if attr(element, "TenderType") else "CASH"
    return method, abs(amount)


def _card(element: Element, ctx: Reader) -> dict[str, Any] | None:
    """Brand, last four and token, or None without four trailing digits (the HTTP
    channel's shape: ``last_four`` is always four digits). A full PAN is read only to take
    those and is counted."""
    card = child(element, "CreditDebit", "DebitCard", "CreditCard") or element
    # Read as the guard reads it: any separators, any Unicode digits ('４１１１.１１１１...').
    # The first number written that shows four trailing digits (Xstore writes an encrypted
    # PrimaryAccountNumber beside its MaskedCardNumber), else the first written at all.
    written_all = [
        _unwrapped(text(found))
        for holder in (card, element)
        for name in _CARD_NUMBERS
        for found in children(holder, name)
        if text(found)
    ]
    shows = [w for w in written_all if _FOUR_DIGITS_AT_END.search(w)]
    written = (shows or written_all or [""])[0]
    pan = digits_of(written)
    if len(pan) >= 12 or is_pan(pan):
        ctx.masked_pans += 1
    if not _FOUR_DIGITS_AT_END.search(written) or not pan.strip("0"):
        return None  # "", "***123", "XXXX", Xstore's "0000000000" of a timed-out card
    brand = (
        _brand_name(attr(card, "CardBrand") or attr(element, "CardBrand"))
        or _brand_name(child_text(card, "CardBrand", "Brand", "CreditCardCompanyCode"))
        or _brand_name(attr(card, "CardType"))
        or _brand_name(attr(card, "TypeCode"))  # Wincor, Decathlon: CreditDebit TypeCode="Visa"
        or _brand_name(child_text(card, "CardType", "CardName", "IssuerName"))
        or brand_of(digits_of(child_text(card, "IssuerIdentificationNumber") or ""))
        or brand_of(pan if written[:1].isdecimal() else None)
        or _brand_name(_attr_of(element, "ReasonCode", "Description"))
        or _brand_name(attr(element, "TenderType"))
        or "UNKNOWN"
    )
    token = child_text(card, "Token", "CardToken", "PaymentToken", "TokenValue")
    return {"brand": brand, "last_four": pan[-4:], "token": ctx.clean(token)}


def _unwrapped(written: str | None) -> str:
    """A card number as written; some vendors base64 the masked number (the Swedish digital
    receipt: ``KioqKioqKioqKioqNDA0NA==`` is ``************4044``)."""
    if not written:
        return ""
    if _BASE64.fullmatch(written) and not written.isdigit():
        try:
            decoded = base64.b64decode(written, validate=True).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            return written
        if _MASKED.fullmatch(decoded):
            return decoded
    return written


def _attr_of(element: Element, child_name: str, name: str) -> str | None:
    found = child(element, child_name)
    return None if found is None else attr(found, name)


def _brand_name(value: str | None) -> str | None:
    if not value:
        return None
    key = value.rsplit(":", 1)[-1].strip().lower()
    for pattern, brand in _BRANDS:
        if pattern.search(key):
            return brand
    return None
