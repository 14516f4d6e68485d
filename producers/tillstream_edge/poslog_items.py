"""POSLog line items: sales, returns, voids, discounts, loyalty rewards and taxes.

Everything personal or card-like is dropped or masked here, at the point where it is read:
only ``ParseContext.clean`` text (PANs masked) and the last four digits of a card leave (tenders
and cards: ``tillstream_edge.poslog_tenders``).

How vendor lines become sale lines (docs/edge.md, "POSLog elements read"):

- A ``LineItem`` with ``VoidFlag="true"`` is a line rung up and then cancelled on the same
  receipt: it becomes a SALE line followed by the VOID line cancelling it, as the HTTP channel
  sends it, so the totals add up and stock nets to zero. A voided return line took nothing
  back and is left out. A voided sale whose ``ItemLink`` names an earlier sale line of the
  same item is the cancellation of that line: the VOID line alone.
- Receipt-level money off is a discount: ARTS ``Discount`` and ``RetailPriceModifier`` line
  items and NCR ``LoyaltyReward`` line items with a negative amount.
- Deposits, fees, gift cards, coupons and services are not stock (``Line.stock_item``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.identifiers import control_problem, is_gtin
from tillstream.core.pan import find_pans, mask_pans
from tillstream.core.rules import LINE_SIGNS
from tillstream_edge.poslog_tenders import (
    Tender,
    change,
    is_change,
    method_of,
    tender,
    tender_amount,
)
from tillstream_edge.poslog_units import ONE, unit_of
from tillstream_edge.poslog_xml import (
    PoslogError,
    attr,
    child,
    child_text,
    children,
    decimal,
    flag,
    is_true,
    local,
    mark_read,
    text,
)

__all__ = [
    "REWARDS",
    "Choices",
    "Items",
    "Line",
    "ParseContext",
    "Tender",
    "money_off_items",
    "read_items",
]

_AMOUNT = Decimal("0.0001")
_QUANTITY = Decimal("0.001")
_AMOUNT_LIMIT = Decimal(10) ** 14  # Avro decimal(18, 4)
# C0, DEL, C1 and the Unicode line separators: what control_problem refuses.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_QUANTITY_LIMIT = Decimal(10) ** 12  # Avro decimal(15, 3)
_ZERO = Decimal("0.0000")
_NO_CURRENCY = "XXX"  # ISO 4217 "no currency"; roqqio writes it on zero discounts

# Where vendors write an item's description; never ItemID/@Name (some write "SKU" there).
_DESCRIPTIONS = ("Description", "ItemDescription", "POSItemDescription", "ShortDescription")
# ARTS/vendor item types that are money, not goods: they never move stock.
_NOT_STOCK_TYPES = frozenset(
    {
        "deposit",
        "depositrefund",
        "depositreturn",
        "bottledeposit",
        "fee",
        "service",
        "giftcard",
        "giftcertificate",
        "storedvalue",
        "coupon",
        "voucher",
        "nonmerchandise",
        "nonstock",
    }
)
# Vendor line-type elements (roqqio fu:LineType, Wincor ItemCategory...) and descriptions
# that name a deposit ("BOTTLE REFUND", "Pfand", "Leergut", "consigne"), fee or gift card.
_TYPE_ELEMENTS = ("LineType", "ItemCategory", "ItemTypeCode", "SalesMode")
_NOT_STOCK_WORDS = re.compile(
    r"deposit|bottle\s*(refund|return)|pfand|leergut|consigne|statiegeld|giftcard|gift\s+card"
    r"|_fee\b|^fee\b|coupon|^rounding$|avrundning|rundung",
    re.IGNORECASE,
)


@dataclass
class ParseContext:
    """Per-transaction state: where we are (for errors), the currency, PANs masked."""

    currency: str
    masked_pans: int = 0

    def clean(self, value: str | None) -> str | None:
        """Free text as it may leave: card numbers masked (and counted), control characters
        (a line break in a pretty-printed export, a tab) as one space each."""
        if value is None:
            return None
        if control_problem(value) is not None:
            value = " ".join(_CONTROLS.sub(" ", value).split())
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
            raise PoslogError(f"{what} is in {{}}, the transaction in {self.currency}", currency)
        return money(decimal(raw, what), what)


def money(value: Decimal, what: str) -> Decimal:
    if abs(value) >= _AMOUNT_LIMIT:
        raise PoslogError(f"{what}: {{}} is too large", value)
    return value.quantize(_AMOUNT, rounding=ROUND_HALF_EVEN)


def quantity(value: Decimal, what: str) -> Decimal:
    if abs(value) >= _QUANTITY_LIMIT:
        raise PoslogError(f"{what}: {{}} is too large", value)
    return value.quantize(_QUANTITY, rounding=ROUND_HALF_EVEN)


@dataclass
class Line:
    """A sale/return line before numbering; ``seq`` is the POSLog LineItem sequence."""

    seq: str | None
    record: dict[str, Any]
    tax_given: bool
    stock_item: bool = True
    """False for deposits, fees, gift cards, coupons, services: money, not goods."""
    voided: bool = False
    """One of the SALE + VOID pair of a voided LineItem."""
    negative: bool = False
    """A ``Sale`` written with a negative quantity or amount (not a ``Return`` element)."""


REWARDS = -1
"""The loyalty rewards' place in ``Choices.in_lines``."""


@dataclass(frozen=True, slots=True)
class Choices:
    """How to read what vendors mean differently (``tillstream_edge.poslog_dialect``)."""

    in_lines: frozenset[int] = frozenset()
    """Receipt-level money off already inside the lines' amounts (a summary, not more off):
    the positions, in document order, of ``Discount`` / ``RetailPriceModifier`` line items,
    and :data:`REWARDS` for the loyalty rewards."""
    line_discount_per_unit: bool = False
    """A line's ``DiscountAmount`` is per unit."""
    recycling_in_lines: bool = False
    """A line's ``RecyclingAmount`` (a deposit, Swedish digital receipts) is inside its
    ``ExtendedAmount`` and again a deposit line of its own."""


@dataclass(frozen=True, slots=True)
class Change:
    """Change handed back: from ``tender`` when it was written inside one, else from the
    last captured tender of ``method`` (or of any method)."""

    method: str
    amount: Decimal
    tender: Tender | None = None


@dataclass
class Items:
    """What a RetailTransaction's line items add up to."""

    lines: list[Line] = field(default_factory=list)
    tenders: list[Tender] = field(default_factory=list)
    """Net of the change handed back from them."""
    tax_lines: Decimal | None = None  # sum of separate Tax line items, if any
    discount: Decimal = _ZERO  # receipt-level Discount, price modifier and reward line items
    change: list[Change] = field(default_factory=list)


@dataclass
class _Reward:
    amount: Decimal
    detailed: bool
    summary_only: bool


_READ_IN_LINE_ITEMS = frozenset(
    {"Sale", "Return", "Tender", "TenderChange", "Tax", "Discount", "RetailPriceModifier",
     "LoyaltyReward", "SequenceNumber", "VoidFlag", "CancelFlag", "DateTime"}
)  # fmt: skip


def read_items(retail: Element, ctx: ParseContext, choices: Choices = Choices()) -> Items:
    """Read every LineItem; unknown ones (vendor extensions) are ignored."""
    items = Items()
    taxes: list[tuple[Element, Decimal, Line | None]] = []
    rewards: list[_Reward] = []
    money_off = 0  # receipt-level money-off items read so far
    for line_item in _in_sequence(list(children(retail, "LineItem"))):
        seq = child_text(line_item, "SequenceNumber")
        voided = flag(line_item, "VoidFlag") or flag(line_item, "CancelFlag")
        where = f"line item {seq}" if seq else "line item"
        owner: Line | None = None  # the sale/return line of this LineItem, if any
        for element in line_item:
            name = local(element.tag)
            if name in _READ_IN_LINE_ITEMS:
                mark_read(element)
            if name in ("Sale", "Return"):
                owner = _line(element, line_item, seq, ctx, where, choices)
                if not voided:
                    items.lines.append(owner)
                elif _cancels(element, owner, items.lines):
                    owner.record["kind"] = "VOID"
                    items.lines.append(owner)
                else:
                    items.lines += _voided(owner)
            elif name == "Tender":
                _read_tender(element, line_item, seq, voided, ctx, items)
            elif name == "TenderChange" and not voided:
                inner = child(element, "TenderChange")
                method, amount = change(inner if inner is not None else element, None, ctx, where)
                items.change.append(Change(method, amount))
            elif name == "Tax" and not voided:
                tax = ctx.amount(child(element, "Amount"), f"{where}: Tax/Amount")
                if tax is None:
                    continue  # Xstore: a Tax line item naming the rate, its amounts in lines
                if attr(element, "TypeCode") == "Refund" and tax > 0:
                    tax = -tax
                taxes.append((element, tax, owner))
            elif name in ("Discount", "RetailPriceModifier") and not voided:
                if money_off not in choices.in_lines:
                    items.discount += _money_off(element, ctx, f"{where}: {name}/Amount")
                money_off += 1
            elif name == "LoyaltyReward" and not voided:
                rewards += _reward(element, ctx, where)
    if taxes:
        items.tax_lines = sum((amount for _, amount, _ in taxes), _ZERO)
        _attribute_taxes(items.lines, taxes)
    if REWARDS not in choices.in_lines:
        items.discount += _rewards_off(rewards)
    for line in items.lines:  # deposits, fees, gift cards: money, not goods (sale v2)
        line.record["stock_item"] = line.stock_item
    _apply_change(items)
    return items


def money_off_items(retail: Element) -> int:
    """How many receipt-level money-off line items a transaction has (``Choices.in_lines``)."""
    return sum(
        1
        for line_item in children(retail, "LineItem")
        if not (flag(line_item, "VoidFlag") or flag(line_item, "CancelFlag"))
        for element in line_item
        if local(element.tag) in ("Discount", "RetailPriceModifier")
    )


def _apply_change(items: Items) -> None:
    """Net change handed back into the tender it was given from, so payments add up to what
    the store kept (a 27.00 cash tender with 0.01 change is a 26.99 cash payment; a 20.00
    refund tender holding 4.52 change paid 15.48 back). In a sale (its lines come to zero or
    more), a cash refund line beside cash taken in is the change (Wincor writes it so)."""
    gross = sum((line.record["extended_amount"] * LINE_SIGNS[line.record["kind"]]
                 for line in items.lines), _ZERO)  # fmt: skip
    if gross >= 0:
        for refund in [t for t in items.tenders if t.status == "REFUNDED" and t.method == "CASH"]:
            taken = [t for t in items.tenders if t.status == "CAPTURED" and t.method == "CASH"]
            if taken and max(t.amount for t in taken) >= refund.amount:
                items.tenders.remove(refund)
                items.change.append(Change("CASH", refund.amount))
    for given in items.change:
        if not given.amount:
            continue
        target = given.tender
        if target is None:
            captured = [t for t in items.tenders if t.status == "CAPTURED"]
            same = [t for t in captured if t.method == given.method]
            if not same and given.method == "CASH" and captured:
                # Cash handed out with no cash taken in: cashback on a card, change of a
                # voucher. It leaves the drawer, so it is cash paid out, not less on the card.
                items.tenders.append(Tender(None, "CASH", "REFUNDED", given.amount, None, None))
                continue
            candidates = same or captured
            target = candidates[-1] if candidates else None
        if target is None or target.amount < given.amount:
            raise PoslogError("change of {} exceeds the tender it is given from", given.amount)
        target.amount -= given.amount


def _cancels(element: Element, line: Line, earlier: list[Line]) -> bool:
    """A voided ``Sale`` whose ``ItemLink`` names an earlier sale line of the same item is
    the cancellation of that line (Wincor TP.net writes it so, with ``CreateRefNumber``):
    the VOID line alone, the line it cancels being a line of its own."""
    link = child_text(element, "ItemLink")
    return line.record["kind"] == "SALE" and any(
        other.seq == link
        and not other.voided
        and other.record["kind"] == "SALE"
        and other.record["sku"] == line.record["sku"]
        for other in earlier
    )


def _voided(line: Line) -> list[Line]:
    """A voided LineItem: the SALE line and the VOID line cancelling it (a voided return
    took nothing back: no line). NCR writes it the other way: the sale rung up stays a line
    of its own, and the voided LineItem is the cancellation, a Sale of negative quantity
    and amount: that is the VOID line alone."""
    if line.negative:
        line.record["kind"] = "VOID"
        return [line]
    if line.record["kind"] != "SALE":
        return []
    line.voided = True
    void = Line(line.seq, {**line.record, "kind": "VOID"}, line.tax_given, line.stock_item, True)
    return [line, void]


def _read_tender(
    element: Element,
    line_item: Element,
    seq: str | None,
    voided: bool,
    ctx: ParseContext,
    items: Items,
) -> None:
    where = f"line item {seq}" if seq else "line item"
    rounding = child(element, "Rounding")
    if rounding is not None and child(element, "Amount") is None:
        # Visma: cash rounded to whole kronor, the difference a tender line of its own; up
        # (the customer paid more than due) is money back, down money in.
        amount = abs(ctx.amount(rounding, f"{where}: Tender/Rounding") or _ZERO)
        up = (attr(rounding, "RoundingDirection") or "").lower() == "up"
        status = "VOIDED" if voided else ("REFUNDED" if up else "CAPTURED")
        items.tenders.append(Tender(seq, "OTHER", status, amount, None, None))
        return
    amount = tender_amount(element, ctx, where)
    inner = child(element, "TenderChange")
    if is_change(element, amount):  # change logged as a tender line of its own, no refund
        if not voided:
            given = change(inner, None, ctx, where)[1] if inner is not None else _ZERO
            items.change.append(Change(method_of(element), given or abs(amount)))
        return
    paid = tender(element, amount, voided, ctx)
    paid.seq, paid.at = seq, child(line_item, "DateTime")
    items.tenders.append(paid)
    if inner is not None and not voided:
        method, given = change(inner, paid.method, ctx, where)
        items.change.append(Change(method, given, paid))


def _money_off(element: Element, ctx: ParseContext, what: str) -> Decimal:
    """A receipt-level discount or price modifier; a surcharge (Action="Add") is not one."""
    amount_el = child(element, "Amount")
    if attr(amount_el if amount_el is not None else element, "Action") == "Add":
        return _ZERO
    return abs(ctx.amount(amount_el, what) or _ZERO)


def _modifier_off(
    modifier: Element,
    qty: Decimal,
    regular: Decimal | None,
    ctx: ParseContext,
    where: str,
    choices: Choices,
) -> Decimal:
    """A price modifier in a line, as money off the line: ``Action="Replace"`` gives the new
    unit price (off: the previous price less the new one, per unit), ``Subtract`` the money
    off, a ``Percent`` alone a share of the line; a surcharge (``Add``) is none."""
    what = f"{where}: RetailPriceModifier"
    amount_el = child(modifier, "Amount")
    action = attr(amount_el if amount_el is not None else modifier, "Action")
    if action == "Replace":
        new = ctx.amount(amount_el, f"{what}/Amount")
        previous = ctx.amount(child(modifier, "PreviousPrice"), f"{what}/PreviousPrice")
        previous = previous if previous is not None else regular
        if new is None or previous is None:
            raise PoslogError(f"{what}: a Replace needs the new Amount and a PreviousPrice")
        return money(max(previous - new, _ZERO) * qty, f"{what}/Amount")
    if amount_el is None and (percent := child(modifier, "Percent")) is not None:
        share = decimal(text(percent) or "0", f"{what}/Percent")
        base = (regular or _ZERO) * qty
        return money(abs(base * share / 100), f"{what}/Percent")
    off = _money_off(modifier, ctx, f"{what}/Amount")
    return money(off * qty, f"{what}/Amount") if choices.line_discount_per_unit else off


def _reward(element: Element, ctx: ParseContext, where: str) -> list[_Reward]:
    """An NCR loyalty reward: money off when its category is monetary (or not given) and its
    amount negative; positive amounts are points or offers granted, not money."""
    category = child_text(element, "RewardCategory")
    if category is not None and category.lower() != "monetary":
        return []
    amount_el = child(element, "ExtendedRewardAmount", "RewardAmount", "Amount")
    amount = ctx.amount(amount_el, f"{where}: LoyaltyReward amount") or _ZERO
    if amount >= 0:
        return []
    detailed = is_true(attr(element, "detailedData"))
    summary_only = is_true(attr(element, "summarizedActivity")) and not detailed
    return [_Reward(-amount, detailed, summary_only)]


def _rewards_off(rewards: list[_Reward]) -> Decimal:
    """NCR logs a reward once per item (detailedData) and again summarised for the receipt
    (summarizedActivity only): count the summary only when there is no detail."""
    detailed = any(r.detailed for r in rewards)
    return sum((r.amount for r in rewards if not (detailed and r.summary_only)), _ZERO)


def _in_sequence(line_items: list[Element]) -> list[Element]:
    """Sort by LineItem/SequenceNumber when every line has a numeric one, else keep order."""
    seqs = [child_text(li, "SequenceNumber") or "" for li in line_items]
    if not all(s.isascii() and s.isdigit() for s in seqs):
        return line_items
    # Numeric order without int(): isdigit() alone admits '²', int() refuses 4301+ digits.
    numbers = [s.lstrip("0") for s in seqs]
    ordered = sorted(zip(numbers, line_items, strict=True), key=lambda p: (len(p[0]), p[0]))
    return [li for _, li in ordered]


def _line(
    item: Element,
    line_item: Element,
    seq: str | None,
    ctx: ParseContext,
    where: str,
    choices: Choices,
) -> Line:
    name = local(item.tag)
    sku_text = child_text(item, "ItemID")
    identity = child(item, "POSIdentity")
    if sku_text is None and identity is not None:
        sku_text = child_text(identity, "POSItemID")
    described = child(item, "Item")
    if sku_text is None and described is not None:
        sku_text = child_text(described, "ItemNumber", "ItemID")
    service = child(item, "NonSKUItem")  # a service sold without an item (alterations)
    if sku_text is None and service is not None:
        sku_text = child_text(service, "ServiceItemTypeCode", "ItemID")
    if sku_text is None:
        raise PoslogError(
            f"{where}: {name} has no ItemID, POSIdentity/POSItemID, Item/ItemNumber or "
            "NonSKUItem/ServiceItemTypeCode"
        )
    qty_el = child(item, "Quantity")
    raw_qty = decimal(text(qty_el) or "1", f"{where}: Quantity")
    unit, factor = unit_of(qty_el, where)
    regular = ctx.amount(child(item, "RegularSalesUnitPrice"), f"{where}: RegularSalesUnitPrice")
    actual = ctx.amount(child(item, "ActualSalesUnitPrice"), f"{where}: ActualSalesUnitPrice")
    extended_el = child(item, "ExtendedAmount")
    extended = ctx.amount(extended_el, f"{where}: ExtendedAmount")
    if (
        extended is not None
        and extended_el is not None
        and attr(extended_el, "Action") == "Subtract"
    ):
        extended = -extended  # ARTS V6 amounts may carry their sign as an Action (a rounding line)
    is_return = name == "Return" or raw_qty < 0 or (extended is not None and extended < 0)
    qty = abs(raw_qty)
    discount = _ZERO
    for modifier in children(item, "RetailPriceModifier"):
        discount += _modifier_off(modifier, qty, regular, ctx, where, choices)
    if not discount:
        discount = abs(
            ctx.amount(child(item, "DiscountAmount"), f"{where}: DiscountAmount") or _ZERO
        )
        if choices.line_discount_per_unit:
            discount = money(discount * qty, f"{where}: DiscountAmount")
    # The unit price before discount: the regular price, else the actual (discounted) price
    # with the line's discount added back, else what the amount says.
    if regular is not None:
        price = abs(regular)
    elif actual is not None:
        price = abs(actual) + (money(discount / qty, f"{where}: unit price") if qty else _ZERO)
    elif extended is not None and qty:
        price = money((abs(extended) + discount) / qty, f"{where}: unit price")
    else:
        raise PoslogError(f"{where}: {name} has neither a unit price nor an ExtendedAmount")
    gross = money(qty * price, f"{where}: amount")
    if extended is None and actual is not None and regular is not None:
        amount = money(qty * abs(actual), f"{where}: amount")  # the price paid, per unit
        discount = max(discount, gross - amount)
    elif extended is None:
        amount = gross - discount
    elif discount and regular is not None and abs(extended) == gross:
        amount = abs(extended) - discount  # this vendor's ExtendedAmount is before discount
    else:
        amount = abs(extended)
    recycling = ctx.amount(child(item, "RecyclingAmount"), f"{where}: RecyclingAmount")
    if choices.recycling_in_lines and recycling:
        amount -= abs(recycling)  # the deposit, inside the item's amount and a line of its own
    if factor != ONE:  # pounds to kilograms...: the amount stays, quantity and price move
        qty, price = qty * factor, money(price / factor, f"{where}: unit price")
        if qty and not quantity(qty, f"{where}: Quantity"):
            raise PoslogError(f"{where}: Quantity is less than 0.001 {unit} once converted")
    tax_els = list(children(item, "Tax"))
    # Signed, then its size: a rounding adjustment (-1) lowers the line's tax; a return line
    # whose taxes a vendor writes negative has the same tax as written positive.
    tax = abs(
        sum(
            (ctx.amount(child(t, "Amount"), f"{where}: Tax/Amount") or _ZERO for t in tax_els),
            _ZERO,
        )
    )
    description = ctx.clean(child_text(item, *_DESCRIPTIONS))
    record = {
        "line_number": 0,  # numbered once the sale is assembled
        "kind": "RETURN" if is_return else "SALE",
        "sku": sku_text,
        "gtin": _gtin(item, sku_text, identity),
        "description": description,
        "quantity": quantity(qty, f"{where}: Quantity"),
        "unit_of_measure": unit,
        "unit_price": price,
        "discount_amount": discount,
        "tax_amount": tax,
        "extended_amount": amount,
    }
    stock = _is_stock(item, line_item, description)
    negative = name == "Sale" and is_return
    return Line(seq, record, tax_given=bool(tax_els), stock_item=stock, negative=negative)


def _is_stock(item: Element, line_item: Element, description: str | None) -> bool:
    """Goods that leave the shelf; deposits, fees, gift cards, coupons and services do not."""
    types = [attr(item, "ItemType"), attr(line_item, "ItemType"), attr(item, "TypeCode")]
    types += [child_text(item, name) for name in _TYPE_ELEMENTS]
    for value in types:
        if value and re.sub(r"[^a-z]", "", value.rsplit(":", 1)[-1].lower()) in _NOT_STOCK_TYPES:
            return False
        if value and _NOT_STOCK_WORDS.search(value):
            return False
    return not (description and _NOT_STOCK_WORDS.search(description))


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
    """Give a separate Tax line item's amount to the line it names, if it names one (never
    to a voided pair: its tax cancels out)."""
    by_seq = {line.seq: line for line in lines if line.seq is not None and not line.voided}
    for element, amount, owner in taxes:
        target = owner
        for ref in element.iter():
            name = local(ref.tag)
            if "LineItemSequenceNumber" in name or name.endswith("SequenceNumberReference"):
                target = by_seq.get(text(ref) or "")
                break
        if target is not None and not target.tax_given and not target.voided:
            target.record["tax_amount"] += abs(amount)
