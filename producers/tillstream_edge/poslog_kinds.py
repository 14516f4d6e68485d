"""What a POSLog ``Transaction`` is: a sale, a post-void, till events, or skipped and why.

A transaction's kind is its body element. It is found by the ARTS kinds by name, never as
"the first child ending in Transaction": vendors put ``OriginalTransaction`` and the like
beside the body (a kiosk chain's 2.2 files do), and a sale read as an unknown kind would be
lost. Skipped transactions are, by their nature, nothing a consumer keeps (training, a
suspended or cancelled receipt, a report request); each is listed as a :class:`Skipped` with
a precise kind and a reason. A transaction whose body tillstream does not know is not
skipped: it is set aside (``tillstream_edge.poslog``), so it can be re-run once it is read.

A **post-void** cancels a completed sale afterwards. Vendors write it two ways: a
transaction of its own linking to the sale (``TransactionLink`` with a ``ReasonCode`` such
as ``Voided`` or ``PostVoid``), or the original resent with the status ``PostVoided``. A
``Voided`` status without a link is a receipt abandoned before it was completed (nothing
changed hands): skipped, unless the document's dialect says its vendor resends originals
that way (``Dialect.voided_status_is_post_void``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any
from xml.etree.ElementTree import Element

from tillstream.core.pan import mask_pans
from tillstream_edge.poslog_dialect import GENERIC, Dialect
from tillstream_edge.poslog_xml import attr, child_text, children, flag, local, mark_read

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
    "POSLogControlTransaction",  # Oracle Xstore's
)
CONTROL_BODIES = frozenset(
    {"ControlTransaction", "TenderControlTransaction", "POSLogControlTransaction"}
)
# Bodies that are by their nature no sale: skipped, not set aside.
_NOT_SALES = frozenset(_BODIES) - CONTROL_BODIES - {RETAIL}
# TransactionStatus values of a receipt whose goods and money changed hands (compared in
# lower case, letters only): a finished till sale, or an online order shipped, delivered or
# picked up. No status at all is a finished sale (2.x tills often write none).
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
_POST_VOID_STATUSES = frozenset({"postvoided", "postvoid"})
# TransactionLink reason codes that make the linking transaction a post-void of the target.
_VOID_LINKS = frozenset({"voided", "void", "postvoid", "postvoided", "voidtransaction"})
# TransactionType values (element or attribute) of a transaction the till cancelled.
_CANCEL_TYPES = frozenset({"cancel", "canceled", "cancelled", "abort", "aborted"})
CONTROL_REASON = "a control operation that is no till event (e.g. a report request)"
# Control operations that are not till events, by the element that says which one it is,
# under the short names the skipped metric has always used.
_CONTROL_SKIPS = {"TenderDeposit": "TenderDeposit", "SafeSettle": "SafeSettle"}
_SHOWN = 64  # characters of a sequence number, kind or status quoted in a report
MAX_LISTED = 1000
"""Skipped or set-aside transactions listed one by one in a report; the rest are counted."""


class Kind(Enum):
    SALE = "sale"
    POST_VOID = "post_void"
    CONTROL = "control"
    SKIPPED = "skipped"
    UNKNOWN = "unknown"
    """No body tillstream reads: set aside, to be re-run once it is read."""


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
        """How reports name a transaction: ``"161 (#2)"``."""
        return label(self.sequence_number, self.index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction": self.index,
            "sequence_number": self.sequence_number,
            "kind": self.kind,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class Classified:
    kind: Kind
    body: Element | None
    skipped: Skipped | None = None
    link: Element | None = None
    """A post-void's ``TransactionLink`` to the sale it cancels (None: the sale itself)."""


def label(sequence_number: str | None, index: int) -> str:
    if sequence_number is None:
        return f"#{index} (no SequenceNumber)"
    return f"{sequence_number} (#{index})"


def body(tx: Element) -> Element | None:
    """The transaction's body element (RetailTransaction, ControlTransaction, ...)."""
    for element in tx:
        if local(element.tag) in _BODIES:
            return element
    return None


def classify(tx: Element, index: int, dialect: Dialect = GENERIC) -> Classified:
    """What ``tx`` is (see the module), as ``dialect`` writes it."""
    sequence = shown(child_text(tx, "SequenceNumber"))

    def skip(kind: str, reason: str, counted_as: str | None = None) -> Classified:
        return Classified(
            Kind.SKIPPED, found, Skipped(index, sequence, kind, reason, counted_as or kind)
        )

    found = body(tx)
    if found is not None:
        mark_read(found)
    if flag(tx, "TrainingModeFlag") or (found is not None and flag(found, "TrainingModeFlag")):
        return skip("Training", "training mode (not a real sale)")
    if found is None:
        others = [local(e.tag) for e in tx if local(e.tag).endswith("Transaction")]
        for other in others:
            if other in dialect.skipped_bodies:
                return skip(other, dialect.skipped_bodies[other], "Unknown")
        kind = shown(others[0] if others else attr(tx, "TypeCode")) or "Unknown"
        return Classified(Kind.UNKNOWN, None, Skipped(index, sequence, kind, "", "Unknown"))
    name = local(found.tag)
    status = attr(found, "TransactionStatus") or child_text(found, "TransactionStatus")
    status = status or child_text(tx, "TransactionStatus")
    normal = _letters(status)
    link = void_link(tx, found)
    if link is not None or normal in _POST_VOID_STATUSES:
        return Classified(Kind.POST_VOID, found, link=link)
    if normal == "voided" and dialect.voided_status_is_post_void and name == RETAIL:
        return Classified(Kind.POST_VOID, found)
    if name in CONTROL_BODIES:
        return Classified(Kind.CONTROL, found)
    if name in _NOT_SALES:
        return skip(name, "not a sale (this kind is not converted)")
    if status is not None and normal not in SALE_STATUSES | dialect.sale_statuses:
        status = shown(status)
        counted = f"{RETAIL}:{status}" if normal in _COUNTED_STATUSES else f"{RETAIL}:Other"
        return skip(f"{RETAIL}:{status}", f"status {status} is not a completed sale", counted)
    types = [child_text(holder, "TransactionType") for holder in (tx, found)]
    types += [attr(holder, "TransactionType") for holder in (tx, found)]
    if (
        flag(tx, "CancelFlag")
        or flag(found, "VoidFlag")
        or any(_letters(t) in _CANCEL_TYPES for t in types)
    ):
        return skip(f"{RETAIL}:Canceled", "cancelled at the till (nothing changed hands)")
    if not any(True for _ in children(found, "LineItem")) and not _has_money(found):
        return skip(f"{RETAIL}:Empty", "no line items and no amounts (nothing was rung up)")
    return Classified(Kind.SALE, found)


def control_skipped(tx: Element, found: Element, index: int) -> Skipped:
    """A control transaction none of whose operations is a till event."""
    sequence = shown(child_text(tx, "SequenceNumber"))
    for element in found:
        if local(element.tag) in _CONTROL_SKIPS:
            kind = _CONTROL_SKIPS[local(element.tag)]
            return Skipped(index, sequence, kind, CONTROL_REASON, kind)
    return Skipped(index, sequence, local(found.tag), CONTROL_REASON, local(found.tag))


def void_link(tx: Element, found: Element) -> Element | None:
    """The ``TransactionLink`` by which ``tx`` post-voids another transaction, if any."""
    for holder in (found, tx):
        for link in children(holder, "TransactionLink"):
            reason = attr(link, "ReasonCode") or child_text(link, "ReasonCode")
            if _letters(reason) in _VOID_LINKS:
                return link
    return None


def _has_money(found: Element) -> bool:
    """Whether an otherwise empty retail body states a non-zero total."""
    for total in children(found, "Total"):
        value = (total.text or "").strip().lstrip("+-").replace(".", "").replace("0", "")
        if value:
            return True
    return False


def _letters(value: str | None) -> str:
    return re.sub(r"[^a-z]", "", (value or "").lower())


def shown(value: str | None) -> str | None:
    """A value of the document as a report may quote it: short, card numbers masked."""
    # Masked before it is cut, so no card number is cut short of being recognised.
    return None if value is None else mask_pans(value[: 4 * _SHOWN])[:_SHOWN]
