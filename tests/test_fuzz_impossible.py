"""Fuzz: valid Avro, impossible values (issue 23). A strategy breaks one rule of a valid
event at a time (a business day years away, an offset no time zone has, blank or endless
identifiers, a currency that is no ISO code, no lines or lines numbered twice, negative
amounts, control characters or a card number in any spelling in a text), so the codec
writes it as Kafka would carry it. Every such record is refused by the consumer runtime's
check; and a batch of every kind written straight to the topics is dead-lettered by the ERP,
CRM, analytics and the audit, the valid sales around them applied."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from tests.consumer_support import running, scalar, wait_until
from tests.fuzz_support import FUZZ, fuzz
from tests.test_consumers_believe import dead_letters, write
from tests.test_voids_end_to_end import APPLIED, SERVICES, fresh_group
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.topics import EVENT_TOPICS, PAYMENTS, SALES
from tillstream.dev.samples import sample_payment, sample_sale, sample_stock_movement
from tillstream_consumers.runtime.api import Record
from tillstream_consumers.runtime.validity import unbelievable

AT = datetime(2026, 12, 7, 11, 30, tzinfo=UTC)
Event = tuple[str, dict[str, Any]]

# A card number as people write one; each passes the Luhn check with a scheme's prefix.
PANS = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "5500-0000-0000-0004",
    "３７８２８２２４６３１０００５",
]
CONTROLS = ["\x00", "\x1b[2J", "\n", "\t", "\x7f", "\x9b", "\u2028"]


def _sale(store: str) -> dict[str, Any]:
    return sample_sale(store, at=AT, customer=None)


def _kinds(store: str) -> list[st.SearchStrategy[Event]]:
    """One strategy per rule: a valid event with that rule broken."""

    def sale_with(change: Callable[[dict[str, Any]], None]) -> Event:
        sale = _sale(store)
        change(sale)
        return ("sale", sale)

    def set_(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda sale: sale.__setitem__(field, value)

    def line(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
        return lambda sale: sale["lines"][0].__setitem__(field, value)

    def day_moved(days: int) -> Callable[[dict[str, Any]], None]:
        return lambda sale: sale.__setitem__("business_day", sale["business_day"] + timedelta(days))

    def duplicate_numbers(sale: dict[str, Any]) -> None:
        sale["lines"][1]["line_number"] = sale["lines"][0]["line_number"]

    def negative_payment(amount: Decimal) -> Event:
        return ("payment", sample_payment(_sale(store)) | {"amount": -amount})

    def counted_below_zero(quantity: Decimal) -> Event:
        movement = sample_stock_movement(store, at=AT)
        return (
            "stock_movement",
            movement | {"quantity_type": "COUNT", "reason": "COUNTED", "quantity": -quantity},
        )

    blank = st.sampled_from(["", " ", "\u3000"])
    endless = st.integers(201, 2000).map(lambda n: "R" * n)
    not_iso = st.text(min_size=0, max_size=8).filter(
        lambda c: not (len(c) == 3 and c.isascii() and c.isupper() and c.isalpha())
    )
    amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2)
    text_with = (
        st.tuples(st.text(max_size=10), st.sampled_from(CONTROLS + PANS), st.text(max_size=10))
        .map(lambda parts: "".join(parts))
        .filter(lambda t: "\x00" not in t or True)
    )
    return [
        st.integers(2, 3650)
        .flatmap(lambda d: st.sampled_from([d, -d]))
        .map(lambda d: sale_with(day_moved(d))),
        st.integers(841, 2**31 - 1)
        .flatmap(lambda m: st.sampled_from([m, -m]))
        .map(lambda m: sale_with(set_("utc_offset_minutes", m))),
        st.one_of(blank, endless).map(lambda r: sale_with(set_("receipt_number", r))),
        st.one_of(blank, endless).map(lambda r: sale_with(set_("terminal_id", r))),
        not_iso.map(lambda c: sale_with(set_("currency", c))),
        st.just(sale_with(set_("lines", []))),
        st.just(sale_with(duplicate_numbers)),
        amounts.map(lambda a: sale_with(line("unit_price", -a))),
        text_with.map(lambda t: sale_with(line("description", t))),
        text_with.map(lambda t: sale_with(set_("cashier_id", t))),
        amounts.map(negative_payment),
        st.decimals(min_value=Decimal("0.001"), max_value=Decimal("999"), places=3).map(
            counted_below_zero
        ),
    ]


def _breakers(store: str) -> st.SearchStrategy[Event]:
    return st.one_of(*_kinds(store))


def _batch(store: str, rounds: int) -> st.SearchStrategy[list[Event]]:
    """Every kind of broken rule ``rounds`` times, shuffled: a batch that misses none."""
    kinds = _kinds(store) * rounds
    return st.tuples(*kinds).map(list).flatmap(st.permutations)


def _record(event: str, value: dict[str, Any], codec: AvroCodec) -> Record:
    """As a consumer reads it: encoded as Kafka carries it, decoded again."""
    topic = EVENT_TOPICS[event].name
    decoded = codec.decode(codec.encode(event, value))
    return Record(topic, 0, 0, None, decoded.event, decoded.record, 0)


@FUZZ
@given(broken=_breakers("S-FUZZ"))
def test_every_impossible_record_is_refused_by_the_runtime(broken: Event, codec: AvroCodec) -> None:
    event, value = broken
    refusal = unbelievable(_record(event, value, codec))
    assert refusal is not None, (event, value)
    assert refusal.reason in ("broken-rule", "card-number")
    assert refusal.rules, refusal


@pytest.mark.usefixtures("kafka_topics")
# One batch of 36 through the broker: the budget is the batch's size. No shrinking: each
# try costs four consumers' start, and the failure names the records already.
@settings(fuzz(1), phases=[Phase.explicit, Phase.generate])
@given(batch=_batch("S-FUZZ-K", rounds=3))
async def test_every_consumer_dead_letters_a_batch_of_impossible_records(
    batch: list[Event],
    kafka_topics: Settings,
    codec: AvroCodec,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    store = f"S-FUZZ-{uuid.uuid4().hex[:6]}"
    rows = [(event, value | {"store_id": store}) for event, value in batch]
    for _, value in rows:
        value["event_id"] = str(uuid.uuid4())
    # With a customer, so the CRM keeps them too (it keeps only its customers' sales).
    before, after = (sample_sale(store, at=AT) for _ in range(2))
    records = [
        (SALES.name, "sale", before),
        *((EVENT_TOPICS[e].name, e, v) for e, v in rows),
        (SALES.name, "sale", after),
        (PAYMENTS.name, "payment", sample_payment(after)),
    ]
    landed = await write(kafka_topics, codec, records)
    bad = dict(zip(landed[1 : 1 + len(rows)], rows, strict=True))
    folder = tmp_path_factory.mktemp("fuzz-impossible")
    urls = {name: f"sqlite:///{folder / f'{name}.db'}" for name in SERVICES}
    urls["analytics"] = f"duckdb:///{folder / 'analytics.duckdb'}"
    async with contextlib.AsyncExitStack() as stack:
        consumers = {name: fresh_group(cls, kafka_topics) for name, cls in SERVICES.items()}
        for name, consumer in consumers.items():
            await stack.enter_async_context(running(consumer, kafka_topics, urls[name]))

        def behind() -> list[str]:
            key = (after["event_id"],)
            return [n for n in SERVICES if not int(scalar(urls[n], APPLIED[n], key) or 0)]

        try:
            await wait_until(lambda: not behind(), what="the valid sale after the batch applied")
        except AssertionError as timed_out:
            raise AssertionError(f"{timed_out}; not applied by {behind()}") from None
        for name, consumer in consumers.items():
            wanted = {
                pos
                for pos, (event, _) in bad.items()
                if EVENT_TOPICS[event].name in consumer.topics
            }
            got = await dead_letters(kafka_topics, consumer.name, wanted)
            missing = [bad[pos] for pos in wanted if pos not in got]
            assert not missing, (name, "applied what no rule allows", missing[:3])
            assert all(got[pos].reason in ("broken-rule", "card-number") for pos in wanted)
            assert int(scalar(urls[name], APPLIED[name], (before["event_id"],)) or 0), name
