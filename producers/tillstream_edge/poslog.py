"""ARTS POSLog XML → sale, payment, post-void and till events, one transaction at a time.

A document holds one or many ``Transaction``s: under a ``POSLog`` root, a bare
``Transaction``, or inside an envelope (:mod:`tillstream_edge.poslog_envelope`). **The
transaction is the unit**: each one becomes its events, or is skipped (by its nature not a
sale: training, suspended, a report request: :mod:`tillstream_edge.poslog_kinds`), or is
set aside with its reason (it should be a sale or till event but cannot be read: a missing
time, lines that do not add up, a body tillstream does not know). One odd transaction never
costs the others; a document is refused whole only when it cannot be parsed at all.

- a completed ``RetailTransaction``: one sale event plus one payment event per tender
  (:mod:`tillstream_edge.poslog_sale`);
- a post-void: one ``sale_void`` event naming the sale it cancels
  (:mod:`tillstream_edge.poslog_void`);
- ``ControlTransaction`` / ``TenderControlTransaction``: till events
  (:mod:`tillstream_edge.poslog_control`).

Vendors differ; what differs is written once as data, a dialect
(:mod:`tillstream_edge.poslog_dialect`), detected from the document or forced by the edge's
setting. Elements are matched by local name wherever they are. Only ids leave: customer
names and addresses and operator names are never read; card numbers are reduced to brand and
last four digits, and any kept free text has card numbers masked.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from typing import Any
from xml.etree.ElementTree import Element

from tillstream_edge.poslog_control import convert_control
from tillstream_edge.poslog_dialect import Dialect, choose_dialect
from tillstream_edge.poslog_envelope import Document, find_transactions, standalone
from tillstream_edge.poslog_header import NAMESPACE, currency_of
from tillstream_edge.poslog_items import ParseContext
from tillstream_edge.poslog_kinds import (
    Kind,
    Skipped,
    body,
    classify,
    control_skipped,
    label,
    shown,
)
from tillstream_edge.poslog_sale import convert_sale
from tillstream_edge.poslog_void import convert_post_void
from tillstream_edge.poslog_xml import PoslogError, child_text, parse_xml

__all__ = [
    "NAMESPACE",
    "Converted",
    "PoslogError",
    "PoslogResult",
    "SetAside",
    "Skipped",
    "parse_poslog",
]

log = logging.getLogger(__name__)

Events = list[tuple[str, dict[str, Any]]]
MAX_SET_ASIDE = 1000
"""More transactions of one document than this set aside, and the document is refused whole:
it is not one tillstream reads (or not in the dialect forced), and keeping each would only
fill the store's disk."""
_NO_BODY = "no transaction body tillstream reads (RetailTransaction, ControlTransaction, ...)"


@dataclass(frozen=True)
class Converted:
    """A transaction turned into events (``("sale", record)``, ``("payment", ...)``,
    ``("sale_void", ...)``, ``("till_event", ...)``, in document order)."""

    index: int
    sequence_number: str | None
    element: Element
    events: Events

    @property
    def label(self) -> str:
        return label(self.sequence_number, self.index)


@dataclass(frozen=True, slots=True)
class SetAside:
    """A transaction that should be a sale or till event but cannot be read, and why; kept at
    the edge as a document of its own to be re-run after a fix
    (``tillstream edge set-aside``)."""

    index: int
    sequence_number: str | None
    kind: str
    """Its body (``RetailTransaction``...) or what stood instead of one."""
    reason: str
    logged: str
    """The reason without what it quotes of the document: for log lines."""
    cause: str
    """What the set-aside metric counts it as: ``unreadable`` (the converter cannot read it),
    ``unknown`` (no body tillstream reads), or a refusal reason of the edge (``rule``,
    ``card_number``, ``too_large``, ``invalid``, ``conflict``...)."""
    document: bytes
    """The transaction as a POSLog document of its own, card numbers masked."""

    @property
    def label(self) -> str:
        return label(self.sequence_number, self.index)

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction": self.index,
            "sequence_number": self.sequence_number,
            "kind": self.kind,
            "cause": self.cause,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PoslogResult:
    converted: list[Converted]
    skipped: list[Skipped]
    """Transactions not converted by their nature, in document order, each with its kind
    and reason."""
    set_aside: list[SetAside]
    masked_pans: int
    """Card numbers masked (full PANs in tenders or in free text that was kept)."""
    dialect: Dialect
    document: Document = field(repr=False)

    @property
    def events(self) -> Events:
        """Every converted transaction's events, in document order."""
        return [event for unit in self.converted for event in unit.events]

    @property
    def skipped_kinds(self) -> dict[str, int]:
        """How many transactions were skipped, by kind, e.g. ``{"SignOn": 1}``."""
        return dict(Counter(s.kind for s in self.skipped))

    def set_aside_later(self, unit: Converted, reason: str, cause: str, *, logged: str) -> SetAside:
        """A converted transaction the edge refuses after all (a rule, its size...)."""
        kind = _kind_name(unit.element)
        document = standalone(self.document, unit.element)
        return SetAside(unit.index, unit.sequence_number, kind, reason, logged, cause, document)


def parse_poslog(
    data: bytes,
    *,
    default_currency: str = "EUR",
    default_timezone: tzinfo = UTC,
    max_bytes: int = 20 * 1024 * 1024,
    dialect: str | None = None,
) -> PoslogResult:
    """Convert a POSLog document, transaction by transaction (see the module); raises
    :class:`PoslogError` only when the document cannot be parsed at all.

    ``default_currency`` is the store's: the currency of transactions that name none.
    ``dialect`` forces a vendor dialect by name (None: detected from the document)."""
    root = parse_xml(data, max_bytes=max_bytes)
    document = find_transactions(root)
    if not document.transactions:
        raise PoslogError("nothing to convert: the document holds no Transaction")
    chosen = choose_dialect(root, dialect)
    reader = _Reader(document, chosen, default_currency, default_timezone)
    for index, tx in enumerate(document.transactions, 1):
        reader.read(index, tx)
        if len(reader.unread) > MAX_SET_ASIDE:
            first = reader.unread[0][0]
            head = (
                f"more than {MAX_SET_ASIDE} of its {len(document.transactions)} transactions "
                f"cannot be read (the first: transaction {first.label}: "
            )
            tail = "); check it with 'tillstream poslog check'"
            raise PoslogError(head + first.reason + tail, logged=head + first.logged + tail)
    set_aside = [
        SetAside(
            k.index,
            k.sequence_number,
            k.kind,
            k.reason,
            k.logged,
            k.cause,
            standalone(document, tx),
        )
        for k, tx in reader.unread
    ]
    return PoslogResult(
        reader.converted, reader.skipped, set_aside, reader.masked, chosen, document
    )


@dataclass
class _Reader:
    document: Document
    dialect: Dialect
    currency: str
    timezone: tzinfo
    converted: list[Converted] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    unread: list[tuple[SetAside, Element]] = field(default_factory=list)
    """Set aside, with their elements: each made a document of its own at the end."""
    masked: int = 0

    def read(self, index: int, tx: Element) -> None:
        sequence = shown(child_text(tx, "SequenceNumber"))
        try:
            events = self._convert(index, tx)
        except PoslogError as exc:
            self._set_aside(index, tx, str(exc), "unreadable", logged=exc.logged)
            return
        except Exception as exc:  # a converter defect costs this transaction, not the file
            log.exception("POSLog transaction %s could not be converted", label(sequence, index))
            self._set_aside(index, tx, f"not converted ({type(exc).__name__})", "unreadable")
            return
        if events is not None:
            self.converted.append(Converted(index, sequence, tx, events))

    def _convert(self, index: int, tx: Element) -> Events | None:
        """The transaction's events, or None when it was skipped or set aside."""
        found = classify(tx, index, self.dialect)
        context = self.document.context(tx)
        if found.kind is Kind.SKIPPED:
            assert found.skipped is not None
            self.skipped.append(found.skipped)
            return None
        if found.kind is Kind.UNKNOWN:
            assert found.skipped is not None
            self._set_aside(index, tx, _NO_BODY, "unknown", kind=found.skipped.kind)
            return None
        assert found.body is not None
        if found.kind is Kind.CONTROL:
            control = convert_control(tx, self.currency, self.timezone, context, self.dialect)
            if control is None:
                self.skipped.append(control_skipped(tx, found.body, index))
                return None
            self.masked += control.masked_pans
            return control.events
        ctx = ParseContext(currency_of(tx, self.currency))
        if found.kind is Kind.POST_VOID:
            events = convert_post_void(tx, found.body, found.link, ctx, self.timezone, context)
        else:
            events = convert_sale(tx, found.body, ctx, self.timezone, context, self.dialect)
        self.masked += ctx.masked_pans
        return events

    def _set_aside(
        self,
        index: int,
        tx: Element,
        reason: str,
        cause: str,
        *,
        kind: str | None = None,
        logged: str | None = None,
    ) -> None:
        """Keep ``tx`` aside; ``logged``: the reason without what it quotes of the document
        (None: it quotes nothing)."""
        sequence = shown(child_text(tx, "SequenceNumber"))
        kept = SetAside(
            index, sequence, kind or _kind_name(tx), reason, logged or reason, cause, b""
        )
        self.unread.append((kept, tx))


def _kind_name(tx: Element) -> str:
    found = body(tx)
    return found.tag.rsplit("}", 1)[-1] if found is not None else "Unknown"
