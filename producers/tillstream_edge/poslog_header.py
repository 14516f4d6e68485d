"""The header of a POSLog transaction: which store, workstation and sequence number, when
(its time and business day) and in which currency; and the key its event ids derive from.

Sales (:mod:`tillstream_edge.poslog`) and till events (:mod:`tillstream_edge.poslog_control`)
read it the same way, so a transaction's identity is one rule.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from xml.etree.ElementTree import Element

from tillstream_edge.poslog_kinds import body
from tillstream_edge.poslog_xml import PoslogError, attr, child_text, children, text

NAMESPACE = uuid.UUID("bfc62966-5d5c-47f7-a9c7-5d29547c6ec3")
"""uuid5 namespace of POSLog event ids; never change it, or resent files get new ids."""

# Where a sale's time is read, in order of preference (see _moment).
_TIMES = ("EndDateTime", "BeginDateTime", "ReceiptDateTime", "POSLogDateTime")


@dataclass(frozen=True, slots=True)
class Header:
    store: str
    workstation: str
    sequence: str
    occurred_at: datetime
    offset: int
    """The till's UTC offset in minutes at ``occurred_at``."""
    business_day: date

    @property
    def key(self) -> str:
        """What the transaction's event ids derive from (uuid5 in :data:`NAMESPACE`)."""
        return transaction_key(self.store, self.workstation, self.sequence, self.business_day)


def transaction_key(store: str, workstation: str, sequence: str, business_day: date) -> str:
    """A POSLog transaction's identity: a sale's event id is uuid5 of it, so a post-void
    naming the sale's store, workstation, sequence number and day finds its id."""
    return f"{store}|{workstation}|{sequence}|{business_day.isoformat()}"


def store_of(holder: Element) -> str | None:
    """The store a transaction (or a ``TransactionLink``, a POSLog root) names, if any."""
    return _store(holder)


def business_day_of(holder: Element) -> date | None:
    """``BusinessDayDate`` of a transaction or link, if it has one."""
    value = child_text(holder, "BusinessDayDate")
    if value is None:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError as exc:
        raise PoslogError("BusinessDayDate {!r} is not a date", value) from exc


def read_header(tx: Element, holder: Element, tz: tzinfo, context: Element | None = None) -> Header:
    """The header of ``tx``, whose body ``holder`` (a RetailTransaction, ControlTransaction...)
    may carry its times too; zone-less times are local to ``tz``. ``context`` is the POSLog
    element holding ``tx``: some vendors write the store and business day there, once."""
    store = _store(tx) or (_store(context) if context is not None else None)
    if store is None:
        raise PoslogError(
            "no store id (BusinessUnit/UnitID, BusinessUnit/BusinessUnitNumber or RetailStoreID)"
        )
    workstation = child_text(tx, "WorkstationID")
    if workstation is None:
        raise PoslogError("no WorkstationID")
    sequence = child_text(tx, "SequenceNumber")
    if sequence is None:
        raise PoslogError("no SequenceNumber")
    occurred_at, offset = _moment(tx, holder, tz)
    business_day = _business_day(tx, context, occurred_at, offset)
    return Header(store, workstation, sequence, occurred_at, offset, business_day)


def _store(holder: Element) -> str | None:
    units = [
        u
        for bu in children(holder, "BusinessUnit")
        for u in children(bu, "UnitID", "BusinessUnitNumber")
    ]
    # V6 files may list several business units (store, country); the store is the one typed
    # RetailStore, or the only/first one.
    for unit in units:
        # Extenda writes the id as the Name of an empty <UnitID Name="014"/>.
        named = text(unit) or attr(unit, "Name")
        if attr(unit, "TypeCode") in (None, "RetailStore") and named:
            return named
    first = (text(units[0]) or attr(units[0], "Name")) if units else None
    return first or child_text(holder, "RetailStoreID")


def currency_of(tx: Element, default: str) -> str:
    """Transaction currency: CurrencyCode, else the first amount attribute, else the store's."""
    code = child_text(tx, "CurrencyCode")
    retail = body(tx)
    if code is None and retail is not None:
        code = child_text(retail, "CurrencyCode")
        for element in retail.iter():
            if code is not None:
                break
            found = attr(element, "Currency") or attr(element, "CurrencyCode")
            if found and found.upper() != "XXX":
                code = found
    code = (code or default).upper()
    if not re.fullmatch(r"[A-Z]{3}", code):
        raise PoslogError("currency {!r} is not an ISO 4217 code", code)
    return code


def parse_time(value: str | None, tz: tzinfo) -> tuple[datetime, int]:
    """(UTC instant, local UTC offset in minutes). Zone-less times are local to ``tz``; UTC
    times ("Z") get ``tz``'s offset, since the till's own offset is unknown then."""
    if value is None:
        raise PoslogError("no time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise PoslogError("{!r} is not an ISO 8601 date-time", value) from exc
    try:
        if parsed.tzinfo is None:
            local_time = parsed.replace(tzinfo=tz)
        elif parsed.utcoffset() == UTC.utcoffset(None):
            local_time = parsed.astimezone(tz)
        else:
            local_time = parsed
        offset = local_time.utcoffset()
        minutes = int(offset.total_seconds() // 60) if offset is not None else 0
        return local_time.astimezone(UTC), minutes
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise PoslogError("{!r} is out of the supported date range", value) from None


def _moment(tx: Element, retail: Element, tz: tzinfo) -> tuple[datetime, int]:
    """When the sale happened: its end (the latest EndDateTime; V6 may type several), else
    its begin, else the receipt's time, else when the till logged it (POSLogDateTime: all an
    online order may carry). A BusinessDayDate alone is no time of day: refused, not guessed."""
    for name in _TIMES:
        values = [text(e) for holder in (tx, retail) for e in children(holder, name)]
        moments = [parse_time(v, tz) for v in values if v]
        if moments:
            return max(moments)
    raise PoslogError(f"no time: none of {', '.join(_TIMES)} (BusinessDayDate has no time)")


def _business_day(tx: Element, context: Element | None, occurred_at: datetime, offset: int) -> date:
    day = business_day_of(tx) or (business_day_of(context) if context is not None else None)
    if day is None:  # fall back to the local calendar date of the sale
        return (occurred_at + timedelta(minutes=offset)).date()
    return day
