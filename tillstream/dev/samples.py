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
