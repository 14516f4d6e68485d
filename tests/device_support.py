"""Device tests' helpers: a serial device played on a real pseudo-terminal (the service opens
the slave path through a symlink, so a test can unplug and replug; the test writes the
device's frames on the master end), and a DeviceService whose events land in a queue."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from tillstream_edge.devices import DevicesConfig, DeviceService

WAIT = 5.0


class FakePort:
    """The device end of a serial cable: a pty whose slave the service opens via ``link``."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo or CR translation before the service configures it
        os.set_blocking(self.master, False)
        self.link = link
        self._rx = bytearray()
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    async def read_until(self, end: bytes, timeout: float = WAIT) -> bytes:
        """Bytes the service wrote, up to and including ``end``."""
        async with asyncio.timeout(timeout):
            while (idx := self._rx.find(end)) < 0:
                try:
                    self._rx += os.read(self.master, 1024)
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            out = bytes(self._rx[: idx + len(end)])
            del self._rx[: idx + len(end)]
            return out

    def unplug(self) -> None:
        """The cable is pulled: both ends go, the symlink now dangles."""
        for fd in (self.slave, self.master):
            with contextlib.suppress(OSError):
                os.close(fd)


class Responder:
    """Plays a scale: answers each command with ``answer(command)`` until stopped."""

    def __init__(self, port: FakePort, end: bytes, answer: Callable[[bytes], bytes]) -> None:
        self.port = port
        self.commands: list[bytes] = []
        self._task = asyncio.create_task(self._loop(end, answer))

    async def _loop(self, end: bytes, answer: Callable[[bytes], bytes]) -> None:
        while True:
            command = await self.port.read_until(end, timeout=3600)
            self.commands.append(command)
            with contextlib.suppress(OSError):
                self.port.send(answer(command))

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


MTSICS_IDENTITY = {
    b"I2": b'I2 A "WMS404C-L/01 410.0 g"',
    b"I3": b'I3 A "2.10 10.28.0.493.142"',
    b"I4": b'I4 A "B443456789"',
}
"""How a Mettler Toledo balance answers MT-SICS level 0's inquiries (balance data, software
version and type definition, serial number)."""


def mtsics_answers(answer: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """An MT-SICS scale: the inquiries the edge makes at connection answered as a real
    balance does (:data:`MTSICS_IDENTITY`), every other command by ``answer``."""

    def reply(command: bytes) -> bytes:
        identity = MTSICS_IDENTITY.get(command.strip())
        return identity + b"\r\n" if identity is not None else answer(command)

    return reply


def weight_commands(commands: list[bytes]) -> list[bytes]:
    """The commands that asked for a weight (not the inquiries made at connection)."""
    return [c for c in commands if c.strip() not in MTSICS_IDENTITY]


def name(prefix: str) -> str:
    """A unique device name, so metrics of one test never leak into another's."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def metric(metric_name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric_name, labels) or 0.0


async def wait_for(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(
    devices: dict[str, dict[str, Any]], items: dict[str, str] | None = None
) -> AsyncIterator[tuple[DeviceService, asyncio.Queue[dict[str, Any]]]]:
    """A DeviceService for ``devices`` whose emitted records land in a queue."""
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def emit(event: str, record: dict[str, Any]) -> None:
        assert event == "stock_movement"
        await events.put(record)

    config = DevicesConfig.model_validate({"devices": devices, "items": items or {}})
    service = DeviceService(config, store_id="S001", emit=emit)
    task = asyncio.create_task(service.run())
    try:
        yield service, events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def next_event(events: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        return await events.get()
