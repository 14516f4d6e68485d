"""Turning sale and stock movement records into stock movements (validated, in thousandths).

- Sale lines move stock and demand by the meaning of their kind (``rules.LINE_KINDS``):
  ``SALE`` takes ``quantity`` off stock, ``RETURN`` puts it back, ``VOID`` reverses an
  earlier line of the same receipt, so it puts its quantity back as well. A line that is
  not a stock item (a deposit, fee, gift card, coupon) moves nothing and has no ledger row.
- Stock movements: ``CHANGE`` adds the signed quantity (ledger kind: the reason, lowercased);
  ``COUNT`` sets stock on hand to the counted quantity as of its ``occurred_at`` (ledger kind
  ``counted``, recording the adjustment; see ``consumers/tillstream_consumers/erp/stock.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tillstream.core import rules
from tillstream.core.events import Sale, StockMovement
from tillstream_consumers.runtime.api import QTY_SCALE, PermanentError, Record, to_units


@dataclass(frozen=True, slots=True)
class Movement:
    line_no: int
    """Receipt line number; 0 for a stock movement."""
    sku: str
    kind: str
    """Ledger kind: ``sale``, ``return``, ``void``, ``counted`` or the reason lowercased."""
    quantity: int
    """Thousandths: the signed change, or for a count the counted quantity."""
    is_count: bool = False
    sold: int = 0
    """Thousandths this line adds to the units sold on the event's day."""


@dataclass(frozen=True, slots=True)
class StockEvent:
    event_id: str
    store_id: str
    occurred_at: datetime
    day: date
    """The sale's business day, or the movement's (UTC) date: the day velocity counts on."""
    reference: str | None
    movements: tuple[Movement, ...]
    reverses: bool = False
    """A post-void taking back a sale (``post_voids.py``): it may re-arm a reorder alert but
    never raises one."""


def stock_event(record: Record) -> StockEvent:
    """The stock effect of one decoded record; PermanentError if it cannot have one."""
    if record.event == "sale":
        return _sale(record.sale())
    if record.event == "stock_movement":
        return _stock_movement(record.stock_movement())
    raise PermanentError(f"unexpected event {record.event!r} on {record.topic}")


def _sale(value: Sale) -> StockEvent:
    # The core rules (line numbers once each, positive quantities) were checked by the
    # runtime before apply (runtime/validity.py): only what a line moves is worked out here.
    movements = []
    for line in value["lines"]:
        n = int(line["line_number"])
        where = f"sale {value['event_id']} line {n}"
        kind = line["kind"]
        meaning = rules.LINE_KINDS.get(kind)
        if meaning is None:
            raise PermanentError(
                f"{where}: kind {kind!r} is not one of {', '.join(rules.LINE_KINDS)}"
            )
        quantity = _quantity(line["quantity"], f"{where}: quantity")
        if not rules.is_stock_item(line):
            continue  # money only: a deposit or fee is neither stock nor demand
        movements.append(
            Movement(
                line_no=n,
                sku=line["sku"],
                kind=kind.lower(),
                quantity=meaning.stock * quantity,
                sold=meaning.demand * quantity,
            )
        )
    return StockEvent(
        event_id=str(value["event_id"]),
        store_id=value["store_id"],
        occurred_at=value["occurred_at"],
        day=value["business_day"],
        reference=f"{value['terminal_id']}/{value['receipt_number']}",
        movements=tuple(movements),
    )


def _stock_movement(value: StockMovement) -> StockEvent:
    where = f"stock movement {value['event_id']}"
    quantity = _quantity(value["quantity"], f"{where}: quantity")
    quantity_type = value["quantity_type"]
    if quantity_type == "CHANGE":
        movement = Movement(0, value["sku"], str(value["reason"]).lower(), quantity)
    elif quantity_type == "COUNT":  # never negative: a core rule, checked before apply
        movement = Movement(0, value["sku"], "counted", quantity, is_count=True)
    else:
        raise PermanentError(
            f"{where}: quantity_type {quantity_type!r} is not one of CHANGE, COUNT"
        )
    occurred_at: datetime = value["occurred_at"]
    return StockEvent(
        event_id=str(value["event_id"]),
        store_id=value["store_id"],
        occurred_at=occurred_at,
        day=occurred_at.date(),
        reference=value.get("reference"),
        movements=(movement,),
    )


def _quantity(value: Any, what: str) -> int:
    try:
        quantity = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise PermanentError(f"{what} {value!r} is not a decimal") from None
    if not quantity.is_finite():
        raise PermanentError(f"{what} {value!r} is not a finite decimal")
    units = to_units(quantity, QTY_SCALE)
    if Decimal(units).scaleb(-QTY_SCALE) != quantity:
        raise PermanentError(f"{what} {value} has more than {QTY_SCALE} decimal places")
    return units
