"""Reading stock on hand (``tillstream stock`` and ``GET /v1/stock``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tillstream_consumers.runtime.api import QTY_SCALE, from_units
from tillstream_consumers.runtime.db import Database


@dataclass(frozen=True, slots=True)
class StockLevel:
    store_id: str
    sku: str
    on_hand: Decimal
    description: str | None
    updated_at: str

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, with the quantity as an exact decimal string."""
        return {
            "store_id": self.store_id,
            "sku": self.sku,
            "on_hand": str(self.on_hand),
            "description": self.description,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StockLevel:
        """The level :meth:`as_json` gave (``tillstream stock`` reading ``GET /v1/stock``)."""
        return cls(
            data["store_id"],
            data["sku"],
            Decimal(data["on_hand"]),
            data["description"],
            data["updated_at"],
        )


def stock_levels(
    db: Database, store: str | None = None, sku: str | None = None
) -> list[StockLevel]:
    """Stock on hand per store and SKU, optionally of one store and/or one SKU."""
    where, params = [], []
    if store is not None:
        where.append("s.store_id = ?")
        params.append(store)
    if sku is not None:
        where.append("s.sku = ?")
        params.append(sku)
    sql = (
        "SELECT s.store_id, s.sku, s.on_hand, i.description, s.updated_at "
        "FROM erp_stock s LEFT JOIN erp_items i ON i.sku = s.sku"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY s.store_id, s.sku"
    )
    return [
        StockLevel(st, k, from_units(int(q), QTY_SCALE), d, u)
        for st, k, q, d, u in db.fetchall(sql, params)
    ]
