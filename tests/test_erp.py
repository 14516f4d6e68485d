"""The ERP inventory consumer: through the real Applier on SQLite and a real PostgreSQL, and
end to end through the real broker."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.consumer_support import publish, running, scalar, wait_until
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, REORDER_SUGGESTIONS, store_key
from tillstream.dev.samples import sample_sale, sample_stock_movement, with_totals
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.erp.queries import stock_levels
from tillstream_consumers.runtime.api import PermanentError, Record
from tillstream_consumers.runtime.applier import Applier, BatchOutcome
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.validity import unbelievable

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_offsets = itertools.count()
_clock = itertools.count()


# -- building events ------------------------------------------------------------------


def sale(store: str, *lines: tuple[str, str, str], day: date | None = None) -> dict[str, Any]:
    """A sample sale with ``lines`` of (kind, sku, quantity), on business ``day`` (then at
    T0's time of that day: a business day is the date of its sale, give or take a day)."""
    at = T0 + timedelta(seconds=next(_clock))
    if day is not None:
        at += timedelta(days=(day - T0.date()).days)
    value = sample_sale(store, at=at)
    template = value["lines"][0]
    value["lines"] = [
        {**template, "line_number": n, "kind": kind, "sku": sku, "quantity": Decimal(q)}
        for n, (kind, sku, q) in enumerate(lines, start=1)
    ]
    value["business_day"] = day or at.date()
    return with_totals(value)


def movement(
    store: str,
    sku: str,
    quantity: str,
    quantity_type: str = "CHANGE",
    reason: str = "RECEIVED",
    at: datetime | None = None,
) -> dict[str, Any]:
    value = sample_stock_movement(store, at=at or T0 + timedelta(seconds=next(_clock)))
    value.update(sku=sku, quantity=Decimal(quantity), quantity_type=quantity_type, reason=reason)
    return value


def records(*values: dict[str, Any]) -> list[Record]:
    out = []
    for value in values:
        event = "sale" if "lines" in value else "stock_movement"
        event = "sale_void" if "voided_event_id" in value else event
        topic = EVENT_TOPICS[event].name
        key = store_key(value["store_id"])
        out.append(Record(topic, 0, next(_offsets), key, event, value, 0))
    return out


# -- fixtures and helpers -------------------------------------------------------------


class Erp:
    """An ERP consumer behind the real Applier, on its own database; records the runtime
    would dead-letter (``validity.py``) raise as they would be set aside, before apply."""

    def __init__(self, db_url: str, codec: AvroCodec, settings: Settings) -> None:
        self.db = Database(db_url)
        self.codec = codec
        self.applier = Applier(ErpInventory(settings), self.db, codec.encode)
        self.applier.prepare()

    def apply(self, *values: dict[str, Any]) -> BatchOutcome:
        return self.apply_records(records(*values))

    def apply_records(self, batch: list[Record]) -> BatchOutcome:
        for r in batch:
            if (refusal := unbelievable(r)) is not None:
                raise refusal
        positions: dict[tuple[str, int], int] = {}
        for r in batch:
            positions[(r.topic, r.partition)] = max(
                positions.get((r.topic, r.partition), 0), r.offset + 1
            )
        return self.applier.apply(batch, positions)

    def on_hand(self, store: str, sku: str) -> Decimal | None:
        levels = stock_levels(self.db, store, sku)
        return levels[0].on_hand if levels else None

    def ledger(self, store: str) -> list[tuple[Any, ...]]:
        return self.db.fetchall(
            "SELECT sku, qty_change, kind FROM erp_ledger WHERE store_id = ? "
            "ORDER BY occurred_at, event_id, line_no",
            (store,),
        )

    def suggestions(self) -> list[dict[str, Any]]:
        """Reorder suggestions queued in the runtime's outbox (decoded), oldest first."""
        found = []
        for _id, topic, key, value in self.applier.pending_outgoing():
            assert topic == REORDER_SUGGESTIONS.name
            decoded = self.codec.decode(value)
            assert decoded.event == "reorder_suggestion"
            assert key == store_key(decoded.record["store_id"])
            found.append(decoded.record)
        return found

    def set_item(self, sku: str, point: int | None, lead: int | None = None) -> None:
        self.db.execute(
            "INSERT INTO erp_items (sku, reorder_point, lead_time_days) VALUES (?, ?, ?)",
            (sku, point, lead),
        )


SETTINGS = Settings(erp_velocity_days=10, erp_safety_days=2, erp_default_lead_time_days=3)


@pytest.fixture
def erp(db_url: str, codec: AvroCodec) -> Iterator[Erp]:
    e = Erp(db_url, codec, SETTINGS)
    yield e
    e.db.close()


def store() -> str:
    return f"S-{uuid.uuid4().hex[:8]}"


# -- the ledger and stock on hand -----------------------------------------------------


def test_sales_returns_and_voids_move_stock_exactly(erp: Erp) -> None:
    s = store()
    for sku in ("MILK", "APPLES", "BREAD"):
        erp.set_item(sku, 0)  # static point 0: no suggestions in the way
    erp.apply(movement(s, "MILK", "24"), movement(s, "APPLES", "10.5"))
    erp.apply(
        sale(
            s,
            ("SALE", "MILK", "2"),
            ("SALE", "APPLES", "0.734"),
            ("RETURN", "BREAD", "1"),
            ("VOID", "MILK", "1"),
        )
    )
    assert erp.on_hand(s, "MILK") == Decimal("23.000")
    assert erp.on_hand(s, "APPLES") == Decimal("9.766")
    assert erp.on_hand(s, "BREAD") == Decimal("1.000")
    assert erp.ledger(s) == [
        ("MILK", 24000, "received"),
        ("APPLES", 10500, "received"),
        ("MILK", -2000, "sale"),
        ("APPLES", -734, "sale"),
        ("BREAD", 1000, "return"),
        ("MILK", 1000, "void"),
    ]
    row = erp.db.fetchone(
        "SELECT line_no, reference FROM erp_ledger WHERE store_id = ? AND kind = 'void'", (s,)
    )
    assert row == (4, "T01/000123")
    assert erp.suggestions() == []


def test_change_and_count_movements(erp: Erp) -> None:
    s = store()
    erp.set_item("CHEESE", 0)
    erp.apply(
        movement(s, "CHEESE", "5.250"),
        movement(s, "CHEESE", "-0.125", reason="DAMAGED"),
        movement(s, "CHEESE", "4.9", quantity_type="COUNT", reason="COUNTED"),
    )
    assert erp.on_hand(s, "CHEESE") == Decimal("4.900")
    # A count sets stock on hand and records the difference; counting again changes nothing.
    erp.apply(movement(s, "CHEESE", "4.900", quantity_type="COUNT", reason="COUNTED"))
    erp.apply(movement(s, "CHEESE", "1.5", reason="TRANSFER_IN"))
    assert erp.on_hand(s, "CHEESE") == Decimal("6.400")
    assert erp.ledger(s) == [
        ("CHEESE", 5250, "received"),
        ("CHEESE", -125, "damaged"),
        ("CHEESE", -225, "counted"),
        ("CHEESE", 0, "counted"),
        ("CHEESE", 1500, "transfer_in"),
    ]


def test_an_event_given_twice_is_applied_once(erp: Erp) -> None:
    s = store()
    erp.set_item("MILK", 0)
    first = sale(s, ("SALE", "MILK", "3"))
    outcome = erp.apply(movement(s, "MILK", "10"), first, first)  # twice in one batch
    assert len(outcome.applied) == 2
    assert len(outcome.duplicates) == 1
    again = erp.apply(first)  # and again in a later batch
    assert again.applied == []
    assert [r.event_id for r in again.duplicates] == [first["event_id"]]
    assert erp.on_hand(s, "MILK") == Decimal("7.000")
    assert len(erp.ledger(s)) == 2


@pytest.mark.parametrize(
    ("line", "field"),
    [(("SALE", "MILK", "0"), "quantity"), (("SALE", "MILK", "-1"), "quantity")],
)
def test_a_non_positive_quantity_is_a_permanent_error(
    erp: Erp, line: tuple[str, str, str], field: str
) -> None:
    s = store()
    with pytest.raises(PermanentError, match=rf"lines\[0\]\.{field}: must be positive"):
        erp.apply(sale(s, line))
    assert erp.ledger(s) == []  # the transaction rolled back


def test_an_unknown_line_kind_is_a_permanent_error(erp: Erp) -> None:
    s = store()
    good = sale(s, ("SALE", "MILK", "1"))
    bad = sale(s, ("SALE", "MILK", "1"), ("EXCHANGE", "MILK", "1"))
    with pytest.raises(PermanentError, match=r"lines: kind must be one of SALE, RETURN, VOID"):
        erp.apply(good, bad)
    assert erp.ledger(s) == []
    assert erp.on_hand(s, "MILK") is None


# -- reorder suggestions --------------------------------------------------------------


def test_static_reorder_point_fires_once_per_crossing_and_rearms(erp: Erp) -> None:
    s = store()
    erp.set_item("MILK", 5000, lead=4)
    erp.apply(movement(s, "MILK", "10"))
    erp.apply(sale(s, ("SALE", "MILK", "3")))  # 7: above the point
    assert erp.suggestions() == []
    crossing = sale(s, ("SALE", "MILK", "2"))  # 5: at the point
    assert erp.apply(crossing).published == 1
    assert erp.apply(sale(s, ("SALE", "MILK", "1"))).published == 0  # 4: still below
    erp.apply(movement(s, "MILK", "0.5"))  # 4.5: still below
    erp.apply(movement(s, "MILK", "10"))  # 14.5: re-armed
    second = sale(s, ("SALE", "MILK", "10.5"))  # 4
    erp.apply(second)
    suggestions = erp.suggestions()
    assert [str(x["trigger_event_id"]) for x in suggestions] == [
        crossing["event_id"],
        second["event_id"],
    ]
    first = suggestions[0]
    assert first["store_id"] == s and first["sku"] == "MILK"
    assert first["on_hand"] == Decimal("5.000")
    assert first["reorder_point"] == Decimal("5.000")
    assert first["suggested_quantity"] == Decimal("5.000")
    assert first["basis"] == "STATIC"
    assert first["lead_time_days"] == 4
    assert first["occurred_at"] == crossing["occurred_at"]
    assert suggestions[1]["on_hand"] == Decimal("4.000")
    assert suggestions[1]["suggested_quantity"] == Decimal("6.000")
    uuid.UUID(str(first["event_id"]))


def test_a_count_can_cross_the_point_and_several_skus_fire_in_one_batch(erp: Erp) -> None:
    s = store()
    erp.set_item("A", 2000)
    erp.set_item("B", 1000)
    erp.apply(movement(s, "A", "10"), movement(s, "B", "10"))
    outcome = erp.apply(
        movement(s, "A", "1.5", quantity_type="COUNT", reason="COUNTED"),
        sale(s, ("SALE", "B", "9"), ("SALE", "A", "0.5")),
    )
    assert outcome.published == 2
    assert sorted((x["sku"], x["on_hand"]) for x in erp.suggestions()) == [
        ("A", Decimal("1.500")),
        ("B", Decimal("1.000")),
    ]


def test_velocity_reorder_point(erp: Erp) -> None:
    # 10 velocity days, 2 safety days, default lead time 3: point = sold / 10 * 5.
    s = store()
    today = T0.date()
    erp.apply(movement(s, "EGGS", "20"))
    # Sold 40 days ago: outside the window, so it never counts.
    erp.apply(sale(s, ("SALE", "EGGS", "1"), day=today - timedelta(days=40)))
    erp.apply(movement(s, "EGGS", "1"))
    for back in (4, 3, 2, 1):  # 2 a day: point 1, 2, 3, 4 while stock is 18, 16, 14, 12
        erp.apply(sale(s, ("SALE", "EGGS", "2"), day=today - timedelta(days=back)))
    assert erp.suggestions() == []
    crossing = sale(s, ("SALE", "EGGS", "7"), day=today)  # sold 15: point 7.5, stock 5
    erp.apply(crossing)
    [suggestion] = erp.suggestions()
    assert suggestion["basis"] == "VELOCITY"
    assert suggestion["reorder_point"] == Decimal("7.500")
    assert suggestion["on_hand"] == Decimal("5.000")
    assert suggestion["suggested_quantity"] == Decimal("10.000")
    assert suggestion["lead_time_days"] == 3
    assert str(suggestion["trigger_event_id"]) == crossing["event_id"]
    rows = erp.db.fetchall(
        "SELECT sales_day, units FROM erp_daily_sales WHERE store_id = ? ORDER BY sales_day",
        (s,),
    )
    assert rows[-1] == (today.isoformat(), 7000)
    assert len(rows) == 6


def test_velocity_uses_the_items_lead_time_and_voids_cancel_sales(erp: Erp) -> None:
    s = store()
    erp.set_item("FLOUR", None, lead=8)  # no static point: velocity with lead time 8
    erp.apply(movement(s, "FLOUR", "12"))
    # Sells 3, voids 1 of them: 2 sold, point 2 / 10 * 10 = 2; stock 10.
    erp.apply(sale(s, ("SALE", "FLOUR", "3"), ("VOID", "FLOUR", "1")))
    assert erp.suggestions() == []
    erp.apply(sale(s, ("SALE", "FLOUR", "4"), ("SALE", "FLOUR", "4")))  # 10 sold, stock 2
    [suggestion] = erp.suggestions()
    assert suggestion["reorder_point"] == Decimal("10.000")
    assert suggestion["lead_time_days"] == 8
    assert suggestion["on_hand"] == Decimal("2.000")


def test_no_static_point_and_no_sales_means_no_suggestion(erp: Erp) -> None:
    s = store()
    erp.apply(movement(s, "NEW", "0", quantity_type="COUNT", reason="COUNTED"))
    erp.apply(movement(s, "NEW", "-3", reason="SHRINK"))
    assert erp.on_hand(s, "NEW") == Decimal("-3.000")
    assert erp.suggestions() == []


# -- the read API ---------------------------------------------------------------------


async def test_read_api_returns_stock_as_json(erp: Erp) -> None:
    s = store()
    erp.set_item("MILK", 0)
    erp.apply(movement(s, "MILK", "2.5"), movement(s, "BREAD", "1"))

    async def query(fn: Any) -> Any:
        return fn(erp.db)

    app = Starlette(routes=ErpInventory(SETTINGS).routes(query))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://erp") as client:
        everything = (await client.get("/v1/stock", params={"store": s})).json()
        one = (await client.get("/v1/stock", params={"store": s, "sku": "MILK"})).json()
    assert [(x["sku"], x["on_hand"]) for x in everything] == [("BREAD", "1.000"), ("MILK", "2.500")]
    assert len(one) == 1 and one[0]["store_id"] == s and one[0]["on_hand"] == "2.500"


# -- end to end -----------------------------------------------------------------------


async def test_end_to_end_through_kafka(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Any, consumer_factory: Any
) -> None:
    s = store()
    group = type("Erp", (ErpInventory,), {"name": f"erp-{uuid.uuid4().hex[:8]}"})
    url = f"sqlite:///{tmp_path / 'erp.db'}"
    db = Database(url)
    Applier(group(kafka_topics), db, codec.encode).prepare()
    db.execute("INSERT INTO erp_items (sku, reorder_point) VALUES (?, ?)", ("E2E-MILK", 4000))
    db.close()
    suggestions = await consumer_factory(REORDER_SUGGESTIONS.name, auto_offset_reset="earliest")
    ledger = "SELECT COUNT(*) FROM erp_ledger WHERE store_id = ?"
    on_hand = "SELECT on_hand FROM erp_stock WHERE store_id = ? AND sku = ?"
    crossing = sale(s, ("SALE", "E2E-MILK", "6"))  # 3: crosses 4
    # Sales and stock movements are different topics, read in no particular order between
    # them: publish each step once the one before it is applied.
    steps = [
        [
            ("stock_movement", movement(s, "E2E-MILK", "12")),
            ("stock_movement", movement(s, "E2E-APPLES", "5")),
        ],
        [
            ("sale", sale(s, ("SALE", "E2E-MILK", "3"), ("SALE", "E2E-APPLES", "0.734"))),
            ("sale", crossing),
            ("sale", sale(s, ("RETURN", "E2E-MILK", "0.5"))),  # 3.5: still below
        ],
        [("stock_movement", movement(s, "E2E-MILK", "2.5", "COUNT", "COUNTED"))],
    ]
    async with running(group(kafka_topics), kafka_topics, url):
        rows = 0
        for step in steps:
            await publish(kafka_topics, codec, step)
            rows += sum(len(v["lines"]) if e == "sale" else 1 for e, v in step)
            await wait_until(
                lambda n=rows: scalar(url, ledger, (s,)) == n, what=f"{rows} ledger rows"
            )
        assert scalar(url, on_hand, (s, "E2E-MILK")) == 2500
        assert scalar(url, on_hand, (s, "E2E-APPLES")) == 4266
        found = await _suggestions_for(s, suggestions, codec)
    assert len(found) == 1
    [suggestion] = found
    assert suggestion["sku"] == "E2E-MILK"
    assert suggestion["on_hand"] == Decimal("3.000")
    assert suggestion["reorder_point"] == Decimal("4.000")
    assert suggestion["basis"] == "STATIC"
    assert str(suggestion["trigger_event_id"]) == crossing["event_id"]
    assert scalar(url, "SELECT COUNT(*) FROM runtime_outbox") == 0  # sent and forgotten


async def _suggestions_for(s: str, consumer: Any, codec: AvroCodec) -> list[dict[str, Any]]:
    """Reorder suggestions keyed by store ``s``: wait for the first, then a few seconds more
    in case a wrong second one follows."""
    found: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        batch = await consumer.getmany(timeout_ms=500)
        for messages in batch.values():
            found += [codec.decode(m.value).record for m in messages if m.key == store_key(s)]
        if found:
            deadline = min(deadline, loop.time() + 3)
    return found
