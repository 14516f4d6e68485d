"""POSLog post-voids → ``sale_void`` events (schemas/sale_void): a completed sale cancelled
afterwards, which every consumer undoes (docs/topics.md).

The cancelled sale is named by its identity, the key its event id derives from
(``poslog_header.transaction_key``): the ``TransactionLink``'s store, workstation, sequence
number and business day, each defaulting to the voiding transaction's own. A vendor that
resends the original with a ``PostVoided`` status names the sale by the transaction itself.
Either way the post-void gets an id of its own, so a sale and its post-void never share one.
"""

from __future__ import annotations

import uuid
from datetime import tzinfo
from typing import Any
from xml.etree.ElementTree import Element

from tillstream_edge.poslog_header import (
    NAMESPACE,
    business_day_of,
    read_header,
    store_of,
    transaction_key,
)
from tillstream_edge.poslog_items import ParseContext
from tillstream_edge.poslog_xml import PoslogError, attr, child_text, children

_STATED = ("TransactionGrandAmount", "TransactionNetAmount")


def convert_post_void(
    tx: Element,
    found: Element,
    link: Element | None,
    ctx: ParseContext,
    tz: tzinfo,
    context: Element | None,
) -> list[tuple[str, dict[str, Any]]]:
    """The ``sale_void`` event of a post-void transaction (``link``: its TransactionLink, or
    None when ``tx`` is the cancelled sale itself, resent voided)."""
    header = read_header(tx, found, tz, context)
    if link is None:
        voided_key, terminal = header.key, header.workstation
        voided_number = child_text(tx, "ReceiptNumber") or header.sequence
        own_number = None
    else:
        sequence = child_text(link, "SequenceNumber", "TransactionID")
        if sequence is None:
            raise PoslogError("TransactionLink of a post-void names no SequenceNumber")
        terminal = child_text(link, "WorkstationID") or header.workstation
        day = business_day_of(link) or header.business_day
        voided_key = transaction_key(store_of(link) or header.store, terminal, sequence, day)
        voided_number = child_text(link, "ReceiptNumber") or sequence
        own_number = child_text(tx, "ReceiptNumber") or header.sequence
    amount = _stated_amount(found, ctx)
    reason = child_text(found, "ReasonCode") or child_text(tx, "ReasonCode")
    if reason is None and link is not None:
        reason = attr(link, "ReasonCode") or child_text(link, "ReasonCode")
    record = {
        "event_id": str(uuid.uuid5(NAMESPACE, f"{header.key}|post-void")),
        "voided_event_id": str(uuid.uuid5(NAMESPACE, voided_key)),
        "store_id": ctx.clean(header.store) or header.store,
        "terminal_id": ctx.clean(header.workstation) or header.workstation,
        "receipt_number": ctx.clean(own_number),
        "voided_terminal_id": ctx.clean(terminal),
        "voided_receipt_number": ctx.clean(voided_number),
        "business_day": header.business_day,
        "occurred_at": header.occurred_at,
        "utc_offset_minutes": header.offset,
        "cashier_id": ctx.clean(child_text(tx, "OperatorID") or child_text(found, "OperatorID")),
        "reason": ctx.clean(reason),
        "currency": ctx.currency if amount is not None else None,
        "voided_amount": amount,
        "source": "poslog",
    }
    return [("sale_void", record)]


def _stated_amount(found: Element, ctx: ParseContext) -> Any:
    """The cancelled sale's amount as the post-void states it (vendors write it negated)."""
    for name in _STATED:
        for total in children(found, "Total"):
            if attr(total, "TotalType") == name:
                amount = ctx.amount(total, f"Total {name}")
                if amount is not None:
                    return abs(amount)
    return None
