"""Seeded, realistic store traffic: baskets with weighed goods, voided lines and returns,
bottle deposits on drinks (lines of money, not stock), loyalty customers, a payment mix
with the odd declined card, post-voids of sales rung up with the wrong tender, deliveries and
stock counts.

Everything comes from one ``random.Random``, so a seed decides a run exactly (event ids too).
Records are the Avro contracts' shapes: ``Decimal`` money, UTC datetimes with zones.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from typing import Any

from tillstream.simulate.catalog import CATALOG, DEPOSITS, Item
from tillstream.simulate.clock import StoreClock

log = logging.getLogger(__name__)

_CENT = Decimal("0.01")
_VAT = Decimal("0.07")
_BASKET = (1, 7)
"""Fewest and most different items in a basket."""
_PIECES = ((1, 2, 3, 6), (70, 20, 7, 3))
"""Pieces of an item a shopper takes, and how often."""
_WEIGHED_GRAMS = (150, 1800)
_LEAST = {True: Decimal("0.100"), False: Decimal(1)}
"""The least a shopper takes of what is left (weighed: kilograms; else pieces)."""
DELIVERY_SECONDS = 10.0
"""Seconds between two deliveries of a simulated store (the driver's schedule)."""
_COVER = 3
"""Deliveries' worth of expected sales a store stocks above the reorder point."""
_METHODS = (("CARD", 55), ("CASH", 30), ("MOBILE", 12), ("GIFT_CARD", 3))
_BRANDS = ("VISA", "MASTERCARD", "AMEX", "MAESTRO")


@dataclass
class Transaction:
    """One receipt: its sale and the payments made for it."""

    till: int
    sale: dict[str, Any]
    payments: list[dict[str, Any]] = field(default_factory=list)
    bad: bool = False
    """A deliberately invalid sale (a card number typed into a text field): the edge must
    refuse it."""

    @property
    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [("sale", self.sale), *(("payment", p) for p in self.payments)]

    @property
    def poslog_events(self) -> list[tuple[str, dict[str, Any]]]:
        """What a POSLog till records: the sale and the tenders that moved money (a declined
        card never reaches its transaction log)."""
        return [
            ("sale", self.sale),
            *(("payment", p) for p in self.payments if p["status"] in ("CAPTURED", "REFUNDED")),
        ]


class StoreTraffic:
    """The tills of one store."""

    def __init__(
        self,
        store_id: str,
        rng: random.Random,
        *,
        tills: int = 3,
        currency: str = "EUR",
        customers: int = 300,
        bad_ratio: float = 0.005,
        clock: StoreClock | None = None,
        receipts_per_second: float = 1.0,
        stock_limited: bool = True,
    ) -> None:
        """``receipts_per_second``: the store's expected pace, which sizes its stock (a store
        selling ten times faster keeps more on the shelf); ``stock_limited``: shoppers take
        only what the shelf has (False: anything, for benchmarks and fault runs that need
        baskets of a given shape rather than a believable store)."""
        self.store_id = store_id
        self.clock = clock or StoreClock()
        """The store's offset and business day, shared with its tills' shifts."""
        self.rng = rng
        self.tills = tills
        self.currency = currency
        self.customers = [f"C-{store_id}-{n:05d}" for n in range(1, customers + 1)]
        self.bad_ratio = bad_ratio
        self._receipts = [0] * tills
        self.stock_limited = stock_limited
        self.stocked: dict[str, Decimal] = {
            item.sku: stock_level(item, receipts_per_second) for item in CATALOG
        }
        """What each SKU is restocked to (its order-up-to level)."""
        self.on_hand: dict[str, Decimal] = dict(self.stocked)
        """What the store believes it has (it opens stocked), to sell only what is on the
        shelf and to order deliveries as a store manager would."""
        self.oversold = 0
        """Receipts that sold a unit the books say is gone: only when the whole store is
        sold out (never, with deliveries)."""

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def transaction(self, till: int, at: datetime) -> Transaction:
        """The next receipt of ``till`` (0-based), rung up at ``at`` (timezone-aware)."""
        rng = self.rng
        self._receipts[till] += 1
        lines: list[dict[str, Any]] = []
        last: list[dict[str, Any]] = []
        for item in rng.sample(CATALOG, rng.randint(*_BASKET)):
            quantity = self._take(item, self._quantity(item))
            if quantity is not None:  # sold out: the shopper goes without
                last = self._item_lines(len(lines) + 1, "SALE", item, quantity)
                lines += last
        if not lines:  # nothing wanted is on the shelf: the best-stocked item instead
            last = self._fallback()
            lines = list(last)  # a copy: voiding it below must not empty ``last`` too
        if rng.random() < 0.04:  # rung up by mistake, then voided (with its deposit)
            # Each voided line is followed by its VOID, as a till logs a voided line item.
            del lines[len(lines) - len(last) :]
            for line in last:
                lines.append(dict(line, line_number=len(lines) + 1))
                lines.append(dict(line, line_number=len(lines) + 1, kind="VOID"))
        if rng.random() < 0.05:  # something brought back (a drink with its empties)
            item = rng.choice(CATALOG)
            lines += self._item_lines(len(lines) + 1, "RETURN", item, self._quantity(item))
        sign = {"SALE": 1, "RETURN": -1, "VOID": -1}
        for line in lines:
            if line["stock_item"]:  # a deposit is not on the shelf
                self.on_hand[line["sku"]] -= sign[line["kind"]] * line["quantity"]
        gross = sum((ln["extended_amount"] * sign[ln["kind"]] for ln in lines), Decimal(0))
        tax = sum((ln["tax_amount"] * sign[ln["kind"]] for ln in lines), Decimal(0))
        loyal = rng.random() < 0.45
        sale = {
            "event_id": self._id(),
            "store_id": self.store_id,
            "terminal_id": f"T{till + 1:02d}",
            "receipt_number": f"{till + 1:02d}-{self._receipts[till]:06d}",
            "business_day": self.clock.day(at),
            "occurred_at": at,
            "utc_offset_minutes": self.clock.utc_offset_minutes,
            "cashier_id": f"op-{rng.randint(1, 12)}",
            "customer_id": rng.choice(self.customers) if loyal else None,
            "currency": self.currency,
            "lines": lines,
            "totals": {
                "gross_amount": gross,
                "discount_amount": Decimal(0),
                "tax_amount": tax,
                "net_amount": gross,
            },
        }
        tx = Transaction(till, sale, self._payments(sale, at))
        if rng.random() < self.bad_ratio:
            sale["cashier_id"] = "4111 1111 1111 1111"  # the PAN guard must refuse this
            tx.bad = True
        return tx

    def skip_number(self, till: int) -> None:
        """The next receipt number of ``till`` (0-based) is used up without a receipt: one
        the till printed that never reaches head office (a gap the sales audit must find)."""
        self._receipts[till] += 1

    def post_void(self, tx: Transaction, at: datetime) -> dict[str, Any]:
        """A ``sale_void`` of ``tx`` (a purchase rung up before) on its till, at ``at`` or a
        second after its last payment if that is later: the till takes its next number for
        it, the goods go back on the shelf."""
        at = max([at, *(p["occurred_at"] + timedelta(seconds=1) for p in tx.payments)])
        self._receipts[tx.till] += 1
        sale = tx.sale
        sign = {"SALE": 1, "RETURN": -1, "VOID": -1}
        for line in sale["lines"]:
            if line["stock_item"]:
                self.on_hand[line["sku"]] += sign[line["kind"]] * line["quantity"]
        net: Decimal = sale["totals"]["net_amount"]
        return {
            "event_id": self._id(),
            "voided_event_id": sale["event_id"],
            "store_id": self.store_id,
            "terminal_id": sale["terminal_id"],
            "receipt_number": f"{tx.till + 1:02d}-{self._receipts[tx.till]:06d}",
            "voided_terminal_id": sale["terminal_id"],
            "voided_receipt_number": sale["receipt_number"],
            "business_day": self.clock.day(at),
            "occurred_at": at,
            "utc_offset_minutes": self.clock.utc_offset_minutes,
            "cashier_id": sale["cashier_id"],
            "reason": "WRONG_TENDER",
            "currency": sale["currency"] if net >= 0 else None,
            "voided_amount": net if net >= 0 else None,
            "source": "api",
        }

    def _quantity(self, item: Item) -> Decimal:
        """How much of ``item`` a shopper takes: weighed on the scale, or pieces."""
        if item.weighed:
            return Decimal(self.rng.randint(*_WEIGHED_GRAMS)) / 1000
        return Decimal(self.rng.choices(*_PIECES)[0])

    def _take(self, item: Item, wanted: Decimal) -> Decimal | None:
        """What the shelf gives of ``wanted``: all of it, what is left, or nothing (None)."""
        have = self.on_hand[item.sku]
        if not self.stock_limited or wanted <= have:
            return wanted
        left = have.quantize(Decimal("0.001") if item.weighed else Decimal(1), ROUND_DOWN)
        return left if left >= _LEAST[item.weighed] else None

    def _fallback(self) -> list[dict[str, Any]]:
        """One unit of the best-stocked item; below zero only if the whole store is sold
        out (counted in :attr:`oversold`)."""
        item = max(CATALOG, key=lambda i: self.on_hand[i.sku])
        least = _LEAST[item.weighed]
        if self.on_hand[item.sku] < least:
            self.oversold += 1
            log.warning("store %s is sold out: a receipt sells below zero", self.store_id)
        return self._item_lines(1, "SALE", item, least)

    def _item_lines(
        self, number: int, kind: str, item: Item, quantity: Decimal
    ) -> list[dict[str, Any]]:
        """The line of ``item``, then its bottle deposit if it has one."""
        line = self._line(number, kind, item, quantity)
        if not item.bottles:
            return [line]
        deposit = DEPOSITS[item.deposit]
        bottles = line["quantity"] * item.bottles
        extended = (bottles * deposit.price).quantize(_CENT)
        return [
            line,
            {
                "line_number": number + 1,
                "kind": kind,
                "sku": deposit.sku,
                "gtin": None,
                "description": deposit.description,
                "quantity": bottles,
                "unit_of_measure": "EA",
                "unit_price": deposit.price,
                "discount_amount": Decimal(0),
                "tax_amount": (extended * _VAT / (1 + _VAT)).quantize(_CENT),
                "extended_amount": extended,
                "stock_item": False,
            },
        ]

    def _line(self, number: int, kind: str, item: Item, quantity: Decimal) -> dict[str, Any]:
        unit = "KG" if item.weighed else "EA"
        extended = (quantity * item.price).quantize(_CENT)
        return {
            "line_number": number,
            "kind": kind,
            "sku": item.sku,
            "gtin": item.gtin,
            "description": item.description,
            "quantity": quantity,
            "unit_of_measure": unit,
            "unit_price": item.price,
            "discount_amount": Decimal(0),
            "tax_amount": (extended * _VAT / (1 + _VAT)).quantize(_CENT),
            "extended_amount": extended,
            "stock_item": True,
        }

    def _payments(self, sale: dict[str, Any], at: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        net: Decimal = sale["totals"]["net_amount"]
        if net == 0:
            return []
        method = rng.choices([m for m, _ in _METHODS], weights=[w for _, w in _METHODS])[0]
        payments = []
        if method == "CARD" and rng.random() < 0.02:  # declined, then paid in cash
            payments.append(self._payment(sale, at, "CARD", "DECLINED", abs(net)))
            method = "CASH"
        status = "CAPTURED" if net > 0 else "REFUNDED"
        payments.append(self._payment(sale, at, method, status, abs(net)))
        return payments

    def _payment(
        self, sale: dict[str, Any], at: datetime, method: str, status: str, amount: Decimal
    ) -> dict[str, Any]:
        rng = self.rng
        card = None
        if method == "CARD":
            card = {
                "brand": rng.choice(_BRANDS),
                "last_four": f"{rng.randint(0, 9999):04d}",
                "token": f"tok_{rng.getrandbits(48):012x}",
            }
        return {
            "event_id": self._id(),
            "sale_event_id": sale["event_id"],
            "store_id": self.store_id,
            "terminal_id": sale["terminal_id"],
            "occurred_at": at + timedelta(seconds=rng.randint(5, 40)),
            "method": method,
            "status": status,
            "amount": amount,
            "currency": sale["currency"],
            "card": card,
        }

    def opening_count(self, at: datetime) -> list[dict[str, Any]]:
        """A shelf count of every SKU when the store opens, stocked."""
        moves = []
        for item in CATALOG:
            self.on_hand[item.sku] = self.stocked[item.sku]
            moves.append(self._movement(item, "COUNT", self.on_hand[item.sku], "COUNTED", at))
        return moves

    def opening_delivery(self, at: datetime) -> list[dict[str, Any]]:
        """Opening stock as a delivery (``CHANGE``) rather than a count: its effect does not
        depend on the order in which it and the first sales are applied."""
        moves = []
        for item in CATALOG:
            self.on_hand[item.sku] = self.stocked[item.sku]
            moves.append(
                self._movement(item, "CHANGE", self.on_hand[item.sku], "RECEIVED", at, "OPENING")
            )
        return moves

    def stock_take(self, at: datetime, skus: int = 3) -> list[dict[str, Any]]:
        """A shelf count of a few SKUs taken at ``at``: what the store believes it has, less
        the odd unit gone missing (never below zero). Callers post it a little later, as a
        counting session ends, so sales rung up meanwhile are read before it."""
        rng = self.rng
        reference = f"CNT-{self.store_id}-{rng.randint(10000, 99999)}"
        moves = []
        for item in rng.sample(CATALOG, skus):
            missing = Decimal(rng.choice((0, 0, 0, 1, 2)))
            if item.weighed:
                missing = missing * Decimal(rng.randint(50, 400)) / 1000
            counted = max(Decimal(0), self.on_hand[item.sku] - missing)
            self.on_hand[item.sku] = counted
            moves.append(self._movement(item, "COUNT", counted, "COUNTED", at, reference))
        return moves

    def delivery(self, at: datetime) -> list[dict[str, Any]]:
        """Cases of the SKUs that sold more than their reorder point since they were last
        stocked, brought back to their stock level (:func:`stock_level`); now and then an
        item misses the truck, so stock does run low, now and then."""
        rng = self.rng
        reference = f"DN-{self.store_id}-{rng.randint(10000, 99999)}"
        moves = []
        for item in CATALOG:
            short = self.stocked[item.sku] - self.on_hand[item.sku]
            if short <= item.reorder_point or rng.random() < 0.15:
                continue
            case = Decimal(5 if item.weighed else 12)
            quantity = -(-short // case) * case  # whole cases, rounded up
            self.on_hand[item.sku] += quantity
            moves.append(self._movement(item, "CHANGE", quantity, "RECEIVED", at, reference))
        return moves

    def _movement(
        self,
        item: Item,
        kind: str,
        quantity: Decimal,
        reason: str,
        at: datetime,
        reference: str | None = None,
    ) -> dict[str, Any]:
        return {
            "event_id": self._id(),
            "store_id": self.store_id,
            "sku": item.sku,
            "gtin": item.gtin,
            "quantity_type": kind,
            "quantity": quantity,
            "unit_of_measure": "KG" if item.weighed else "EA",
            "reason": reason,
            "reference": reference,
            "occurred_at": at,
            "source": "api",
        }


def stock_level(item: Item, receipts_per_second: float) -> Decimal:
    """What a store keeps of ``item``: three times its reorder point, or more for a store
    that sells faster: the reorder point plus :data:`_COVER` deliveries' worth of expected
    sales, so one truck missed does not take it below the reorder point."""
    share = Decimal(sum(_BASKET)) / 2 / len(CATALOG)  # of the baskets that hold the item
    if item.weighed:
        each = Decimal(sum(_WEIGHED_GRAMS)) / 2 / 1000
    else:
        pieces, weights = _PIECES
        each = Decimal(sum(p * w for p, w in zip(pieces, weights, strict=True))) / sum(weights)
    per_delivery = Decimal(str(receipts_per_second)) * Decimal(str(DELIVERY_SECONDS)) * share * each
    cover = item.reorder_point + _COVER * per_delivery
    return max(item.reorder_point * 3, cover.to_integral_value(rounding=ROUND_CEILING))
