"""What a till may POST: the event contracts as validated input models.

Validation happens here, at the edge, so a till hears at once which field is wrong. JSON
numbers are read as exact decimals (never floats); times must carry a zone; card data is
limited to brand, last four digits and a token. Free text, SKUs and GTINs are held to the
rules of ``tillstream.core.identifiers``, field by field, so one answer names every bad field;
ingest then takes these events as checked (``Ingestor.encode(checked=True)``): one scan per
request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    field_validator,
)
from pydantic_core import PydanticCustomError

from tillstream.core import rules
from tillstream.core.events import (  # the schema's enums: one spelling (tillstream schemas types)
    LineKind,
    PaymentMethod,
    PaymentStatus,
    QuantityType,
    StockReason,
    TenderType,
)
from tillstream.core.identifiers import (
    SKU_MAX_LENGTH,
    SKU_PATTERN,
    Problem,
    gtin_problem,
    sku_problem,
    text_problem,
)
from tillstream.core.till_events import WrittenKind


def held_to(rule: Callable[[str], Problem | None]) -> Callable[[Any], Any]:
    """A validator applying one of the core field rules; its problem kind is the error type
    (``card_number`` is what the channel counts the refusal as)."""

    def validate(value: Any) -> Any:
        if isinstance(value, str) and (problem := rule(value)) is not None:
            raise PydanticCustomError(problem.kind, problem.message)
        return value

    return validate


def _currency(value: str) -> str:
    if (problem := rules.currency_problem(value)) is not None:
        raise ValueError(problem)
    return value


# The core's rules are applied to every event again at ingest (``rules.event_problems``); the
# shapes here use their limits so a till hears of a breach field by field, with the types.
Text = Annotated[
    str,
    Field(min_length=1, max_length=rules.IDENTIFIER_MAX_LENGTH),
    AfterValidator(held_to(text_problem)),
]
UtcOffset = Annotated[int, Field(ge=-rules.MAX_UTC_OFFSET_MINUTES, le=rules.MAX_UTC_OFFSET_MINUTES)]
OptText = Annotated[
    str | None, Field(default=None, max_length=500), AfterValidator(held_to(text_problem))
]
Sku = Annotated[
    str,
    Field(min_length=1, max_length=SKU_MAX_LENGTH, pattern=SKU_PATTERN),
    # Before the length and pattern checks, so a card number is refused as one (and counted
    # under its own reason) even when it is also too long or has spaces in it.
    BeforeValidator(held_to(sku_problem)),
]
Gtin = Annotated[str | None, Field(default=None), AfterValidator(held_to(gtin_problem))]
Currency = Annotated[str, AfterValidator(_currency)]
Money = Annotated[Decimal, Field(max_digits=18, decimal_places=4, allow_inf_nan=False)]
PositiveMoney = Annotated[
    Decimal, Field(ge=0, max_digits=18, decimal_places=4, allow_inf_nan=False)
]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=3, allow_inf_nan=False)]
SignedQuantity = Annotated[Decimal, Field(max_digits=15, decimal_places=3, allow_inf_nan=False)]
Unit = Literal["EA", "KG", "G", "L", "M"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: UUID
    store_id: Text
    occurred_at: AwareDatetime

    def record(self) -> dict[str, Any]:
        """The Avro record of this event (the ``type`` tag dropped, ids as strings; a store-day
        event that gives no ``utc_offset_minutes`` is in the zone of its ``occurred_at``)."""
        data = self.model_dump(exclude={"type"})
        data["event_id"] = str(self.event_id)
        if "utc_offset_minutes" in data and "utc_offset_minutes" not in self.model_fields_set:
            offset = self.occurred_at.utcoffset()
            data["utc_offset_minutes"] = int(offset.total_seconds() // 60) if offset else 0
        return data


class SaleLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    line_number: int = Field(ge=1, le=100_000)
    kind: LineKind = "SALE"
    sku: Sku
    gtin: Gtin = None
    description: OptText = None
    quantity: Quantity
    unit_of_measure: Unit = "EA"
    unit_price: PositiveMoney
    discount_amount: PositiveMoney = Decimal(0)
    tax_amount: Money = Decimal(0)
    extended_amount: PositiveMoney
    # issue #12: false for deposits, fees, gift card sales, coupons (no stock, no units).
    stock_item: StrictBool = True
    # Sale v3 (issue 15): set by the edge from the item master (the list price valid when the
    # sale was made, where the unit price differs); a till sending the whole record sends null.
    list_price: None = None

    @field_validator("list_price", mode="before")
    @classmethod
    def _set_by_the_edge(cls, value: Any) -> None:
        if value is not None:
            raise ValueError(
                "is set by the edge from the item master (the list price valid when the sale "
                "was made); send null or leave it out"
            )
        return None


class SaleTotalsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gross_amount: Money
    discount_amount: PositiveMoney = Decimal(0)
    tax_amount: Money = Decimal(0)
    net_amount: Money


class SaleIn(_Event):
    type: Literal["sale"]
    terminal_id: Text
    receipt_number: Text
    business_day: date
    utc_offset_minutes: UtcOffset = 0
    cashier_id: OptText = None
    customer_id: OptText = None
    currency: Currency
    lines: list[SaleLineIn] = Field(min_length=1, max_length=2000)
    totals: SaleTotalsIn

    @field_validator("lines")
    @classmethod
    def _unique_line_numbers(cls, lines: list[SaleLineIn]) -> list[SaleLineIn]:
        numbers = [ln.line_number for ln in lines]
        if len(set(numbers)) != len(numbers):
            raise ValueError("line_number values must be unique within a sale")
        return lines


class CardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    brand: Annotated[str, Field(min_length=2, max_length=20, pattern=r"^[A-Z][A-Z0-9_ -]*$")]
    last_four: Annotated[str, Field(pattern=r"^\d{4}$")]
    token: OptText = None


class PaymentIn(_Event):
    type: Literal["payment"]
    sale_event_id: UUID
    terminal_id: Text
    method: PaymentMethod
    status: PaymentStatus
    amount: PositiveMoney
    currency: Currency
    card: CardIn | None = None

    def record(self) -> dict[str, Any]:
        data = super().record()
        data["sale_event_id"] = str(self.sale_event_id)
        return data


class StockMovementIn(_Event):
    type: Literal["stock_movement"]
    sku: Sku
    gtin: Gtin = None
    quantity_type: QuantityType
    quantity: SignedQuantity
    unit_of_measure: Unit = "EA"
    reason: StockReason
    reference: OptText = None
    source: Literal["api"] = "api"


# -- till and store-day control events (issue #12): sign-on, pickups, declarations... -----


class TillAmountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tender: TenderType
    amount: PositiveMoney


class ControlEventIn(_Event):
    """A till or store-day control event; which kinds carry amounts: tillstream.core.till_events."""

    type: Literal["till_event"]
    terminal_id: Text
    kind: WrittenKind
    sequence_number: OptText = None
    operator_id: OptText = None
    business_day: date
    utc_offset_minutes: UtcOffset = 0
    currency: Annotated[Currency | None, Field(default=None)] = None
    tenders: list[TillAmountIn] = Field(default_factory=list, max_length=50)
    reason: OptText = None
    source: Literal["api"] = "api"


class SaleVoidIn(_Event):
    """A post-void: a completed sale cancelled afterwards at the till (``voided_event_id``);
    its rules are :func:`tillstream.core.rules.sale_void_problems`."""

    type: Literal["sale_void"]
    voided_event_id: UUID
    terminal_id: Text
    receipt_number: OptText = None
    voided_terminal_id: OptText = None
    voided_receipt_number: OptText = None
    business_day: date
    utc_offset_minutes: UtcOffset = 0
    cashier_id: OptText = None
    reason: OptText = None
    currency: Annotated[Currency | None, Field(default=None)] = None
    voided_amount: PositiveMoney | None = None
    source: Literal["api"] = "api"

    def record(self) -> dict[str, Any]:
        data = super().record()
        data["voided_event_id"] = str(self.voided_event_id)
        return data


AnyEventIn = SaleIn | PaymentIn | StockMovementIn | ControlEventIn | SaleVoidIn
EventIn = Annotated[AnyEventIn, Field(discriminator="type")]
ONE_EVENT: TypeAdapter[AnyEventIn] = TypeAdapter(EventIn)
EVENT_LIST: TypeAdapter[list[AnyEventIn]] = TypeAdapter(
    Annotated[list[EventIn], Field(min_length=1, max_length=10_000)]
)
