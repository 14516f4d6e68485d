"""Scales: ask for a weight, wait for a stable one, and keep checking the scale answers.

Protocols (MT-SICS, Toledo 8217) only say how to ask and how to read a reply; this module
owns the conversation. One command is in flight at a time (a lock), stale frames are drained
before each command, a scale that does not answer within ``reply_timeout`` is treated as gone
(the port is closed and reopened, which also clears a wedged USB adapter), and an idle scale
is polled every ``poll_interval`` so the health status is true before anyone needs a weight.
Weights are Decimal kilograms with three decimals (the stock schema's scale), never floats.
A protocol that can say what the scale is asks once per connection (``identify``); the last
reply's state (zero, stable, overload...) is kept for the estate report, never its weight.
"""

from __future__ import annotations

import asyncio
import enum
from abc import abstractmethod
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from tillstream_edge.devices.config import ScaleConfig
from tillstream_edge.devices.link import Connection, Device, DeviceGone

_MILLI = Decimal("0.001")
_TO_KG = {"kg": Decimal(1), "g": Decimal("0.001"), "mg": Decimal("0.000001")}
_RETRY_PAUSE = 0.2


class Reading(enum.Enum):
    STABLE = "stable"
    DYNAMIC = "dynamic"  # still settling: ask again
    NOT_EXECUTABLE = "not_executable"  # busy or refused: ask again
    STATUS = "status"  # a status without a weight: ask again
    OVERLOAD = "overload"
    UNDERLOAD = "underload"


_REPORTED = {
    Reading.STABLE: "ok",
    Reading.DYNAMIC: "motion",
    Reading.NOT_EXECUTABLE: "busy",
    Reading.STATUS: "status",
    Reading.OVERLOAD: "overload",
    Reading.UNDERLOAD: "underload",
}
"""What the estate report says of a scale's last reply (``scale_status``)."""


@dataclass(frozen=True)
class Reply:
    """A scale's answer; ``kg`` is set for STABLE and, when sent, DYNAMIC."""

    reading: Reading
    kg: Decimal | None = None


class BadReply(Exception):
    """A frame that is not a reply of the protocol; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ScaleError(Exception):
    """No stable weight could be had; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def to_kg(value: str, unit: str) -> Decimal:
    """Decimal kilograms from a scale's value and unit text; raises BadReply."""
    factor = _TO_KG.get(unit.lower())
    if factor is None:
        raise BadReply("unit", f"unsupported unit ({len(unit)} characters)")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise BadReply("bad_reply", "weight is not a number") from None
    if not amount.is_finite():
        raise BadReply("bad_reply", "weight is not a number")
    # 10**12 or more fits no stock quantity (decimal(15, 3)), and quantize() would raise
    # InvalidOperation past 28 digits: a garbled line must not stop the device.
    if amount and amount.adjusted() >= 12:
        raise BadReply("bad_reply", "weight out of range")
    return (amount * factor).quantize(_MILLI, rounding=ROUND_HALF_EVEN)


class Scale(Device):
    """A scale on a serial port; ``weigh()`` is what stock sessions call."""

    def __init__(self, name: str, config: ScaleConfig) -> None:
        super().__init__(name, config)
        self.scale_config = config
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()

    @abstractmethod
    def command(self) -> bytes:
        """Bytes that ask for the current weight."""

    @abstractmethod
    def parse(self, frame: bytes) -> Reply:
        """Interpret one reply frame; raises BadReply."""

    async def identify(self, conn: Connection) -> None:
        """Ask the scale what it is, once per connection (a protocol that can tell)."""

    async def serve(self, conn: Connection) -> None:
        self._conn = conn
        try:
            async with self._lock:  # a weight asked meanwhile waits its turn
                await self.identify(conn)
            interval = self.scale_config.poll_interval or None
            while True:
                try:
                    async with asyncio.timeout(interval):
                        reason = await conn.wait_closed()
                except TimeoutError:
                    async with self._lock:
                        await self._ask(conn)
                    continue
                raise DeviceGone(reason)
        finally:
            self._conn = None

    async def weigh(self) -> Decimal:
        """A stable weight in kg, asking until ``stable_timeout``; raises ScaleError."""
        cfg = self.scale_config
        last = "no reply"
        try:
            async with asyncio.timeout(cfg.stable_timeout):
                async with self._lock:
                    while True:
                        conn = self._conn
                        if conn is None:
                            raise ScaleError("scale_unavailable", self._status.last_error or "")
                        reply = await self._ask(conn)
                        if reply is not None:
                            if reply.reading is Reading.STABLE and reply.kg is not None:
                                return reply.kg
                            if reply.reading in (Reading.OVERLOAD, Reading.UNDERLOAD):
                                raise ScaleError(reply.reading.value, "scale out of range")
                            last = reply.reading.value
                        await asyncio.sleep(_RETRY_PAUSE)
        except TimeoutError:
            raise ScaleError("no_stable_weight", f"last reading: {last}") from None
        except DeviceGone as exc:
            raise ScaleError("scale_unavailable", str(exc)) from None

    async def _ask(self, conn: Connection) -> Reply | None:
        """One command and its reply; None for a garbled reply (counted)."""
        conn.drain()
        conn.write(self.command())
        try:
            async with asyncio.timeout(self.scale_config.reply_timeout):
                frame = await conn.frame()
        except TimeoutError:
            conn.close("no reply from scale")
            raise DeviceGone("no reply from scale") from None
        try:
            reply = self.parse(frame)
        except BadReply as exc:
            self.reject(exc.reason, exc.detail)
            if exc.reason == "scale_error":
                self._status.reading = "error"
            return None
        self.accept()
        self._status.reading = _REPORTED[reply.reading]
        self._status.stable = reply.reading is Reading.STABLE
        self._status.zero = None if reply.kg is None else reply.kg == 0
        return reply
