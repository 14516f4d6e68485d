"""Small, valid sample events of each type (demo, docs and tests)."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from tillstream.core.records import utcnow

_CENT = Decimal("0.01")


def sample_sale(
    store_id: str = "S001", *, at: datetime | None = None, customer: str | None = "C-1001"
) -> dict[str, Any]:
    at = at or utcnow()
    lines = [
        _line(1, "SALE", "SKU-MILK-1L", "4006381333931", Decimal(2), "EA", Decimal("1.19")),
        _line(2, "SALE", "SKU-APPLES", None, Decimal("0.734"), "KG", Decimal("2.99")),
        _line(3, "RETURN", "SKU-BREAD", None, Decimal(1), "EA", Decimal("2.49")),
    ]
    gross = sum(
        (ln["extended_amount"] * (-1 if ln["kind"] == "RETURN" else 1) for ln in lines), Decimal(0)
    )
    tax = sum(
        (ln["tax_amount"] * (-1 if ln["kind"] == "RETURN" else 1) for ln in lines), Decimal(0)
    )
    return {
        "event_id": str(uuid.uuid4()),
        "store_id": store_id,
        "terminal_id": "T01",
        "receipt_number": "000123",
        "business_day": date(at.year, at.month, at.day),
        "occurred_at": at,
        "utc_offset_minutes": 60,
        "cashier_id": "op-7",
        "customer_id": customer,
        "currency": "EUR",
        "lines": lines,
        "totals": {
            "gross_amount": gross,
            "discount_amount": Decimal(0),
            "tax_amount": tax,
            "net_amount": gross,
        },
    }


def with_totals(sale: dict[str, Any]) -> dict[str, Any]:
    """``sale`` with totals made from its lines, as the totals rule reads them (tax included
    in prices, no receipt discount): for tests that change a sample's lines."""
    gross = tax = Decimal(0)
    for line in sale["lines"]:
        sign = -1 if line["kind"] in ("RETURN", "VOID") else 1
        gross += sign * line["extended_amount"]
        tax += sign * line["tax_amount"]
    sale["totals"] = {
        "gross_amount": gross,
        "discount_amount": Decimal(0),
        "tax_amount": tax,
        "net_amount": gross,
    }
    return sale


def sale_worth(
    store_id: str, net: Decimal, *, at: datetime | None = None, customer: str | None = "C-1001"
) -> dict[str, Any]:
    """A valid sale of one line whose net total is ``net``: a RETURN line when negative."""
    sale = sample_sale(store_id, at=at, customer=customer)
    kind = "RETURN" if net < 0 else "SALE"
    sale["lines"] = [_line(1, kind, "SKU-MISC", None, Decimal(1), "EA", abs(net))]
    return with_totals(sale)


def sample_payment(sale: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "sale_event_id": sale["event_id"],
        "store_id": sale["store_id"],
        "terminal_id": sale["terminal_id"],
        "occurred_at": sale["occurred_at"] + timedelta(seconds=5),
        "method": "CARD",
        "status": "CAPTURED",
        "amount": sale["totals"]["net_amount"],
        "currency": sale["currency"],
        "card": {"brand": "VISA", "last_four": "4242", "token": "tok_demo_4242"},
    }


def sample_sale_void(
    sale: dict[str, Any], *, at: datetime | None = None, number: str | None = "000124"
) -> dict[str, Any]:
    """A post-void of ``sale``, on its till, with the void's own receipt ``number``."""
    return {
        "event_id": str(uuid.uuid4()),
        "voided_event_id": sale["event_id"],
        "store_id": sale["store_id"],
        "terminal_id": sale["terminal_id"],
        "receipt_number": number,
        "voided_terminal_id": sale["terminal_id"],
        "voided_receipt_number": sale["receipt_number"],
        "business_day": sale["business_day"],
        "occurred_at": at or sale["occurred_at"] + timedelta(minutes=2),
        "utc_offset_minutes": sale["utc_offset_minutes"],
        "cashier_id": "sup-1",
        "reason": "WRONG_TENDER",
        "currency": sale["currency"],
        "voided_amount": abs(sale["totals"]["net_amount"]),
        "source": "api",
    }


def sample_stock_movement(store_id: str = "S001", *, at: datetime | None = None) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "store_id": store_id,
        "sku": "SKU-MILK-1L",
        "gtin": "4006381333931",
        "quantity_type": "CHANGE",
        "quantity": Decimal(24),
        "unit_of_measure": "EA",
        "reason": "RECEIVED",
        "reference": "DN-2026-0042",
        "occurred_at": at or utcnow(),
        "source": "api",
    }


def _line(
    n: int, kind: str, sku: str, gtin: str | None, qty: Decimal, uom: str, price: Decimal
) -> dict[str, Any]:
    extended = (qty * price).quantize(_CENT)
    return {
        "line_number": n,
        "kind": kind,
        "sku": sku,
        "gtin": gtin,
        "description": None,
        "quantity": qty,
        "unit_of_measure": uom,
        "unit_price": price,
        "discount_amount": Decimal(0),
        "tax_amount": (extended * Decimal("0.07") / Decimal("1.07")).quantize(_CENT),
        "extended_amount": extended,
        "stock_item": True,
        "list_price": None,
    }
