"""Money at stake on a store-day: what its open flags, acknowledged or not, still put in
question. An acknowledgement says an auditor looked, not that the money was found, so a
``closed-reviewed`` day shows the same money at stake as before it was reviewed; only the
facts (the missing receipt arriving, a recount posted) take it away.

Sums are kept apart by what they mean, never netted across kinds: a till short by 20.00 and
another over by 20.00 are 20.00 short and 20.00 over, not balanced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tillstream_consumers.audit.flags import (
    OVER_SHORT,
    PAYMENT_MISMATCH,
    PAYMENT_WITHOUT_SALE,
    RECEIPT_GAP,
    TILL_TOTALS_MISMATCH,
)

_ZERO = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class AtStake:
    """A store-day's open flags, in money (in the store's ``currency``) and missing numbers."""

    currency: str | None = None
    short: Decimal = _ZERO
    """Shortages of over/short flags (negative: declared less than expected)."""
    over: Decimal = _ZERO
    """Overs of over/short flags."""
    payment_differences: Decimal = _ZERO
    """Receipts whose payments do not add up: the differences, each counted whole."""
    paid_without_sale: Decimal = _ZERO
    """Payments taken for receipts head office does not have."""
    till_totals_differences: Decimal = _ZERO
    """A till's own totals against its events at head office: the differences, whole."""
    receipts_missing: int = 0
    """Numbers receipt gaps leave out (a till counting receipts and till events with one
    counter may miss a till event among them)."""

    @classmethod
    def of_flags(
        cls, flags: Iterable[tuple[str, Decimal | None, int | None]], currency: str | None
    ) -> AtStake:
        """From open flags: (kind, amount, missing numbers)."""
        short = over = payments = orphans = totals = _ZERO
        missing = 0
        for kind, amount, gap in flags:
            value = amount or _ZERO
            if kind == OVER_SHORT:
                short += min(value, _ZERO)
                over += max(value, _ZERO)
            elif kind == PAYMENT_MISMATCH:
                payments += abs(value)
            elif kind == PAYMENT_WITHOUT_SALE:
                orphans += value
            elif kind == TILL_TOTALS_MISMATCH:
                totals += abs(value)
            elif kind == RECEIPT_GAP:
                missing += gap or 0
        return cls(currency, short, over, payments, orphans, totals, missing)

    @property
    def nothing(self) -> bool:
        return not (
            self.short
            or self.over
            or self.payment_differences
            or self.paid_without_sale
            or self.till_totals_differences
            or self.receipts_missing
        )

    def as_json(self) -> dict[str, Any]:
        """Amounts as decimal strings beside their currency."""
        return {
            "currency": self.currency,
            "short": str(self.short),
            "over": str(self.over),
            "payment_differences": str(self.payment_differences),
            "paid_without_sale": str(self.paid_without_sale),
            "till_totals_differences": str(self.till_totals_differences),
            "receipts_missing": self.receipts_missing,
        }


def describe(at_stake: dict[str, Any]) -> str:
    """The money at stake as an auditor reads it (``short 10.74 EUR, 6 receipts missing``),
    from :meth:`AtStake.as_json` (what the page and the command line get, from the database
    or the read API); ``nothing`` when nothing is."""
    currency = at_stake.get("currency") or ""

    def amount(key: str) -> str:
        return f"{abs(Decimal(at_stake.get(key) or 0))} {currency}".rstrip()

    parts = []
    if Decimal(at_stake.get("short") or 0):
        parts.append(f"short {amount('short')}")
    if Decimal(at_stake.get("over") or 0):
        parts.append(f"over {amount('over')}")
    if Decimal(at_stake.get("payment_differences") or 0):
        parts.append(f"payments off by {amount('payment_differences')}")
    if Decimal(at_stake.get("paid_without_sale") or 0):
        parts.append(f"{amount('paid_without_sale')} paid without a receipt")
    if Decimal(at_stake.get("till_totals_differences") or 0):
        parts.append(f"till totals off by {amount('till_totals_differences')}")
    missing = int(at_stake.get("receipts_missing") or 0)
    if missing:
        parts.append(f"{missing} receipt{'s' if missing != 1 else ''} missing")
    return ", ".join(parts) or "nothing"
