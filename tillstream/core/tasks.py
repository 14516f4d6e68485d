"""Cancellation that sticks, for the loops that retry until cancelled.

On Python 3.11, ``asyncio.wait_for`` returns the result instead of raising when a
cancellation arrives as the awaited thing completes (fixed in 3.12), and aiokafka's clients
use it inside; a cancelled retry loop then retries for ever and whoever awaits it hangs.
The task still counts the request (``Task.cancelling()``): :func:`pause` honours it before
every wait of a retry loop, and :func:`stop_client` stops an aiokafka client without
losing our cancellation or passing on aiokafka's own.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol


class _Stoppable(Protocol):
    async def stop(self) -> None: ...


def cancel_requested() -> bool:
    """Has someone cancelled the running task (even if an await swallowed it)?"""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def checkpoint() -> None:
    """Raise ``CancelledError`` if the task was cancelled and an await on the way swallowed
    it: the top of every loop that reads until cancelled calls it."""
    if cancel_requested():
        raise asyncio.CancelledError


async def pause(seconds: float) -> None:
    """``asyncio.sleep(seconds)`` for a retry loop: raises ``CancelledError`` at once if the
    task was cancelled and the cancellation was swallowed on the way here."""
    checkpoint()
    await asyncio.sleep(seconds)


async def stop_client(client: _Stoppable) -> None:
    """Stop an aiokafka client, never raising for it: aiokafka 0.14 without a group
    re-raises the cancellation of its own internal task on stop, and a failed start leaves
    a client whose stop may fail; only a cancellation of ours is passed on."""
    try:
        with contextlib.suppress(Exception):  # best effort: the caller's error matters
            await client.stop()
    except asyncio.CancelledError:
        if cancel_requested():
            raise
