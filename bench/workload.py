"""The records every stage uses: realistic sales of five lines from the store simulator,
seeded, so both sides of a comparison get the very same events."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

from tillstream.simulate.catalog import CATALOG
from tillstream.simulate.shopper import StoreTraffic


def sales(count: int, *, stores: int = 6, lines: int = 5, seed: int = 42) -> list[dict[str, Any]]:
    """``count`` sale records of exactly ``lines`` SALE lines, spread over ``stores`` stores."""
    traffic = [
        StoreTraffic(f"B{n:03d}", random.Random(seed + n), bad_ratio=0.0) for n in range(stores)
    ]
    at = datetime.now(UTC)
    out = []
    for i in range(count):
        shop = traffic[i % stores]
        while True:
            sale = shop.transaction(i % 3, at).sale
            if (
                all(line["kind"] == "SALE" for line in sale["lines"])
                and len(sale["lines"]) >= lines
            ):
                break
        sale["lines"] = sale["lines"][:lines]
        total = sum(line["extended_amount"] for line in sale["lines"])
        tax = sum(line["tax_amount"] for line in sale["lines"])
        sale["totals"] = {**sale["totals"], "gross_amount": total, "net_amount": total,
                          "tax_amount": tax}  # fmt: skip
        out.append(sale)
    return out


assert len(CATALOG) >= 5  # five distinct lines per sale
