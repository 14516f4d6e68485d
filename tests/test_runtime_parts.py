"""The consumer runtime's parts, each alone and without Kafka: fetching and decoding, the retry
policy, applying with its record-by-record fallback, dead letters, the outgoing relay and the
group membership (``consumers/tillstream_consumers/runtime/``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)

from tillstream.core.codec import AvroCodec
from tillstream.dev.samples import sample_payment, sample_sale
from tillstream_consumers.runtime import (
    Consumer,
    Context,
    PermanentError,
    Record,
    deadletter,
    state,
)
from tillstream_consumers.runtime import relay as relay_module
from tillstream_consumers.runtime.applier import Applier
from tillstream_consumers.runtime.applying import BatchApplying
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.deadletter_sender import DeadLetterSender
from tillstream_consumers.runtime.fetching import Fetched, decode_batch
from tillstream_consumers.runtime.membership import Membership, Rebalance
from tillstream_consumers.runtime.partitioning import RoutingCheck, TopicPartition
from tillstream_consumers.runtime.relay import Relay
from tillstream_consumers.runtime.retrying import Readiness, RetryPolicy, Stopping
from tillstream_consumers.runtime.sender import Outbound, Refused
from tillstream_consumers.runtime.validity import BROKEN_RULE, WRONG_TOPIC, Unbelievable

SALES = TopicPartition("tillstream.sales", 0)


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 1_700_000_000_000
    headers: tuple[tuple[str, bytes], ...] = ()


def _retry(name: str = "parts") -> tuple[RetryPolicy, asyncio.Event, Readiness]:
    stop, readiness = asyncio.Event(), Readiness(name)
    readiness.started = True
    return RetryPolicy(name, stop, readiness), stop, readiness


# -- fetching ---------------------------------------------------------------------------


def test_a_batch_is_decoded_in_order_and_bad_bytes_are_set_aside(codec: AvroCodec) -> None:
    sales = [sample_sale("S1"), sample_sale("S1")]
    messages = [
        Msg(SALES.topic, 0, 7, b"S1", codec.encode("sale", sales[0])),
        Msg(SALES.topic, 0, 8, b"S1", b"\x00not avro"),
        Msg(SALES.topic, 0, 9, b"S1", codec.encode("sale", sales[1])),
    ]
    revoked = TopicPartition(SALES.topic, 1)
    batch = {SALES: messages, revoked: [Msg(SALES.topic, 1, 0, b"S2", b"")]}
    fetched = decode_batch(codec, batch, {SALES}, RoutingCheck("parts"), lambda _: 0)
    assert [r.offset for r in fetched.records] == [7, 9]
    assert [r.sale()["event_id"] for r in fetched.records] == [str(s["event_id"]) for s in sales]
    assert [(m.offset, type(e).__name__) for m, e in fetched.undecodable] == [(8, "CodecError")]
    assert fetched.positions == {SALES: 10}  # past the undecodable one too
    assert revoked not in fetched.positions  # its new owner reads it
    assert fetched.message_of(fetched.records[1]) is messages[2]


def test_records_that_break_a_core_rule_or_sit_on_the_wrong_topic_are_set_aside(
    codec: AvroCodec,
) -> None:
    sale, payment = sample_sale("S1"), sample_payment(sample_sale("S1"))
    offset = sample_sale("S1") | {"utc_offset_minutes": 1_000_000, "receipt_number": ""}
    ahead = sample_sale("S1")
    ahead["business_day"] += timedelta(days=30)
    items = TopicPartition("tillstream.items", 0)
    mine = TopicPartition("my.sales", 0)  # not tillstream's: any type may be on it
    batch = {
        SALES: [
            Msg(SALES.topic, 0, 1, b"S1", codec.encode("sale", offset)),
            Msg(SALES.topic, 0, 2, b"S1", codec.encode("payment", payment)),
            Msg(SALES.topic, 0, 3, b"S1", codec.encode("sale", sale)),
            Msg(SALES.topic, 0, 4, b"S1", codec.encode("sale", ahead)),
        ],
        items: [Msg(items.topic, 0, 0, b"SKU-1", None)],  # a tombstone is no event
        mine: [Msg(mine.topic, 0, 0, b"S1", codec.encode("payment", payment))],
    }
    fetched = decode_batch(codec, batch, set(batch), RoutingCheck("parts"), lambda _: 0)
    assert [(r.topic, r.offset) for r in fetched.records] == [
        (SALES.topic, 3),
        (items.topic, 0),
        (mine.topic, 0),
    ]
    refused = {m.offset: e for m, e in fetched.unbelievable}
    assert sorted(refused) == [1, 2, 4]
    assert (refused[1].reason, refused[1].rules) == (
        BROKEN_RULE,
        ("utc_offset_minutes", "receipt_number"),
    )
    assert str(refused[1]).startswith("sale: utc_offset_minutes: must be between -840 and 840")
    assert (refused[2].reason, refused[2].rules) == (WRONG_TOPIC, ("topic",))
    assert "tillstream.sales carries sale events, not payment" in str(refused[2])
    assert refused[4].rules == ("business_day",)
    assert fetched.positions[SALES] == 5  # past the ones set aside


# -- the retry policy -------------------------------------------------------------------


async def test_transient_failures_are_retried_until_they_pass() -> None:
    retry, _, readiness = _retry()
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise KafkaConnectionError("broker away")
        return "done"

    assert await retry.retrying("reach the broker", flaky) == "done"
    assert len(attempts) == 3
    assert readiness.ready  # ready again once it worked
    retry.shutdown()


async def test_a_permanent_failure_is_raised_at_once() -> None:
    retry, _, _ = _retry()

    def bug() -> None:
        raise KeyError("customer_id")

    with pytest.raises(KeyError):
        await retry.on_db_retrying("apply", bug)
    retry.shutdown()


async def test_a_stop_request_ends_the_wait_for_a_retry() -> None:
    retry, stop, readiness = _retry()

    async def away() -> None:
        stop.set()
        raise OSError("database away")

    with pytest.raises(Stopping):
        await retry.retrying("open the database", away)
    assert not readiness.ready
    retry.shutdown()


# -- applying ---------------------------------------------------------------------------


class Picky(Consumer):
    name = "parts-picky"
    topics = ("tillstream.sales",)
    migrations = ("CREATE TABLE seen (receipt TEXT NOT NULL)",)

    def apply(self, ctx: Context, records: list[Record]) -> None:
        for r in records:
            receipt = r.sale()["receipt_number"]
            if receipt.startswith("BAD"):
                raise PermanentError(f"receipt {receipt}")
            ctx.db.execute("INSERT INTO seen VALUES (?)", (receipt,))


@dataclass
class FakeDeadLetters:
    sent: list[tuple[int, str]] = field(default_factory=list)

    async def send(self, msg: Any, reason: str, exc: BaseException) -> None:
        self.sent.append((msg.offset, reason))


def _fetched(codec: AvroCodec, receipts: list[str]) -> Fetched:
    fetched = Fetched()
    for offset, receipt in enumerate(receipts):
        sale = sample_sale("S1") | {"receipt_number": receipt}
        msg = Msg(SALES.topic, 0, offset, b"S1", codec.encode("sale", sale))
        decoded = codec.decode(msg.value)
        fetched.records.append(
            Record.decoded(SALES.topic, 0, offset, b"S1", "sale", decoded.record, 0)
        )
        fetched.messages[(SALES, offset)] = msg
    fetched.positions[SALES] = len(receipts)
    return fetched


async def test_a_failing_batch_is_applied_record_by_record(
    codec: AvroCodec, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'parts.db'}")
    applier = Applier(Picky(), db, codec.encode)
    applier.prepare()
    retry, _, _ = _retry()
    retry.db = db
    letters = FakeDeadLetters()
    applying = BatchApplying("parts-picky", lambda: applier, retry, letters)  # type: ignore[arg-type]
    outcome = await applying.apply(_fetched(codec, ["R1", "BAD2", "R3"]))
    assert [r.offset for r in outcome.applied] == [0, 2]
    assert letters.sent == [(1, "invalid")]
    assert db.fetchall("SELECT receipt FROM seen ORDER BY receipt") == [("R1",), ("R3",)]
    assert applier.offsets([SALES]) == {SALES: 3}
    retry.shutdown()
    db.close()


# -- dead letters and the relay ---------------------------------------------------------


@dataclass
class FakeSender:
    """Refuses what ``refuse`` says of each record: None (sent), or an exception to return
    (too large) or raise (not authorized)."""

    refuse: Any = None
    sent: list[Outbound] = field(default_factory=list)

    async def send(self, records: list[Outbound]) -> list[Any]:
        results = []
        for r in records:
            error = self.refuse(r) if self.refuse else None
            if isinstance(error, TopicAuthorizationFailedError):
                raise error
            if error is None:
                self.sent.append(r)
            results.append(error)
        return results


async def test_a_dead_letter_names_the_rules_broken() -> None:
    retry, _, _ = _retry()
    sender = FakeSender()
    letters = DeadLetterSender("parts-rules", sender, retry)  # type: ignore[arg-type]
    refusal = Unbelievable(BROKEN_RULE, ("business_day", "currency"), "sale: business_day: ...")
    await letters.send(
        Msg(SALES.topic, 0, 4, b"S1", b"x"), refusal.reason, refusal, rules=refusal.rules
    )
    (letter,) = sender.sent
    why = deadletter.DeadLetter.from_headers(letter.headers)
    assert (why.reason, why.rule) == ("broken-rule", "business_day,currency")
    assert dict(letter.headers)["dlq.rule"] == b"business_day,currency"
    assert why.error.startswith("Unbelievable: sale: business_day")
    retry.shutdown()


async def test_a_dead_letter_says_why_and_goes_without_its_value_when_too_large() -> None:
    retry, _, _ = _retry()
    sender = FakeSender(lambda r: MessageSizeTooLargeError() if r.value else None)
    letters = DeadLetterSender("parts-dlq", sender, retry)  # type: ignore[arg-type]
    await letters.send(Msg(SALES.topic, 0, 4, b"S1", b"x" * 10), "invalid", ValueError("no"))
    (letter,) = sender.sent
    assert letter.topic == "tillstream.dlq.parts-dlq"
    assert letter.value == b""
    why = deadletter.DeadLetter.from_headers(letter.headers)
    assert (why.reason, why.topic, why.offset, why.value_omitted) == (
        "invalid",
        SALES.topic,
        4,
        "too-large",
    )
    retry.shutdown()


async def test_dead_letters_the_broker_refuses_stop_the_service() -> None:
    retry, _, _ = _retry()
    sender = FakeSender(lambda r: TopicAuthorizationFailedError())
    letters = DeadLetterSender("parts-dlq", sender, retry)  # type: ignore[arg-type]
    with pytest.raises(Refused, match=r"refuses dead letters on tillstream\.dlq\.parts-dlq"):
        await letters.send(Msg(SALES.topic, 0, 4, b"S1", b"x"), "invalid", ValueError("no"))
    retry.shutdown()


async def test_the_relay_sends_queued_events_and_sets_aside_the_too_large(
    codec: AvroCodec, tmp_path: Path
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'relay.db'}")
    applier = Applier(Picky(), db, codec.encode)
    applier.prepare()
    with db.transaction():
        state.queue_outgoing(
            db,
            "parts-picky",
            [("a", "t0", "out", b"k", b"small"), ("b", "t1", "out", b"k", b"x" * 100)],
        )
    retry, _, _ = _retry()
    retry.db = db
    sender = FakeSender(lambda r: MessageSizeTooLargeError() if len(r.value) > 50 else None)
    relay = Relay("parts-picky", sender, retry, lambda: applier)  # type: ignore[arg-type]
    await relay.publish()
    assert [r.value for r in sender.sent] == [b"small"]
    assert applier.pending_outgoing() == []
    assert db.fetchall("SELECT id FROM runtime_outbox_refused") == [("b",)]
    retry.shutdown()
    db.close()


async def test_the_relay_waits_after_the_broker_refuses_the_consumer(
    codec: AvroCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay_module, "REFUSED_RETRY_SECONDS", 0.2)
    db = Database(f"sqlite:///{tmp_path / 'relay.db'}")
    applier = Applier(Picky(), db, codec.encode)
    applier.prepare()
    with db.transaction():
        state.queue_outgoing(db, "parts-picky", [("a", "t0", "out", b"k", b"v")])
    retry, _, _ = _retry()
    sender = FakeSender(lambda r: TopicAuthorizationFailedError())
    relay = Relay("parts-picky", sender, retry, lambda: applier)  # type: ignore[arg-type]
    await relay.publish()
    assert len(applier.pending_outgoing()) == 1  # still queued
    assert not relay.retry_due()
    await asyncio.sleep(0.25)
    assert relay.retry_due()
    sender.refuse = None
    await relay.publish()
    assert applier.pending_outgoing() == []
    retry.shutdown()
    db.close()


# -- the group membership ---------------------------------------------------------------


class FakeKafka:
    def __init__(self) -> None:
        self.assigned = {SALES}
        self.committed: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


async def test_only_offsets_of_partitions_still_held_are_committed() -> None:
    kafka = FakeKafka()
    membership = Membership("parts", kafka)  # type: ignore[arg-type]
    other = TopicPartition(SALES.topic, 1)
    membership.applied({SALES: 5, other: 9})
    await membership.commit()
    assert kafka.committed == [{SALES: 5}]
    membership.applied({SALES: 6})
    membership.forget({SALES})
    await membership.commit()
    assert kafka.committed == [{SALES: 5}]  # nothing left to say


async def test_rebalances_reach_the_handler_through_its_public_methods() -> None:
    calls: list[tuple[str, set[TopicPartition]]] = []

    class Handler:
        async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            calls.append(("revoked", revoked))

        async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            calls.append(("assigned", assigned))

    listener = Rebalance(Handler())
    await listener.on_partitions_revoked([SALES])
    await listener.on_partitions_assigned(frozenset({SALES}))
    assert calls == [("revoked", {SALES}), ("assigned", {SALES})]
