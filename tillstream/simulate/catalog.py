"""The simulated store's assortment: SKUs with valid GTINs, prices and reorder data."""

from __future__ import annotations

import io
from dataclasses import dataclass
from decimal import Decimal

from stdnum import ean

from tillstream.core.spreadsheet import csv_writer


@dataclass(frozen=True, slots=True)
class Item:
    sku: str
    gtin: str
    description: str
    price: Decimal
    weighed: bool = False
    """Sold by the kilogram: fractional quantities from the scale."""
    reorder_point: Decimal = Decimal(20)
    lead_time_days: int = 2
    bottles: int = 0
    """Deposit bottles in one unit: each sold unit rings up a deposit line (money only)."""
    deposit: Decimal = Decimal(0)
    """Deposit per bottle."""


@dataclass(frozen=True, slots=True)
class Deposit:
    """A bottle deposit: a line of money that is no merchandise (``stock_item`` false)."""

    sku: str
    description: str
    price: Decimal


DEPOSITS = {
    Decimal("0.25"): Deposit("DEPOSIT-PET", "Deposit, one-way bottle", Decimal("0.25")),
    Decimal("0.08"): Deposit("DEPOSIT-GLASS", "Deposit, glass bottle", Decimal("0.08")),
}
"""The deposits drinks carry, by amount per bottle."""


def _gtin(n: int) -> str:
    body = f"400638{n:06d}"  # a GS1 Germany-style prefix; the check digit makes it valid
    return body + ean.calc_check_digit(body)


# Drinks carry a bottle deposit (sku, bottles per unit, deposit per bottle).
_BOTTLES = {"WATER-6": (6, Decimal("0.25")), "BEER-6": (6, Decimal("0.08"))}

_ITEMS = [
    ("MILK-1L", "Whole milk 1 l", "1.19", False),
    ("BREAD-WHITE", "White bread 500 g", "2.49", False),
    ("BUTTER-250", "Butter 250 g", "2.29", False),
    ("EGGS-10", "Free-range eggs, 10", "3.49", False),
    ("APPLES", "Apples, loose", "2.99", True),
    ("BANANAS", "Bananas, loose", "1.69", True),
    ("TOMATOES", "Vine tomatoes, loose", "3.99", True),
    ("CHEESE-GOUDA", "Gouda, sliced 200 g", "2.79", False),
    ("COFFEE-500", "Coffee beans 500 g", "7.99", False),
    ("PASTA-500", "Spaghetti 500 g", "1.29", False),
    ("RICE-1KG", "Basmati rice 1 kg", "2.99", False),
    ("OLIVE-OIL", "Olive oil 750 ml", "8.49", False),
    ("WATER-6", "Still water 6 x 1.5 l", "3.29", False),
    ("BEER-6", "Lager 6 x 0.33 l", "5.49", False),
    ("WINE-RED", "Red wine 0.75 l", "6.99", False),
    ("CHOC-100", "Dark chocolate 100 g", "1.49", False),
    ("CHIPS-175", "Potato chips 175 g", "1.99", False),
    ("SOAP", "Hand soap 300 ml", "1.89", False),
    ("TISSUES", "Tissues 10 x 10", "2.19", False),
    ("BATTERIES-AA", "Batteries AA, 4", "4.99", False),
]

CATALOG: tuple[Item, ...] = tuple(
    Item(
        sku=sku,
        gtin=_gtin(i + 1),
        description=text,
        price=Decimal(price),
        weighed=weighed,
        reorder_point=Decimal(8) if weighed else Decimal(20),
        lead_time_days=1 if weighed else 2,
        bottles=_BOTTLES.get(sku, (0, Decimal(0)))[0],
        deposit=_BOTTLES.get(sku, (0, Decimal(0)))[1],
    )
    for i, (sku, text, price, weighed) in enumerate(_ITEMS)
)


def items_csv() -> str:
    """The catalog as head office's item master file (``tillstream items publish``): the
    deposits are items too, not kept in stock."""
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writerow(
        ["sku", "gtins", "description", "unit_of_measure", "weighed", "stock_item",
         "reorder_point", "lead_time_days", "supplier"]
    )  # fmt: skip
    for item in CATALOG:
        writer.writerow(
            [item.sku, item.gtin, item.description, "KGM" if item.weighed else "EA",
             _bool(item.weighed), "true", item.reorder_point, item.lead_time_days, "Demo Foods"]
        )  # fmt: skip
    for deposit in DEPOSITS.values():
        writer.writerow([deposit.sku, "", deposit.description, "EA", "false", "false", "", "", ""])
    return out.getvalue()


def prices_csv(currency: str = "EUR") -> str:
    """The catalog's chain-wide list prices (``tillstream prices publish``)."""
    out = io.StringIO()
    writer = csv_writer(out)
    writer.writerow(["sku", "store_id", "amount", "currency", "valid_from", "valid_until"])
    for sku, price in [
        *((item.sku, item.price) for item in CATALOG),
        *((deposit.sku, deposit.price) for deposit in DEPOSITS.values()),
    ]:
        writer.writerow([sku, "", price, currency, "", ""])
    return out.getvalue()


def _bool(value: bool) -> str:
    return "true" if value else "false"
