"""What a POSLog ``Transaction`` is: a sale to convert, or something skipped and why.

A transaction's kind is its body element. It is found by the ARTS kinds by name, never as
"the first child ending in Transaction": vendors put ``OriginalTransaction`` and the like
beside the body (a kiosk chain's 2.2 files do), and a sale read as an unknown kind would be
lost. Everything not converted is listed as a :class:`Skipped` with a precise kind (the
sales audit reads sign-ons, no-sales and tender controls by these kinds) and a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.pan import mask_pans
from tillstream_edge.poslog_xml import PoslogError, attr, child_text, flag, local

RETAIL = "RetailTransaction"
# ARTS POSLog 2.x/V6 transaction bodies; a Transaction holds one of them.
_BODIES = (
    RETAIL,
    "ControlTransaction",
    "TenderControlTransaction",
    "InventoryControlTransaction",
    "FunctionLogTransaction",
    "CustomerOrderTransaction",
    "StoredValueInstrumentTransaction",
    "CustomerAccountTransaction",
    "POSLogTransaction",
)
_CONTROL_BODIES = frozenset({"ControlTransaction", "TenderControlTransaction"})
# The control operations a store-day close and a till balance are made of, by the element
# that says which one it is; sign-on/off keep the short names the metric always used.
_CONTROL_KINDS = {
    "OperatorSignOn": "SignOn",
    "OperatorSignOff": "SignOff",
    "NoSale": "NoSale",
    "TillSettle": "TillSettle",
    "TenderPickup": "TenderPickup",
    "TenderLoan": "TenderLoan",
    "PaidIn": "PaidIn",
    "PaidOut": "PaidOut",
    "TenderDeclaration": "TenderDeclaration",
    "TenderDeposit": "TenderDeposit",
    "SafeSettle": "SafeSettle",
}
# TransactionStatus values of a receipt whose goods and money changed hands (compared in
# lower case, letters only): a finished till sale, or an online order shipped, delivered or
# picked up. Anything else (Voided, Canceled, Suspended, PostVoided, Ordered, ...) did not
# happen as a sale. No status at all is a finished sale (2.x tills often write none).
SALE_STATUSES = frozenset(
    {
        "finished",
        "totaled",
        "totalled",
        "completed",
        "complete",
        "tendered",
        "shipped",
        "delivered",
        "pickedup",
        "fulfilled",
    }
)
# Statuses that are not sales and are counted under their own name in the skipped metric;
# any other status a vendor invents is counted as RetailTransaction:Other (a label per
# free-text value would let one document create thousands of metric series).
_COUNTED_STATUSES = frozenset(
    {"voided", "canceled", "cancelled", "suspended", "postvoided", "ordered", "pending", "open"}
)
CONTROL_REASON = "a control operation that is no till event (e.g. a report request)"
_SHOWN = 64  # characters of a sequence number, kind or status quoted in a report
MAX_LISTED = 1000
"""Skipped transactions listed one by one in a report; the rest are only counted."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A transaction of the document that was not converted, and why."""

    index: int
    """Its position in the document, from 1."""
    sequence_number: str | None
    kind: str
    """E.g. ``SignOn``, ``TillSettle``, ``RetailTransaction:Suspended``, ``Training``."""
    reason: str
    metric_kind: str = ""
    """The kind as the skipped metric counts it: from a fixed vocabulary (``kind`` when
    that is in it, else ``Unknown`` or ``RetailTransaction:Other``)."""

    @property
    def label(self) -> str:
        """How errors name a transaction: ``"161 (#2)"``."""
        if self.sequence_number is None:
            return f"#{self.index} (no SequenceNumber)"
        return f"{self.sequence_number} (#{self.index})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction": self.index,
            "sequence_number": self.sequence_number,
            "kind": self.kind,
            "reason": self.reason,
        }


class NothingConverted(PoslogError):
    """A document none of whose transactions is a sale or a till event: refused, each one
    listed."""

    def __init__(self, skipped: list[Skipped]) -> None:
        self.skipped = skipped
        if not skipped:
            super().__init__("nothing to publish: the document holds no Transaction")
            return
        first = "; ".join(f"transaction {s.label}: {s.kind}: {s.reason}" for s in skipped[:3])
        more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        super().__init__(
            f"nothing to publish, no transaction is a sale or a till event: {first}{more}"
        )


def body(tx: Element) -> Element | None:
    """The transaction's body element (RetailTransaction, ControlTransaction, ...)."""
    for element in tx:
        if local(element.tag) in _BODIES:
            return element
    return None


def skipped(tx: Element, index: int) -> Skipped | None:
    """Why ``tx`` is not converted, or None if it is a sale to convert."""
    sequence = shown(child_text(tx, "SequenceNumber"))

    def skip(kind: str, reason: str, counted_as: str | None = None) -> Skipped:
        return Skipped(index, sequence, kind, reason, counted_as or kind)

    if flag(tx, "TrainingModeFlag"):
        return skip("Training", "training mode (not a real sale)")
    found = body(tx)
    if found is None:
        others = [local(e.tag) for e in tx if local(e.tag).endswith("Transaction")]
        kind = shown(others[0] if others else attr(tx, "TypeCode")) or "Unknown"
        return skip(kind, f"no transaction body ({', '.join(_BODIES[:3])}, ...)", "Unknown")
    kind = local(found.tag)
    if kind in _CONTROL_BODIES:
        for element in found:
            if local(element.tag) in _CONTROL_KINDS:
                return skip(_CONTROL_KINDS[local(element.tag)], CONTROL_REASON)
        return skip(kind, CONTROL_REASON)
    if kind != RETAIL:
        return skip(kind, "not a sale (this kind is not converted)")
    status = attr(found, "TransactionStatus") or child_text(found, "TransactionStatus")
    normal = re.sub(r"[^a-z]", "", (status or "").lower())
    if status is not None and normal not in SALE_STATUSES:
        status = shown(status)
        counted = f"{RETAIL}:{status}" if normal in _COUNTED_STATUSES else f"{RETAIL}:Other"
        return skip(f"{RETAIL}:{status}", f"status {status} is not a completed sale", counted)
    if flag(tx, "CancelFlag") or flag(found, "VoidFlag"):
        return skip(f"{RETAIL}:Canceled", "cancelled at the till (CancelFlag or VoidFlag)")
    return None


def shown(value: str | None) -> str | None:
    """A value of the document as a report may quote it: short, card numbers masked."""
    # Masked before it is cut, so no card number is cut short of being recognised.
    return None if value is None else mask_pans(value[: 4 * _SHOWN])[:_SHOWN]
