"""Serial links: framing bytes into bounded frames, and keeping a device connected.

A ``Device`` owns one port. ``run()`` opens it, hands the open ``Connection`` to the
protocol's ``serve()``, and when the port disappears (unplugged, read error, missing at start)
retries with a doubling delay capped by ``reconnect_max``, so one flaky cable never stops the
store's other devices. Status and metrics live here because every protocol shares them; so
does ``on_change``, called when the device connects, goes away or says what it is (the
edge's estate report tells head office).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NoReturn

import serial_asyncio
from prometheus_client import Counter, Gauge

from tillstream.core.records import utcnow
from tillstream.core.tasks import pause
from tillstream_edge.devices.config import ScaleConfig, ScannerConfig

DEVICE_UP = Gauge("tillstream_edge_device_up", "1 while the device's port is open.", ["device"])
FRAMES = Counter(
    "tillstream_edge_device_frames_total", "Valid frames (scans, readings) received.", ["device"]
)
REJECTED = Counter(
    "tillstream_edge_device_rejected_total",
    "Frames or readings dropped, by reason (noise, overlong, bad_check_digit, ...).",
    ["device", "reason"],
)
RECONNECTS = Counter(
    "tillstream_edge_device_reconnects_total",
    "Times a device was opened again after it failed or went away.",
    ["device"],
)

log = logging.getLogger(__name__)
_QUEUE_LIMIT = 256
_STRIP_BIT_8 = bytes(b & 0x7F for b in range(256))


class DeviceGone(Exception):
    """The port closed under us; the supervisor reopens it."""


@dataclass
class DeviceStatus:
    """What the edge health endpoint and the estate report say of one device."""

    name: str
    protocol: str
    port: str
    up: bool = False
    line: str | None = None  # settings the port was opened with, e.g. "9600 7E1"
    last_error: str | None = None
    connected_since: datetime | None = None
    disconnected_since: datetime | None = None
    """When the port was lost, or first failed to open (None while up)."""
    last_frame_at: datetime | None = None
    reconnects: int = 0
    frames: int = 0
    rejected: int = 0
    outages: int = 0
    """Times the port was lost or could not be opened (each outage once, not each retry)."""
    identity: dict[str, str] | None = None
    """What the device says it is, where its protocol tells (MT-SICS I2, I3, I4)."""
    reading: str | None = None
    """A scale: what its last reply said of itself (ok, motion, overload...), never a weight."""
    zero: bool | None = None
    """A scale: whether its last weight was zero."""
    stable: bool | None = None

    @property
    def communication_errors(self) -> int:
        """Frames that could not be read and outages (UnifiedPOS CommunicationErrorCount)."""
        return self.rejected + self.outages


class Framer:
    """Splits a byte stream on a terminator, bounding what a line without one can cost."""

    def __init__(self, terminator: bytes, max_len: int, *, seven_bit: bool = False) -> None:
        self._table = _STRIP_BIT_8 if seven_bit else None
        self._term = terminator
        self._max = max_len
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> tuple[list[bytes], int]:
        """Frames completed by ``data`` and how many overlong ones were dropped."""
        self._buf += data.translate(self._table) if self._table else data
        frames: list[bytes] = []
        overlong = 0
        while True:
            idx = self._buf.find(self._term)
            if idx < 0:
                if len(self._buf) > self._max:
                    if not self._discarding:
                        overlong += 1
                    self._discarding = True
                    # Keep a possible partial terminator so CR|LF split across reads is found.
                    del self._buf[: len(self._buf) - (len(self._term) - 1)]
                return frames, overlong
            frame = bytes(self._buf[:idx])
            del self._buf[: idx + len(self._term)]
            if self._discarding:
                self._discarding = False
            elif len(frame) > self._max:
                overlong += 1
            else:
                frames.append(frame)

    def reset(self) -> None:
        self._buf.clear()
        self._discarding = False


class _Lost:
    def __init__(self, exc: BaseException | None) -> None:
        self.exc = exc


class _LinkProtocol(asyncio.Protocol):
    def __init__(self, device: Device, framer: Framer) -> None:
        self.device = device
        self.framer = framer
        self.queue: asyncio.Queue[bytes | _Lost] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.error: BaseException | None = None

    def data_received(self, data: bytes) -> None:
        frames, overlong = self.framer.feed(data)
        for _ in range(overlong):
            self.device.reject("overlong", "frame longer than max_frame")
        for frame in frames:
            if self.queue.qsize() >= _QUEUE_LIMIT:
                self.device.reject("overflow", "frames arrive faster than they are handled")
            else:
                self.queue.put_nowait(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.closed.set()
        self.queue.put_nowait(_Lost(exc))


class Connection:
    """An open port: frames in, bytes out."""

    def __init__(self, transport: asyncio.Transport, protocol: _LinkProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.close_reason: str | None = None
        port = transport.serial  # type: ignore[attr-defined]
        self.line = f"{port.baudrate} {port.bytesize}{port.parity}{port.stopbits:g}"

    async def frame(self) -> bytes:
        """The next frame; raises DeviceGone once the port has closed."""
        item = await self._protocol.queue.get()
        if isinstance(item, _Lost):
            self._protocol.queue.put_nowait(item)  # every later reader sees it too
            raise DeviceGone(self._reason(item.exc))
        return item

    def drain(self) -> None:
        """Forget frames nobody asked for, so the next frame answers the next command."""
        queue = self._protocol.queue
        while not queue.empty():
            item = queue.get_nowait()
            if isinstance(item, _Lost):
                queue.put_nowait(item)
                raise DeviceGone(self._reason(item.exc))
        self._protocol.framer.reset()

    def write(self, data: bytes) -> None:
        if self._protocol.closed.is_set():
            raise DeviceGone(self._reason(self._protocol.error))
        self._transport.write(data)

    async def wait_closed(self) -> str:
        await self._protocol.closed.wait()
        return self._reason(self._protocol.error)

    def close(self, reason: str | None = None) -> None:
        if reason and self.close_reason is None:
            self.close_reason = reason
        self._transport.close()

    def _reason(self, exc: BaseException | None) -> str:
        if exc is not None:
            return str(exc) or type(exc).__name__
        return self.close_reason or "port closed"


async def open_connection(device: Device) -> Connection:
    """Open the device's port with its line settings."""
    cfg = device.config
    protocol = _LinkProtocol(device, device.framer())
    transport, _ = await serial_asyncio.create_serial_connection(
        asyncio.get_running_loop(),
        lambda: protocol,
        cfg.port,
        baudrate=cfg.baudrate,
        bytesize=cfg.bytesize,
        parity=cfg.parity,
        stopbits=cfg.stopbits,
        exclusive=True,  # a second process on the same scanner would steal its frames
    )
    return Connection(transport, protocol)


class Device(ABC):
    """A configured serial device: its reconnect loop, status and metrics."""

    def __init__(self, name: str, config: ScannerConfig | ScaleConfig) -> None:
        self.name = name
        self.config = config
        self._status = DeviceStatus(name=name, protocol=config.protocol, port=config.port)
        self.on_change: Callable[[], None] | None = None
        """Called when the device connects, goes away or says what it is."""
        DEVICE_UP.labels(name).set(0)

    @abstractmethod
    def framer(self) -> Framer:
        """A fresh framer for a new connection."""

    @abstractmethod
    async def serve(self, conn: Connection) -> None:
        """Talk to the device until the port closes (raise DeviceGone) or forever."""

    def status(self) -> DeviceStatus:
        return replace(self._status)

    async def run(self) -> NoReturn:
        """Keep the device connected until cancelled."""
        delay = self.config.reconnect_initial
        failed_before = False
        while True:
            try:
                conn = await open_connection(self)
            except Exception as exc:  # missing port, busy, termios refusing the line settings...
                self._down(f"cannot open: {exc}", first=not failed_before)
            else:
                if failed_before:
                    self._status.reconnects += 1
                    RECONNECTS.labels(self.name).inc()
                self._up(conn.line)
                delay = self.config.reconnect_initial
                try:
                    await self.serve(conn)
                    self._down("device handler stopped", first=True)
                except DeviceGone as exc:
                    self._down(str(exc), first=True)
                except OSError as exc:
                    self._down(f"i/o error: {exc}", first=True)
                finally:
                    conn.close()
            failed_before = True
            await pause(delay)
            delay = min(delay * 2, self.config.reconnect_max)

    def accept(self) -> None:
        """Count one valid frame."""
        self._status.frames += 1
        self._status.last_frame_at = utcnow()
        FRAMES.labels(self.name).inc()

    def reject(self, reason: str, detail: str) -> None:
        """Count and log a dropped frame; ``detail`` must not carry the frame's content."""
        self._status.rejected += 1
        REJECTED.labels(self.name, reason).inc()
        log.warning("device %s: dropped frame (%s): %s", self.name, reason, detail)

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _up(self, line: str) -> None:
        self._status.up = True
        self._status.line = line
        self._status.connected_since = utcnow()
        self._status.disconnected_since = None
        self._status.identity = None  # another device may be on the port now: asked again
        DEVICE_UP.labels(self.name).set(1)
        log.info("device %s: connected on %s", self.name, self.config.port)
        self.changed()

    def _down(self, error: str, *, first: bool) -> None:
        was_up = self._status.up
        self._status.up = False
        self._status.connected_since = None
        self._status.last_error = error
        DEVICE_UP.labels(self.name).set(0)
        if was_up or first:
            self._status.outages += 1
            self._status.disconnected_since = utcnow()
            log.warning("device %s: down: %s (retrying)", self.name, error)
            self.changed()
        else:
            log.debug("device %s: still down: %s", self.name, error)
