"""The durable outbox: on disk before acknowledged, each event id once, bounded disk use."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from hashlib import sha256
from pathlib import Path

import pytest

from tillstream_edge.outbox import Outbox, OutboxEvent, OutboxFullError, Outcome


def event(n: int, value: bytes = b"v") -> OutboxEvent:
    return OutboxEvent(
        f"id-{n}", "sale", "tillstream.sales", b"S1", value + str(n).encode(), "http"
    )


@pytest.fixture
async def outbox(tmp_path: Path):  # type: ignore[no-untyped-def]
    box = Outbox(tmp_path / "outbox.db")
    await box.open()
    yield box
    await box.close()


async def test_appended_events_survive_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    await box.open()
    assert await box.append([event(1), event(2)]) == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    await box.close()
    again = Outbox(tmp_path / "o.db")
    await again.open()
    try:
        assert [p.event_id for p in await again.pending(10)] == ["id-1", "id-2"]
    finally:
        await again.close()


async def test_resubmission_is_a_duplicate_and_changed_content_a_conflict(outbox: Outbox) -> None:
    await outbox.append([event(1)])
    assert await outbox.append([event(1)]) == [Outcome.DUPLICATE]
    assert await outbox.append([event(1, b"other")]) == [Outcome.CONFLICT]
    assert len(await outbox.pending(10)) == 1


async def test_what_the_edge_added_does_not_make_a_resubmission_a_conflict(
    outbox: Outbox,
) -> None:
    """The item master's additions (list_price, stock_item) may differ between the first
    submission and a retry: what the till sent (its digest) decides."""
    sent = b"as the till sent it"
    first = OutboxEvent("id-9", "sale", "tillstream.sales", b"S1", b"+list 3.00", "http")
    assert await outbox.append([replace(first, digest=sha256(sent).digest())]) == [Outcome.ACCEPTED]
    retry = replace(first, value=b"+list 3.50", digest=sha256(sent).digest())
    assert await outbox.append([retry]) == [Outcome.DUPLICATE]
    other = replace(first, digest=sha256(b"another sale").digest())
    assert await outbox.append([other]) == [Outcome.CONFLICT]
    # Accepted while the copy was empty (nothing added), retried once it knew the item.
    plain = OutboxEvent("id-10", "sale", "tillstream.sales", b"S1", sent, "http")
    await outbox.append([plain])
    marked = replace(plain, value=b"+list 1.00", digest=sha256(sent).digest())
    assert await outbox.append([marked]) == [Outcome.DUPLICATE]


async def test_concurrent_appends_keep_every_event_in_order_of_commit(outbox: Outbox) -> None:
    results = await asyncio.gather(*(outbox.append([event(n)]) for n in range(200)))
    assert all(r == [Outcome.ACCEPTED] for r in results)
    pending = await outbox.pending(1000)
    assert sorted(p.event_id for p in pending) == sorted(f"id-{n}" for n in range(200))
    assert [p.seq for p in pending] == sorted(p.seq for p in pending)


async def test_sent_events_leave_the_backlog_and_are_pruned_later(outbox: Outbox) -> None:
    await outbox.append([event(n) for n in range(5)])
    pending = await outbox.pending(3)
    await outbox.mark_sent([p.seq for p in pending])
    backlog = await outbox.backlog()
    assert backlog.depth == 2
    assert await outbox.append([event(0)]) == [Outcome.DUPLICATE]  # still remembered
    outbox.dedupe_seconds = -1
    assert await outbox.prune() == 3


async def test_full_outbox_refuses_new_events_but_keeps_old_ones(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db", max_bytes=64 * 1024)
    await box.open()
    try:
        await box.append([event(n, b"x" * 2000) for n in range(100)])
        await box.backlog()
        assert box.is_full
        with pytest.raises(OutboxFullError, match="limit"):
            await box.append([event(1000)])
        assert len(await box.pending(1000)) == 100
    finally:
        await box.close()


async def test_progress_markers_persist(outbox: Outbox) -> None:
    assert await outbox.get_progress("import:abc") is None
    await outbox.set_progress("import:abc", "file.xml")
    assert await outbox.get_progress("import:abc") == "file.xml"


async def test_limit_counts_unsent_events_not_sent_ones_kept_for_dedupe(tmp_path: Path) -> None:
    # Sent events stay 72 h for de-duplication; they must not make the edge refuse sales.
    box = Outbox(tmp_path / "o.db", max_bytes=64 * 1024)
    await box.open()
    try:
        await box.append([event(n, b"x" * 2000) for n in range(100)])
        await box.mark_sent([p.seq for p in await box.pending(1000)])
        assert await box.append([event(1000)]) == [Outcome.ACCEPTED]  # one waits to be sent
        backlog = await box.backlog()
        assert backlog.size_bytes > 64 * 1024  # the file holds the sent ones...
        assert backlog.depth == 1 and backlog.unsent_bytes < 1024  # ...they are not counted
        assert not box.is_full
        assert await box.append([event(1001)]) == [Outcome.ACCEPTED]
        await box.append([event(n, b"y" * 2000) for n in range(2000, 2040)])
        assert (await box.backlog()).unsent_bytes > 64 * 1024
        assert box.is_full  # unsent events still reach the limit
    finally:
        await box.close()


async def test_quarantine_takes_an_event_out_of_the_queue_and_retry_restores_order(
    outbox: Outbox,
) -> None:
    await outbox.append([event(n) for n in range(4)])
    first, second, *_ = await outbox.pending(10)
    await outbox.quarantine(first.seq, "MessageSizeTooLargeError: too big")
    await outbox.quarantine(second.seq, "TopicAuthorizationFailedError")
    assert [p.event_id for p in await outbox.pending(10)] == ["id-2", "id-3"]
    held = await outbox.quarantined()
    assert [(q.event_id, q.reason) for q in held] == [
        ("id-0", "MessageSizeTooLargeError: too big"),
        ("id-1", "TopicAuthorizationFailedError"),
    ]
    backlog = await outbox.backlog()
    assert (backlog.depth, backlog.quarantined) == (2, 2)
    assert await outbox.append([event(0)]) == [Outcome.DUPLICATE]  # still known: no resend
    assert await outbox.release(["id-1", "nope"]) == ["id-1"]
    assert await outbox.release() == ["id-0"]
    assert [p.event_id for p in await outbox.pending(10)] == ["id-0", "id-1", "id-2", "id-3"]
    assert await outbox.quarantined() == []


async def test_an_outbox_from_before_quarantine_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL"
        " UNIQUE, event_type TEXT NOT NULL, topic TEXT NOT NULL, key BLOB NOT NULL, value BLOB"
        " NOT NULL, channel TEXT NOT NULL, accepted_at REAL NOT NULL, sent_at REAL);"
        "INSERT INTO events (event_id, event_type, topic, key, value, channel, accepted_at)"
        " VALUES ('old-1', 'sale', 'tillstream.sales', x'5331', x'00', 'http', 1.0);"
    )
    old.commit()
    old.close()
    box = Outbox(path)
    await box.open()
    try:
        (pending,) = await box.pending(10)
        assert pending.event_id == "old-1"
        await box.quarantine(pending.seq, "InvalidTopicError")
        assert [q.event_id for q in await box.quarantined()] == ["old-1"]
    finally:
        await box.close()
