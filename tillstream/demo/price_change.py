"""The demo's price change: head office publishes a new chain price for one catalog item a
little after the start (``publish_file`` with ``PRICE_KIND``, as ``tillstream prices
publish`` does), and every store's edge is asked (``GET /v1/items/{sku}``) until it serves
the new price. The summary says how long the stores took."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import httpx

from tillstream.core.codec import AvroCodec
from tillstream.core.registry import registry_from_settings
from tillstream.core.spreadsheet import csv_writer
from tillstream.demo.stack import DemoStack
from tillstream.masterdata.publish import PRICE_KIND, publish_file
from tillstream.simulate.catalog import CATALOG

CURRENCY = "EUR"
POLL_SECONDS = 0.2
WAIT_SECONDS = 60.0
"""How long the stores are watched after the publish, at most."""


@dataclass
class PriceChange:
    sku: str
    old: Decimal
    new: Decimal
    published_after: float | None = None
    """Seconds from the demo's start to the publish acknowledged by Kafka."""
    served_after: dict[str, float] = field(default_factory=dict)
    """Per store: seconds from the start of the publish to its edge serving the new price."""
    problem: str | None = None

    def summary(self, stores: list[str]) -> str:
        """``price change SKU X 1.99 -> 1.79 EUR: served by 3/3 stores after 1.2 s``."""
        head = f"price change {self.sku} {self.old} -> {self.new} {CURRENCY}"
        if self.problem is not None:
            return f"{head}: not published ({self.problem})"
        if self.published_after is None:
            return f"{head}: not published (the demo ended first)"
        served = [s for s in stores if s in self.served_after]
        line = f"{head}: served by {len(served)}/{len(stores)} stores"
        if served:
            line += f" after {max(self.served_after[s] for s in served):.1f} s"
            each = ", ".join(f"{s} {self.served_after[s]:.1f} s" for s in served)
            line += f" ({each})"
        missing = [s for s in stores if s not in self.served_after]
        if missing:
            line += f"; not yet: {', '.join(missing)}"
        return line


def planned() -> PriceChange:
    """The first catalog item, 10% cheaper (to the cent)."""
    item = CATALOG[0]
    new = (item.price * Decimal("0.9")).quantize(Decimal("0.01"))
    return PriceChange(item.sku, item.price, new)


async def run(
    change: PriceChange,
    stack: DemoStack,
    workdir: Path,
    *,
    delay: float,
    started: float,
) -> None:
    """Publish ``change`` after ``delay`` seconds, then watch the edges (bounded in time);
    fills ``change`` in as it goes, so a cancelled run still has what was seen."""
    await asyncio.sleep(delay)
    path = workdir / "price-change.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv_writer(out)
        writer.writerow(["sku", "store_id", "amount", "currency", "valid_from", "valid_until"])
        writer.writerow([change.sku, "", change.new, CURRENCY, "", ""])
    cfg = stack.settings
    assert cfg is not None, "the stack is started"
    codec = AvroCodec(registry_from_settings(cfg))
    publishing = time.monotonic()
    try:
        await publish_file(cfg, codec, PRICE_KIND, path)
    except Exception as exc:  # the demo goes on; its summary says why
        change.problem = f"{type(exc).__name__}: {exc}"
        return
    change.published_after = time.monotonic() - started
    async with httpx.AsyncClient(timeout=2) as http:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(change.served_after) < len(stack.edges) and time.monotonic() < deadline:
            for store, edge in stack.edges.items():
                if store not in change.served_after and await _serves(
                    http, edge.url, change.sku, change.new
                ):
                    change.served_after[store] = time.monotonic() - publishing
            await asyncio.sleep(POLL_SECONDS)


async def _serves(http: httpx.AsyncClient, url: str, sku: str, amount: Decimal) -> bool:
    try:
        answer = await http.get(f"{url}/v1/items/{sku}")
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    price = answer.json().get("price")
    return price is not None and Decimal(price["amount"]) == amount
