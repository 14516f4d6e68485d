"""A store's business day, read from the analytics tables (what ``tillstream report`` prints;
the payment findings it shows beside them are the audit's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from tillstream_consumers.runtime.api import MONEY_SCALE, QTY_SCALE, from_units
from tillstream_consumers.runtime.db import Database

_RATE = Decimal("0.0001")


@dataclass(frozen=True)
class Hour:
    hour_start: str
    currency: str
    transactions: int
    net: Decimal


@dataclass(frozen=True)
class Tender:
    method: str
    currency: str
    amount: Decimal
    payments: int


@dataclass(frozen=True)
class TopSku:
    sku: str
    currency: str
    units: Decimal
    net: Decimal


@dataclass(frozen=True)
class DailySummary:
    store_id: str
    day: str
    """The store's business day."""
    transactions: int
    net: dict[str, Decimal]
    """Net sales per currency."""
    units: Decimal
    lines: int
    return_lines: int
    hours: list[Hour]
    tenders: list[Tender]
    top_skus: list[TopSku]

    @property
    def returns_rate(self) -> Decimal:
        """Share of receipt lines that were returns."""
        return (
            (Decimal(self.return_lines) / self.lines).quantize(_RATE) if self.lines else Decimal(0)
        )

    @property
    def average_basket(self) -> dict[str, Decimal]:
        """Net amount per transaction, per currency."""
        per_currency: dict[str, int] = {}
        for h in self.hours:
            per_currency[h.currency] = per_currency.get(h.currency, 0) + h.transactions
        return {
            c: (amount / per_currency[c]).quantize(_RATE)
            for c, amount in self.net.items()
            if per_currency.get(c)
        }

    @property
    def units_per_basket(self) -> Decimal:
        return (self.units / self.transactions).quantize(_RATE) if self.transactions else Decimal(0)

    def as_json(self) -> dict[str, Any]:
        """JSON-ready (``GET /v1/report``): money and quantities as exact decimal strings."""
        data: dict[str, Any] = _jsonable(asdict(self))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DailySummary:
        """The summary :meth:`as_json` gave (what ``tillstream report`` reads from the API)."""
        d = dict(data)
        return cls(
            store_id=d["store_id"],
            day=d["day"],
            transactions=int(d["transactions"]),
            net={c: Decimal(a) for c, a in d["net"].items()},
            units=Decimal(d["units"]),
            lines=int(d["lines"]),
            return_lines=int(d["return_lines"]),
            hours=[Hour(**{**h, "net": Decimal(h["net"])}) for h in d["hours"]],
            tenders=[Tender(**{**t, "amount": Decimal(t["amount"])}) for t in d["tenders"]],
            top_skus=[
                TopSku(**{**k, "units": Decimal(k["units"]), "net": Decimal(k["net"])})
                for k in d["top_skus"]
            ],
        )


def _jsonable(value: Any) -> Any:
    """Decimals as strings (never through a float), containers walked."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def daily_summary(db: Database, store_id: str, day: str, top: int = 5) -> DailySummary:
    """The summary of ``store_id`` on its business day ``day`` (``YYYY-MM-DD``); hours are
    the store's local ones."""
    hours = [
        Hour(str(h), str(c), int(n), from_units(int(net), MONEY_SCALE))
        for h, c, n, net in db.fetchall(
            "SELECT hour_start, currency, transactions, net_units FROM an_sales_hourly "
            "WHERE store_id = ? AND sale_day = ? ORDER BY hour_start, currency",
            (store_id, day),
        )
    ]
    totals = db.fetchone(
        "SELECT COALESCE(SUM(units), 0), COALESCE(SUM(lines), 0), "
        "COALESCE(SUM(return_lines), 0) FROM an_sales_hourly WHERE store_id = ? AND sale_day = ?",
        (store_id, day),
    ) or (0, 0, 0)
    net: dict[str, Decimal] = {}
    for h in hours:
        net[h.currency] = net.get(h.currency, Decimal(0)) + h.net
    tenders = [
        Tender(str(m), str(c), from_units(int(a), MONEY_SCALE), int(n))
        for m, c, a, n in db.fetchall(
            "SELECT method, currency, amount_units, payments FROM an_tenders "
            "WHERE store_id = ? AND sale_day = ? ORDER BY amount_units DESC, method",
            (store_id, day),
        )
    ]
    skus = [
        TopSku(str(s), str(c), from_units(int(u), QTY_SCALE), from_units(int(a), MONEY_SCALE))
        for s, c, u, a in db.fetchall(
            # A SKU whose every sale was voided nets to nothing: it is no top SKU.
            "SELECT sku, currency, units, net_units FROM an_sku_daily "
            "WHERE store_id = ? AND sale_day = ? AND (units <> 0 OR net_units <> 0) "
            "ORDER BY net_units DESC, units DESC, sku LIMIT ?",
            (store_id, day, top),
        )
    ]
    return DailySummary(
        store_id=store_id,
        day=day,
        transactions=sum(h.transactions for h in hours),
        net=net,
        units=from_units(int(totals[0]), QTY_SCALE),
        lines=int(totals[1]),
        return_lines=int(totals[2]),
        hours=hours,
        tenders=tenders,
        top_skus=skus,
    )
