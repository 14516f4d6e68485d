"""A retry loop stops when cancelled, even when an await on the way swallowed the
cancellation (Python 3.11's ``asyncio.wait_for``, used inside aiokafka, returns instead of
raising when the cancel and the result arrive together). CI once hung 300 s in the master
data copy's teardown: the cancelled reader went on retrying."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest

from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.core.tasks import pause, stop_client
from tillstream_edge.estate.desired_sync import DesiredSync
from tillstream_edge.masterdata_copy import MasterDataCopy
from tillstream_edge.masterdata_sync import MasterDataSync


async def _swallowing_wait() -> None:
    """What wait_for does on 3.11 when the result wins the race: the cancel is eaten."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(30)


async def test_pause_raises_once_a_cancellation_was_swallowed() -> None:
    async def loop() -> int:
        rounds = 0
        while rounds < 1000:
            rounds += 1
            await _swallowing_wait()
            await pause(0.001)
        return rounds

    task = asyncio.create_task(loop())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_pause_sleeps_when_nobody_cancelled() -> None:
    await pause(0)  # nothing raised


async def test_stop_client_passes_on_only_our_cancellation() -> None:
    class Client:
        def __init__(self, error: BaseException) -> None:
            self.error = error

        async def stop(self) -> None:
            raise self.error

    await stop_client(Client(asyncio.CancelledError()))  # aiokafka's own task's: not ours
    await stop_client(Client(OSError("gone")))  # a failed stop is not the caller's error

    async def cancelled_while_stopping() -> None:
        asyncio.current_task().cancel()  # type: ignore[union-attr]
        await stop_client(Client(asyncio.CancelledError()))

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(cancelled_while_stopping())


async def test_the_master_data_reader_stops_when_its_cancellation_was_swallowed(
    settings: Settings, codec: AvroCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = MasterDataCopy(tmp_path / "md.db", "S-CANCEL", ZoneInfo("Europe/Berlin"), codec)
    await copy.open()
    sync = MasterDataSync(settings, copy, rebuild_after=timedelta(days=1))
    sessions = 0

    async def session() -> None:  # a session whose Kafka client ate the cancel, then failed
        nonlocal sessions
        sessions += 1
        await _swallowing_wait()
        raise OSError("connection reset")

    monkeypatch.setattr(sync, "_session", session)
    reading = asyncio.create_task(sync.run())
    try:
        while sessions == 0:
            await asyncio.sleep(0.01)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reading, 10)
        assert sessions == 1
    finally:
        reading.cancel()
        await copy.close()


async def test_the_estate_reader_stops_when_its_cancellation_was_swallowed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same defect in the edge's reader of head office's desired state."""

    async def nothing_changed(targets: set[str]) -> None:
        return None

    sync = DesiredSync(settings, cast(Any, None), nothing_changed, rebuild_after=timedelta(days=1))
    sessions = 0

    async def session() -> None:
        nonlocal sessions
        sessions += 1
        await _swallowing_wait()
        raise OSError("connection reset")

    monkeypatch.setattr(sync, "_session", session)
    reading = asyncio.create_task(sync.run())
    try:
        while sessions == 0:
            await asyncio.sleep(0.01)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reading, 10)
        assert sessions == 1
    finally:
        reading.cancel()


async def test_the_master_data_read_loop_stops_when_a_fetch_swallowed_the_cancellation(
    settings: Settings, codec: AvroCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge's own ``wait_for`` around ``end_offsets`` can eat a cancellation while
    the read loop runs: without a checkpoint it read on, and the edge's stop waited 60 s
    (a CI failure of tests/test_data_protection.py)."""

    class Consumer:
        async def getmany(self, **_: Any) -> dict[Any, Any]:
            await _swallowing_wait()
            return {}

    async def checked(*_: Any) -> None:
        return None

    copy = MasterDataCopy(tmp_path / "md.db", "S-CANCEL", ZoneInfo("Europe/Berlin"), codec)
    await copy.open()
    sync = MasterDataSync(settings, copy, rebuild_after=timedelta(days=1))
    monkeypatch.setattr(sync, "_check", checked)
    reading = asyncio.create_task(sync._read(cast(Any, Consumer()), []))
    try:
        await asyncio.sleep(0.05)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reading, 10)
    finally:
        reading.cancel()
        await copy.close()
