"""One ``TypedDict`` per event type: the decoded Avro record a consumer receives
(``Record.sale()``, ``Record.payment()``...).

Generated from the schemas under ``schemas/`` by ``tillstream schemas types``
(``tillstream/core/event_types.py``): do not edit by hand.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal, TypedDict
from uuid import UUID

CustomerAction = Literal["ERASE", "REENROL"]
"""ERASE: right to erasure, forget the customer and ignore later events for the id; REENROL: the
customer joined again, start a new profile from later events.
"""


class CustomerRequest(TypedDict):
    """A data-protection request about a loyalty customer, for every head-office service that keeps
    customer data.
    """

    event_id: str
    """Unique id of this event."""
    customer_id: str
    """Opaque loyalty customer id the request is about; the Kafka message key."""
    action: CustomerAction
    """What is asked."""
    reference: str | None
    """Case or ticket reference of the request, if any (never personal data)."""
    requested_at: datetime
    """When the request was made, in UTC."""


DesiredLifecycle = Literal["ACTIVE", "SUSPENDED", "DECOMMISSIONED", "OTHER"]


class TillDesired(TypedDict):
    lifecycle: DesiredLifecycle
    """ACTIVE; SUSPENDED (lost or stolen: its requests refused at the edge, also offline
    afterwards); DECOMMISSIONED (for good).
    """
    token_sha256: str | None
    """SHA-256 (hex) of the till's new bearer token; the token itself never travels. Null: the
    edge's own tokens file decides.
    """
    previous_token_until: datetime | None
    """Until when the token before it is still taken (a rotation's overlap); null: not at all."""
    previous_token_sha256: str | None
    """SHA-256 of that previous token, when head office set it (else the tokens file's)."""


class DeviceDesired(TypedDict):
    settings_json: str
    """The device's table as the devices file holds it (protocol, port, line settings, prefix...),
    as a JSON object: checked by the same rules as the file, at publishing and at the edge.
    """


class EdgeDesired(TypedDict):
    log_level: str | None
    """DEBUG, INFO, WARNING or ERROR; null: the edge's own."""
    max_event_age_seconds: int | None
    """The plausibility window (TILLSTREAM_EDGE_MAX_EVENT_AGE); null: the edge's own."""
    max_future_seconds: int | None
    """TILLSTREAM_EDGE_MAX_FUTURE; null: the edge's own."""


class EstateDesired(TypedDict):
    """What head office decides for one thing of a store's estate (the edge, a till or a serial
    device): published by 'tillstream fleet set|apply|rotate-token' on a compacted topic keyed
    by store and target, so each edge finds its current desired state there, also after days
    offline. A tombstone gives the thing back to the store's own configuration. Every edge
    applies its store's and reports what it applied (estate_report.applied).
    """

    change_id: UUID
    """Unique id of this change."""
    store_id: str
    """The store."""
    target: str
    """What it is for: edge, till/<till id>, device/<device name>. With the store, the key."""
    version: int
    """Increases with every change of this target (the one before, plus one): the edge reports the
    version it applied.
    """
    published_at: datetime
    """When head office published it, UTC."""
    published_by: str
    """Who published it: the signed-in person, the API token or the machine's user."""
    till: TillDesired | None
    """For target till/<id>."""
    device: DeviceDesired | None
    """For target device/<name>: applied without restarting the edge."""
    edge: EdgeDesired | None
    """For target edge: settings safe to change remotely."""


ReportReason = Literal["HEARTBEAT", "CHANGE", "START", "STOP", "OTHER"]
"""Why it was sent. OTHER is what an older reader sees for a reason added later; never written."""


class EdgeState(TypedDict):
    version: str
    """tillstream's version on the edge."""
    timezone: str
    """The store's IANA time zone (TILLSTREAM_STORE_TIMEZONE): its opening hours and trading days
    are local.
    """
    started_at: datetime
    """When the edge service started, UTC."""
    clock_skew_ms: int | None
    """The edge's clock minus the broker's, in milliseconds, from its last report's append time;
    null until measured.
    """
    outbox_depth: int
    """Events accepted and not yet acknowledged by Kafka."""
    outbox_unsent_bytes: int
    """Their encoded size, bytes."""
    oldest_unsent_at: datetime | None
    """When the oldest of them was accepted; null when none waits."""
    quarantine_depth: int
    """Events quarantined (Kafka refused them for good), waiting for the store's IT."""
    set_aside_open: int
    """POSLog transactions set aside and not resolved."""
    masterdata_caught_up_at: datetime | None
    """When the store's copy of the master data last caught up with its topics; null: never."""
    disk_free_bytes: int
    """Free space on the outbox's file system, bytes."""
    last_publish_at: datetime | None
    """When Kafka last acknowledged one of its events; null: not since it started."""
    kafka_connected: bool
    """Whether its producer reaches Kafka now (the report itself may travel after a reconnection).
    """
    log_level: str
    """The log level in force."""
    max_event_age_seconds: int
    """The plausibility window in force: the oldest occurred_at the live channels take."""
    max_future_seconds: int
    """How far ahead of the edge's clock a live event may be."""


DeviceKind = Literal["SCANNER", "SCALE", "OTHER"]


class DeviceState(TypedDict):
    """One serial device, in the spirit of UnifiedPOS CheckHealth and its statistics."""

    device_id: str
    """Its name in the devices file."""
    kind: DeviceKind
    """What it is."""
    protocol: str
    """The protocol the edge speaks with it: scanner, mt-sics, toledo-8217."""
    port: str
    """The serial port it is on."""
    connected: bool
    """Whether its port is open now."""
    connected_since: datetime | None
    """When its port last opened (null while disconnected)."""
    disconnected_since: datetime | None
    """When its port was lost or last failed to open (null while connected)."""
    last_frame_at: datetime | None
    """When it last sent a frame."""
    frames: int
    """Frames read since the edge started."""
    communication_errors: int
    """Frames that could not be read, timeouts and port errors since the edge started (UnifiedPOS:
    CommunicationErrorCount).
    """
    model: str | None
    """Model, where its protocol tells (MT-SICS I2)."""
    firmware: str | None
    """Firmware revision, where its protocol tells (MT-SICS I3; UnifiedPOS: FirmwareRevision)."""
    serial_number: str | None
    """Its serial number, where its protocol tells (MT-SICS I4)."""
    scale_zero: bool | None
    """A scale: whether it last read zero (null: not a scale or not known)."""
    scale_stable: bool | None
    """A scale: whether its last reading was stable."""
    scale_status: str | None
    """A scale: what it last said of itself (ok, overload, underload, motion, error code), never a
    weight.
    """


TillLifecycle = Literal["ACTIVE", "SUSPENDED", "DECOMMISSIONED", "OTHER"]


ConditionState = Literal["OK", "WARNING", "FAULT", "OTHER"]


class TillCondition(TypedDict):
    code: str
    """What it is about: printer_paper, cash_drawer, pin_pad, printer, scanner, network, disk or a
    vendor's own code ([a-z0-9_.-], at most 64).
    """
    state: ConditionState
    """OK, WARNING (paper low, drawer open too long) or FAULT (pin pad disconnected)."""
    detail: str | None
    """A short word from the till (low, open, disconnected), at most 64 characters, no personal
    data.
    """
    since: datetime | None
    """Since when, by the till."""


class TillState(TypedDict):
    till_id: str
    """The till (workstation) id."""
    lifecycle: TillLifecycle
    """As the edge applies it: a suspended or decommissioned till's requests are refused."""
    last_seen_at: datetime | None
    """When it last posted anything (null: never, only named by head office)."""
    last_receipt: str | None
    """The sequence number of the last sale or till event it posted, as the till wrote it."""
    software: str | None
    """Its software and version, from the X-Till-Software header it sends (at most 128 characters).
    """
    refused_while_suspended: int
    """Requests refused since it was suspended or decommissioned."""
    status_at: datetime | None
    """When it last posted its status (POST /v1/tills/status)."""
    conditions: list[TillCondition]
    """What the till last reported of itself."""


class AppliedState(TypedDict):
    target: str
    """What it is for, as the desired state's key names it: edge, till/<id>, device/<id>."""
    version: int
    """The desired version the edge last received for it."""
    applied: bool
    """Whether that version is in force."""
    error: str | None
    """Why not (a port that does not exist...), naming settings, never secrets."""
    at: datetime
    """When it was applied or refused."""


class EstateReport(TypedDict):
    """What one store edge reports of itself, the tills that post to it and the serial devices it
    drives: on a heartbeat (every 30 s by default) and on every change. Head office's fleet
    service reads it (docs/fleet.md). Nothing personal or secret: no tokens, no card data, no
    cashier ids.
    """

    report_id: UUID
    """Unique id of this report."""
    store_id: str
    """Store identifier; the Kafka message key."""
    edge_id: str
    """The edge instance: a random id made when its outbox is created (a replaced edge gets a new
    one).
    """
    sent_at: datetime
    """When the edge made this report, by its own clock, in UTC. The topic stamps each record with
    the broker's time of append (LogAppendTime): the difference is the store's clock skew.
    """
    reason: ReportReason
    """Why it was sent: the heartbeat, a change (a device unplugged, a till's status, a desired
    state applied), the edge starting or stopping cleanly.
    """
    heartbeat_seconds: int
    """The edge's heartbeat period: head office calls it silent after a few of these without a
    report.
    """
    edge: EdgeState
    """The edge service itself."""
    devices: list[DeviceState]
    """Every serial device the edge drives (its devices file, and settings from head office)."""
    tills: list[TillState]
    """Every till that has posted to the edge (or that head office named), with what it says of
    itself.
    """
    applied: list[AppliedState]
    """Head office's desired state as the edge applied it, per target: desired and reported side by
    side.
    """


class Item(TypedDict):
    """An item of head office's item master, as every store's edge keeps it. On the compacted topic
    tillstream.items, keyed by SKU: compaction keeps the current record per item; a tombstone
    (null value) deletes it.
    """

    event_id: str
    """Unique id of this version of the item (a new one each time head office publishes a change).
    """
    sku: str
    """Stock-keeping unit: the item's id, and the message key."""
    gtins: list[str]
    """Barcodes (GTIN-8, -12, -13 or -14, digits only, check digit valid) that scan as this item."""
    description: str
    """What the till shows and prints."""
    unit_of_measure: str
    """UN/ECE Recommendation 20 code the item is sold in: EA (piece), KGM, GRM, LBR, LTR, MTR..."""
    weighed: bool
    """Sold by weight from a scale (its quantity is the weight)."""
    stock_item: bool
    """Kept in stock. False for deposits, fees, gift cards and services: the ERP does not count
    them.
    """
    tax_class: str | None
    """The retailer's tax class code, if it has one."""
    reorder_point: Decimal | None
    """For the ERP: the stock level at which a store should reorder, in the unit of measure; null:
    no reorder point.
    """
    lead_time_days: int | None
    """For the ERP: days from order to delivery from the supplier."""
    supplier: str | None
    """For the ERP: the supplier's id, if known."""
    published_at: datetime
    """When head office published this version, in UTC."""


PaymentMethod = Literal[
    "CASH",
    "CARD",
    "MOBILE",
    "GIFT_CARD",
    "VOUCHER",
    "STORE_CREDIT",
    "LOYALTY_POINTS",
    "OTHER",
]
"""How the customer paid."""


PaymentStatus = Literal["AUTHORIZED", "CAPTURED", "DECLINED", "REFUNDED", "VOIDED"]
"""Outcome of the payment."""


class CardDetails(TypedDict):
    """What may be kept of a payment card under PCI DSS."""

    brand: str
    """Card scheme, e.g. VISA, MASTERCARD, AMEX."""
    last_four: str
    """Last four digits of the card number; nothing more of it."""
    token: str | None
    """Payment processor's token for the card, if any."""


class Payment(TypedDict):
    """A payment (tender) made for a sale. Card payments carry only brand, last four digits and a
    token: there is no place for a card number.
    """

    event_id: str
    """Unique id of this event."""
    sale_event_id: UUID
    """event_id of the sale this payment belongs to."""
    store_id: str
    """Store identifier; the Kafka message key."""
    terminal_id: str
    """POS terminal that took the payment."""
    occurred_at: datetime
    """When the payment was made, in UTC."""
    method: PaymentMethod
    """Payment method."""
    status: PaymentStatus
    """Payment status; only CAPTURED moves money in, REFUNDED moves it out."""
    amount: Decimal
    """Amount of the payment in currency, positive (status gives the direction)."""
    currency: str
    """ISO 4217 currency code."""
    card: CardDetails | None
    """Card details, for card payments only."""


class Price(TypedDict):
    """A list price of an item, chain-wide or for one store, valid for a window of time. On the
    compacted topic tillstream.prices, keyed by store (or * for the chain), SKU and start of
    validity: compaction keeps the current record per (store, item, start), so a price change
    published ahead of its day does not replace today's price; a tombstone (null value) deletes
    it. A store's price wins over the chain's where both are valid.
    """

    event_id: str
    """Unique id of this version of the price."""
    sku: str
    """The item priced."""
    store_id: str | None
    """The store this price is for; null: the chain-wide price."""
    amount: Decimal
    """Price per unit of measure, tax as the chain's prices are quoted."""
    currency: str
    """ISO 4217 code of the amount."""
    valid_from: datetime | None
    """Valid from this instant (UTC), when given as a time with an offset."""
    valid_from_day: date | None
    """Valid from the start of this day in each store's own time zone, when given as a date. At
    most one of valid_from and valid_from_day; neither: valid since ever.
    """
    valid_until: datetime | None
    """Valid until this instant (UTC, exclusive), when given as a time with an offset."""
    valid_until_day: date | None
    """Valid through the end of this day (inclusive) in each store's own time zone, when given as a
    date. At most one of valid_until and valid_until_day; neither: open-ended.
    """
    published_at: datetime
    """When head office published this version, in UTC."""


ReorderBasis = Literal["STATIC", "VELOCITY"]
"""STATIC: the item master's reorder point; VELOCITY: recent daily sales times supplier lead time
plus safety days.
"""


class ReorderSuggestion(TypedDict):
    """Head office's ERP suggests reordering a SKU for a store: its stock on hand fell to or below
    the reorder point. Published once per crossing, not once per sale.
    """

    event_id: str
    """Unique id of this event."""
    store_id: str
    """Store whose stock is low; the Kafka message key."""
    sku: str
    """Retailer's stock keeping unit."""
    on_hand: Decimal
    """Stock on hand when the reorder point was crossed."""
    reorder_point: Decimal
    """The reorder point that was crossed."""
    suggested_quantity: Decimal
    """Quantity to order to bring stock back to cover, never negative."""
    basis: ReorderBasis
    """How the reorder point was set."""
    lead_time_days: int
    """Supplier lead time used, in days."""
    trigger_event_id: UUID
    """event_id of the sale or stock movement that crossed the point."""
    occurred_at: datetime
    """When the crossing happened (time of the triggering event), in UTC."""


LineKind = Literal["SALE", "RETURN", "VOID"]
"""SALE sells goods, RETURN takes goods back, VOID cancels an earlier line of the same receipt."""


class SaleLine(TypedDict):
    """One line of a receipt."""

    line_number: int
    """Position of the line on the receipt, from 1."""
    kind: LineKind
    """What the line does to stock and revenue."""
    sku: str
    """Retailer's stock keeping unit."""
    gtin: str | None
    """GTIN (EAN/UPC) scanned for the item, check digit validated, if any."""
    description: str | None
    """Item description as printed, if the till sends one."""
    quantity: Decimal
    """Quantity, always positive; fractional for weighed goods (kilograms)."""
    unit_of_measure: str
    """Unit of quantity: EA for each, KG, G, L, M."""
    unit_price: Decimal
    """Price of one unit before discount, in currency."""
    discount_amount: Decimal
    """Total discount granted on this line (positive number)."""
    tax_amount: Decimal
    """Tax included in or added to this line."""
    extended_amount: Decimal
    """Amount charged for the line: quantity x unit price - discount (positive for RETURN lines
    too; kind gives the sign).
    """
    stock_item: bool
    """Merchandise that moves stock (true), or a line that is money only: a bottle deposit or its
    return, a fee, a gift card sale, a coupon (false). Its amounts count in the totals and in
    revenue either way; a false line moves no stock and sells no units. Since v2; v1 lines read
    as true.
    """
    list_price: Decimal | None
    """Set by the edge where the line's unit price differs from the list price valid for the store
    when the sale was made (a price override at the till): that list price. Null: the same
    price, or no list price known (an item head office has not priced). Since v3.
    """


class SaleTotals(TypedDict):
    """Totals of a receipt."""

    gross_amount: Decimal
    """Sum of extended amounts of SALE lines minus RETURN and VOID lines, before receipt-level
    discount.
    """
    discount_amount: Decimal
    """Receipt-level discount not already in line amounts."""
    tax_amount: Decimal
    """Total tax of the receipt."""
    net_amount: Decimal
    """Amount due from the customer (negative when money is paid back)."""


class Sale(TypedDict):
    """A completed sale (receipt) at a store till, as rung up. Returns and voided lines travel as
    line kinds inside the sale. v2 adds SaleLine.stock_item, v3 SaleLine.list_price.
    """

    event_id: str
    """Unique id of this event; a till that resends the same sale sends the same id."""
    store_id: str
    """Store identifier; also the Kafka message key, so one store's events stay in order."""
    terminal_id: str
    """POS terminal (workstation) that rang up the sale."""
    receipt_number: str
    """Receipt or transaction sequence number as printed by the till."""
    business_day: date
    """Trading day the sale belongs to (may differ from the calendar date after midnight)."""
    occurred_at: datetime
    """When the sale was completed, in UTC."""
    utc_offset_minutes: int
    """The store's UTC offset at occurred_at, in minutes, so local time can be rebuilt."""
    cashier_id: str | None
    """Operator who rang up the sale, if known."""
    customer_id: str | None
    """Opaque loyalty customer id, if a card was presented. Never a name or other personal data."""
    currency: str
    """ISO 4217 currency code of every amount in this sale, e.g. EUR."""
    lines: list[SaleLine]
    """Line items in the order rung up."""
    totals: SaleTotals
    """Receipt totals as computed by the till."""


class SaleVoid(TypedDict):
    """A post-void: a completed sale cancelled afterwards at the till (wrong tender, customer
    walked away). Every consumer undoes the sale it names, as if it had never happened,
    whichever of the two it reads first; the sales audit also counts the post-void per till and
    cashier.
    """

    event_id: str
    """Unique id of this post-void (POSLog: uuid5 of the voiding transaction's store, workstation,
    sequence number and business day).
    """
    voided_event_id: UUID
    """event_id of the sale this post-void cancels. A sale is cancelled at most once: a second
    post-void of the same sale changes nothing.
    """
    store_id: str
    """Store identifier; the Kafka message key. The cancelled sale is of the same store."""
    terminal_id: str
    """POS terminal (workstation) on which the post-void was done."""
    receipt_number: str | None
    """The post-void transaction's own receipt or sequence number, where the till numbers it (it
    then takes a number of the till's sequence, so the audit sees no gap).
    """
    voided_terminal_id: str | None
    """Terminal of the cancelled sale, as the post-void names it; null: terminal_id."""
    voided_receipt_number: str | None
    """Receipt or sequence number of the cancelled sale, as the post-void names it, if it does."""
    business_day: date
    """Business day of the post-void (the cancelled sale keeps its own)."""
    occurred_at: datetime
    """When the sale was voided, in UTC."""
    utc_offset_minutes: int
    """The till's offset from UTC at occurred_at, in minutes (local time = occurred_at + offset)."""
    cashier_id: str | None
    """Operator (cashier or supervisor) who voided the sale, if known; never a name."""
    reason: str | None
    """Reason code the till gives, if any."""
    currency: str | None
    """ISO 4217 code of voided_amount; null when there is none."""
    voided_amount: Decimal | None
    """The cancelled sale's net amount (what the customer was due) as the post-void states it, if
    it does: shown by the audit before the sale itself is read. Consumers undo the sale from the
    sale's own record.
    """
    source: str
    """Channel that produced the event: api, poslog."""


QuantityType = Literal["CHANGE", "COUNT"]
"""CHANGE adds quantity (signed) to stock on hand; COUNT sets stock on hand to quantity."""


StockReason = Literal[
    "RECEIVED",
    "COUNTED",
    "DAMAGED",
    "SHRINK",
    "TRANSFER_IN",
    "TRANSFER_OUT",
    "RETURN_TO_VENDOR",
    "ADJUSTMENT",
]
"""Why stock moved."""


class StockMovement(TypedDict):
    """A change to a store's stock other than a sale: deliveries, counts, damage, transfers."""

    event_id: str
    """Unique id of this event."""
    store_id: str
    """Store identifier; the Kafka message key."""
    sku: str
    """Retailer's stock keeping unit."""
    gtin: str | None
    """GTIN scanned for the item, if any."""
    quantity_type: QuantityType
    """How to read quantity."""
    quantity: Decimal
    """Signed change, or the absolute counted quantity; fractional for weighed goods."""
    unit_of_measure: str
    """Unit of quantity: EA, KG, G, L, M."""
    reason: StockReason
    """Reason for the movement."""
    reference: str | None
    """Delivery note, transfer or count session reference, if any."""
    occurred_at: datetime
    """When the movement happened, in UTC."""
    source: str
    """Channel that produced the event: api, poslog, scanner, scale."""


TillEventKind = Literal[
    "SIGN_ON",
    "SIGN_OFF",
    "TILL_OPEN",
    "TILL_CLOSE",
    "OPENING_FLOAT",
    "PICKUP",
    "LOAN",
    "PAID_IN",
    "PAID_OUT",
    "NO_SALE",
    "TENDER_DECLARATION",
    "STORE_DAY_OPEN",
    "STORE_DAY_CLOSE",
    "OTHER",
]
"""What happened. OTHER is what an older reader sees for a kind added in a later version; it is
never written.
"""


TenderType = Literal[
    "CASH",
    "CARD",
    "MOBILE",
    "GIFT_CARD",
    "VOUCHER",
    "STORE_CREDIT",
    "LOYALTY_POINTS",
    "OTHER",
]
"""Tender type, as a payment's method."""


class TillAmount(TypedDict):
    """One tender type's amount."""

    tender: TenderType
    """Tender type."""
    amount: Decimal
    """Amount in currency, zero or positive (the kind gives the direction)."""


class TillEvent(TypedDict):
    """A control event of a till or a store: operator sign-on/off, till open and close
    (settlement), opening float, pickup, loan, paid in/out, no-sale, tender declaration, store-
    day open and close. What a store-day close and a till balance are made of (sales audit).
    Amounts are positive; the kind gives the direction.
    """

    event_id: str
    """Unique id of this event (POSLog: uuid5 of store, workstation, sequence number and business
    day, so a resent file gives the same id).
    """
    store_id: str
    """Store identifier; the Kafka message key."""
    terminal_id: str
    """Workstation (till) the event happened on; for store-day events the workstation that opened
    or closed the day.
    """
    kind: TillEventKind
    """What happened; see docs/topics.md for what each kind means and which carry amounts."""
    sequence_number: str | None
    """The till's own transaction sequence number, where the POS has one (gaps show missing
    transactions).
    """
    operator_id: str | None
    """Operator (cashier) id, where there is one; never a name."""
    business_day: date
    """Business day the event belongs to (a till closed after midnight still closes the previous
    day).
    """
    occurred_at: datetime
    """When it happened, in UTC."""
    utc_offset_minutes: int
    """The till's offset from UTC at occurred_at, in minutes (local time = occurred_at + offset)."""
    currency: str | None
    """ISO 4217 code of the amounts; null when there are none."""
    tenders: list[TillAmount]
    """Amounts by tender type: the money moved (float, pickup, loan, paid in/out), counted (tender
    declaration) or expected by the till (till close). Empty for kinds without money.
    """
    reason: str | None
    """Reason code the till gives (paid in/out, no-sale, loan), if any."""
    source: str
    """Channel that produced the event: api, poslog."""


EventType = Literal[
    "customer_request",
    "estate_desired",
    "estate_report",
    "item",
    "payment",
    "price",
    "reorder_suggestion",
    "sale",
    "sale_void",
    "stock_movement",
    "till_event",
]
"""The name of an event type (its schema directory): misspelt, a type error."""

EVENT_TYPES: dict[str, type] = {
    "customer_request": CustomerRequest,
    "estate_desired": EstateDesired,
    "estate_report": EstateReport,
    "item": Item,
    "payment": Payment,
    "price": Price,
    "reorder_suggestion": ReorderSuggestion,
    "sale": Sale,
    "sale_void": SaleVoid,
    "stock_movement": StockMovement,
    "till_event": TillEvent,
}
"""The TypedDict of each event type (the schema's directory name)."""
