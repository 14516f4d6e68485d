"""The durable outbox: on disk before acknowledged, each event id once, bounded disk use."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from producers.outbox import Outbox, OutboxEvent, OutboxFullError, Outcome


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
