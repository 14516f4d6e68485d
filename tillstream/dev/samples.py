"""Small, valid sample events of each type (demo, docs and tests), typed as the generated
``TypedDict`` of their event type (``tillstream.core.events``): a misspelt field is a type
error, and every parameter a test usually varies is a keyword (store, till, cashier,
customer, time, lines...)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast
from uuid import UUID

from tillstream.core.events import (
    LineKind,
    Payment,
    PaymentMethod,
    PaymentStatus,
    QuantityType,
    Sale,
    SaleLine,
    SaleTotals,
    SaleVoid,
    StockMovement,
    StockReason,
)
from tillstream.core.records import utcnow

_CENT = Decimal("0.01")
_VAT = Decimal("0.07")
_SIGN = {"SALE": 1, "RETURN": -1, "VOID": -1}  # a kind no rule knows counts as sold


def sample_line(
    sku: str = "SKU-MILK-1L",
    *,
    quantity: Decimal | int = 1,
    unit_price: Decimal | str = "1.19",
    kind: LineKind = "SALE",
    gtin: str | None = None,
    unit_of_measure: str = "EA",
    stock_item: bool = True,
    line_number: int = 1,
) -> SaleLine:
    """A receipt line: ``quantity`` x ``unit_price``, 7 % VAT included (``sample_sale``
    numbers its lines again in order)."""
    price = Decimal(unit_price)
    extended = (Decimal(quantity) * price).quantize(_CENT)
    return {
        "line_number": line_number,
        "kind": kind,
        "sku": sku,
        "gtin": gtin,
        "description": None,
        "quantity": Decimal(quantity),
        "unit_of_measure": unit_of_measure,
        "unit_price": price,
        "discount_amount": Decimal(0),
        "tax_amount": (extended * _VAT / (1 + _VAT)).quantize(_CENT),
        "extended_amount": extended,
        "stock_item": stock_item,
        "list_price": None,
    }


def _uuid_text(event_id: str | UUID) -> UUID:
    """A reference to another event's id, as tills and the codec take it: its text. Decoded,
    the codec gives a ``UUID`` (the ``TypedDict``'s type); the text goes in its place."""
    return cast(UUID, str(event_id))


def _default_lines() -> list[SaleLine]:
    return [
        sample_line("SKU-MILK-1L", quantity=2, unit_price="1.19", gtin="4006381333931"),
        sample_line("SKU-APPLES", quantity=Decimal("0.734"), unit_price="2.99",
                    unit_of_measure="KG"),
        sample_line("SKU-BREAD", quantity=1, unit_price="2.49", kind="RETURN"),
    ]  # fmt: skip


def sample_sale(
    store_id: str = "S001",
    *,
    at: datetime | None = None,
    customer: str | None = "C-1001",
    cashier: str | None = "op-7",
    terminal: str = "T01",
    receipt: str = "000123",
    lines: Sequence[SaleLine] | None = None,
    currency: str = "EUR",
    utc_offset_minutes: int = 60,
    business_day: date | None = None,
) -> Sale:
    """A completed sale at ``at`` (default now, UTC): by default two items sold and one
    returned; ``lines`` (see :func:`sample_line`) replace them, numbered in order, and the
    totals follow them. ``business_day`` defaults to the UTC date of ``at``."""
    at = at or utcnow()
    numbered = [
        SaleLine({**line, "line_number": n})
        for n, line in enumerate(lines if lines is not None else _default_lines(), start=1)
    ]
    return {
        "event_id": str(uuid.uuid4()),
        "store_id": store_id,
        "terminal_id": terminal,
        "receipt_number": receipt,
        "business_day": business_day or date(at.year, at.month, at.day),
        "occurred_at": at,
        "utc_offset_minutes": utc_offset_minutes,
        "cashier_id": cashier,
        "customer_id": customer,
        "currency": currency,
        "lines": numbered,
        "totals": _totals(numbered),
    }


def _totals(lines: Sequence[SaleLine]) -> SaleTotals:
    gross = sum((ln["extended_amount"] * _SIGN.get(ln["kind"], 1) for ln in lines), Decimal(0))
    tax = sum((ln["tax_amount"] * _SIGN.get(ln["kind"], 1) for ln in lines), Decimal(0))
    return {
        "gross_amount": gross,
        "discount_amount": Decimal(0),
        "tax_amount": tax,
        "net_amount": gross,
    }


def with_totals(sale: Sale) -> Sale:
    """``sale`` with totals made from its lines, as the totals rule reads them (tax included
    in prices, no receipt discount): for tests that change a sample's lines."""
    sale["totals"] = _totals(sale["lines"])
    return sale


def sale_worth(
    store_id: str, net: Decimal, *, at: datetime | None = None, customer: str | None = "C-1001"
) -> Sale:
    """A valid sale of one line whose net total is ``net``: a RETURN line when negative."""
    line = sample_line("SKU-MISC", unit_price=abs(net), kind="RETURN" if net < 0 else "SALE")
    return sample_sale(store_id, at=at, customer=customer, lines=[line])


def sample_payment(
    sale: Sale,
    *,
    method: PaymentMethod = "CARD",
    status: PaymentStatus = "CAPTURED",
    amount: Decimal | None = None,
    at: datetime | None = None,
) -> Payment:
    """A payment of ``sale`` on its till, 5 seconds after it (or at ``at``): by default its
    net amount, by card (brand, last four digits and a token: never a card number)."""
    return {
        "event_id": str(uuid.uuid4()),
        "sale_event_id": _uuid_text(sale["event_id"]),
        "store_id": sale["store_id"],
        "terminal_id": sale["terminal_id"],
        "occurred_at": at or sale["occurred_at"] + timedelta(seconds=5),
        "method": method,
        "status": status,
        "amount": sale["totals"]["net_amount"] if amount is None else amount,
        "currency": sale["currency"],
        "card": (
            {"brand": "VISA", "last_four": "4242", "token": "tok_demo_4242"}
            if method == "CARD"
            else None
        ),
    }


def sample_sale_void(
    sale: Sale,
    *,
    at: datetime | None = None,
    number: str | None = "000124",
    cashier: str | None = "sup-1",
) -> SaleVoid:
    """A post-void of ``sale``, on its till, with the void's own receipt ``number``, two
    minutes after it (or at ``at``)."""
    return {
        "event_id": str(uuid.uuid4()),
        "voided_event_id": _uuid_text(sale["event_id"]),
        "store_id": sale["store_id"],
        "terminal_id": sale["terminal_id"],
        "receipt_number": number,
        "voided_terminal_id": sale["terminal_id"],
        "voided_receipt_number": sale["receipt_number"],
        "business_day": sale["business_day"],
        "occurred_at": at or sale["occurred_at"] + timedelta(minutes=2),
        "utc_offset_minutes": sale["utc_offset_minutes"],
        "cashier_id": cashier,
        "reason": "WRONG_TENDER",
        "currency": sale["currency"],
        "voided_amount": abs(sale["totals"]["net_amount"]),
        "source": "api",
    }


def sample_stock_movement(
    store_id: str = "S001",
    *,
    at: datetime | None = None,
    sku: str = "SKU-MILK-1L",
    quantity: Decimal | int = 24,
    quantity_type: QuantityType = "CHANGE",
    reason: StockReason = "RECEIVED",
    unit_of_measure: str = "EA",
    gtin: str | None = "4006381333931",
    reference: str | None = "DN-2026-0042",
) -> StockMovement:
    """A stock movement: by default a delivery of 24 milk; ``quantity_type="COUNT"`` with
    ``reason="COUNTED"`` is a shelf count (the quantity then is what is on the shelf)."""
    return {
        "event_id": str(uuid.uuid4()),
        "store_id": store_id,
        "sku": sku,
        "gtin": gtin,
        "quantity_type": quantity_type,
        "quantity": Decimal(quantity),
        "unit_of_measure": unit_of_measure,
        "reason": reason,
        "reference": reference,
        "occurred_at": at or utcnow(),
        "source": "api",
    }


def sample_estate_report(
    store_id: str = "S001",
    *,
    at: datetime | None = None,
    tills: int = 3,
    devices: int = 2,
    heartbeat_seconds: int = 30,
    timezone: str = "Europe/Berlin",
    edge_id: str = "edge-0001",
) -> dict[str, Any]:
    """What an edge reports of itself on a heartbeat (``estate_report``): ``tills`` tills
    (T01, T02...) seen a minute ago, ``devices`` serial devices (scanners and scales, in
    turn) connected, nothing waiting in its outbox, nothing head office decided yet."""
    at = at or utcnow()
    started = at - timedelta(hours=6)
    return {
        "report_id": str(uuid.uuid4()),
        "store_id": store_id,
        "edge_id": edge_id,
        "sent_at": at,
        "reason": "HEARTBEAT",
        "heartbeat_seconds": heartbeat_seconds,
        "edge": {
            "version": "0.1.0",
            "timezone": timezone,
            "started_at": started,
            "clock_skew_ms": 12,
            "outbox_depth": 0,
            "outbox_unsent_bytes": 0,
            "oldest_unsent_at": None,
            "quarantine_depth": 0,
            "set_aside_open": 0,
            "masterdata_caught_up_at": at - timedelta(minutes=2),
            "disk_free_bytes": 40 * 1024**3,
            "last_publish_at": at - timedelta(seconds=4),
            "kafka_connected": True,
            "log_level": "INFO",
            "max_event_age_seconds": 30 * 86400,
            "max_future_seconds": 3600,
        },
        "devices": [_device(n, started) for n in range(1, devices + 1)],
        "tills": [
            {
                "till_id": f"T{n:02d}",
                "lifecycle": "ACTIVE",
                "last_seen_at": at - timedelta(minutes=1),
                "last_receipt": f"{n:02d}-{1000 + n:06d}",
                "software": "AcmePOS 7.4.2",
                "refused_while_suspended": 0,
                "status_at": at - timedelta(minutes=5),
                "conditions": [
                    {"code": "printer_paper", "state": "OK", "detail": None, "since": None},
                    {"code": "cash_drawer", "state": "OK", "detail": "closed", "since": None},
                ],
            }
            for n in range(1, tills + 1)
        ],
        "applied": [],
    }


def _device(n: int, started: datetime) -> dict[str, Any]:
    scale = n % 2 == 0
    return {
        "device_id": f"scale-{n}" if scale else f"scanner-{n}",
        "kind": "SCALE" if scale else "SCANNER",
        "protocol": "mt-sics" if scale else "scanner",
        "port": f"/dev/ttyUSB{n - 1}",
        "connected": True,
        "connected_since": started,
        "disconnected_since": None,
        "last_frame_at": started + timedelta(hours=5),
        "frames": 1200 + n,
        "communication_errors": 0,
        "model": "XS6001S" if scale else None,
        "firmware": "3.41" if scale else None,
        "serial_number": f"B{300000 + n}" if scale else None,
        "scale_zero": True if scale else None,
        "scale_stable": True if scale else None,
        "scale_status": "ok" if scale else None,
    }
