"""Barcode scanners in serial mode: frames to validated scans.

A frame is ``[prefix][AIM id][data][terminator]``. The AIM symbology identifier (``]E0``
EAN-13, ``]C1`` GS1-128, ``]d2`` GS1 DataMatrix...) is optional and detected by its ``]``;
GS (0x1D) separators stay in the data because they end GS1 variable-length fields. biip
interprets the content and checks GTIN check digits, so a misread never becomes stock.
Anything else on the line (noise, foreign codes, overlong lines) is counted and dropped.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from biip import ParseError, parse
from biip.gs1_messages import GS1Message

from tillstream.core.identifiers import CARD_NUMBER, gtin_problem
from tillstream.core.pan import contains_pan
from tillstream.core.records import utcnow
from tillstream_edge.devices.config import ScannerConfig, canonical_gtin
from tillstream_edge.devices.link import Connection, Device, Framer

GS = "\x1d"
_AIM = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
# Printable ASCII plus GS; a scanner sends nothing else, so anything else is line noise.
_CLEAN = re.compile(r"^[\x20-\x7e\x1d]+$")


@dataclass(frozen=True)
class Scan:
    """One valid item scan."""

    gtin: str  # canonical GTIN-8/12/13/14
    data: str  # content after prefix and AIM id, GS separators kept
    symbology: str | None  # AIM id such as "]E0", if the scanner sent one
    gs1: GS1Message | None  # element strings (batch, expiry...) when the code is GS1
    at: datetime


@dataclass(frozen=True)
class ControlScan:
    """A configured control code (e.g. COUNT-END) rather than an item."""

    code: str
    at: datetime


class Rejected(Exception):
    """A frame that is not a usable scan; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_scan(
    frame: bytes, *, prefix: str = "", controls: frozenset[str] = frozenset()
) -> Scan | ControlScan:
    """Interpret one frame (terminator removed); raises Rejected with a log-safe detail."""
    at = utcnow()
    frame = frame.strip(b"\r\n")  # tolerate a CR LF scanner configured as CR or LF
    try:
        text = frame.decode("ascii")
    except UnicodeDecodeError:
        raise Rejected("noise", f"{len(frame)} bytes, not ASCII") from None
    if not text or not _CLEAN.match(text):
        raise Rejected("noise", f"{len(frame)} bytes with control characters")
    if prefix:
        if not text.startswith(prefix):
            raise Rejected("bad_prefix", "configured prefix missing")
        text = text.removeprefix(prefix)
    aim = _AIM.match(text)
    symbology = aim.group(0) if aim else None
    data = text[aim.end() :] if aim else text
    if data in controls:
        return ControlScan(code=data, at=at)
    try:
        result = parse(text)
    except (ParseError, ValueError, IndexError):  # biip raises IndexError on " ]"
        _refuse_card_number(data)
        raise Rejected("not_gtin", f"{len(data)} characters, no GTIN or GS1 content") from None
    if result.gtin is None:
        misread = bool(result.gtin_error and "check digit" in result.gtin_error)
        if not (misread and len(data) <= 13):  # an EAN misread: 13-digit cards are not issued
            _refuse_card_number(data)
        if misread:
            raise Rejected("bad_check_digit", "GTIN check digit does not match")
        raise Rejected("not_gtin", f"{len(data)} characters, no GTIN")
    gtin = canonical_gtin(result.gtin)
    problem = gtin_problem(gtin)  # the GTIN rule of every channel (GS1 prefix, card numbers)
    if problem is not None:
        reason = CARD_NUMBER if problem.kind == CARD_NUMBER else "not_gtin"
        raise Rejected(reason, f"{len(gtin)}-digit code: {problem.message}")
    return Scan(
        gtin=gtin,
        data=data,
        symbology=symbology,
        gs1=result.gs1_message,
        at=at,
    )


def _refuse_card_number(data: str) -> None:
    """A card swiped or typed on the scanner's line is refused as what it is."""
    if contains_pan(data):
        raise Rejected(CARD_NUMBER, f"{len(data)} characters, looks like a card number (PAN)")


class Scanner(Device):
    """A serial barcode scanner; each valid scan is handed to ``on_scan``."""

    def __init__(
        self,
        name: str,
        config: ScannerConfig,
        on_scan: Callable[[Scan | ControlScan], Awaitable[None]],
    ) -> None:
        super().__init__(name, config)
        self.scanner_config = config
        self._on_scan = on_scan
        self._controls = frozenset({config.end_code})

    def framer(self) -> Framer:
        return Framer(self.scanner_config.terminator_bytes, self.config.max_frame)

    async def serve(self, conn: Connection) -> None:
        while True:
            frame = await conn.frame()
            if not frame.strip(b"\r\n"):
                continue  # blank line between scans: not worth a metric
            try:
                scan = decode_scan(
                    frame, prefix=self.scanner_config.prefix, controls=self._controls
                )
            except Rejected as exc:
                self.reject(exc.reason, exc.detail)
                continue
            self.accept()
            try:
                await self._on_scan(scan)
            except Rejected as exc:  # e.g. the paired scale gave no weight
                self.reject(exc.reason, exc.detail)
