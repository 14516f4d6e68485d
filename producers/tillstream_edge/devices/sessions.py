"""Stock sessions: what a scanner's scans mean for stock on hand.

Each scanner runs one session at a time, in its configured mode. A session opens on the
first item scan and closes on the control barcode (``end_barcode``; default ``RECEIVE-END``
or ``COUNT-END``) or after ``idle_timeout`` seconds without scans; its id is the events'
``reference``, so one delivery or one shelf count can be traced end to end.

- ``receive``: every scan is a delivery line, emitted at once as a CHANGE/RECEIVED movement
  of +1 EA, or, when the scanner is paired with a scale, of the scale's stable weight in KG.
  Emitting per scan means nothing received is lost if the session is never closed.
- ``count``: scans add up per SKU (one EA, or the weight in KG when paired with a scale) and
  the session's close emits one COUNT/COUNTED movement per SKU, the absolute quantity on the
  shelf as of that SKU's last scan. Counts are per SKU, not per GTIN, since two COUNT events
  for one SKU would overwrite each other; ``gtin`` is then the GTIN scanned last.

The SKU is the one the devices file's ``[items]`` table maps the GTIN to (an override),
else the item master's (the store's copy, ``lookup``), else the GTIN itself. A scan that cannot
be weighed (scale down, unstable, out of range) is rejected and counted, never guessed as
1 EA. Events leave only through ``emit``; if it fails the error propagates (EmitFailed) and
stops the service, because the caller's durable store is then broken.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn

from prometheus_client import Counter

from tillstream_edge.devices.config import ScannerConfig
from tillstream_edge.devices.scale import Scale, ScaleError
from tillstream_edge.devices.scanner import ControlScan, Rejected, Scan

EVENTS = Counter(
    "tillstream_edge_device_events_total",
    "Stock movements emitted from device scans, by reason (RECEIVED, COUNTED).",
    ["device", "reason"],
)
SESSIONS = Counter(
    "tillstream_edge_device_sessions_total",
    "Stock sessions closed, by how they ended (control, idle).",
    ["device", "ended"],
)

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
log = logging.getLogger(__name__)


class EmitFailed(Exception):
    """The caller's emit callback failed: events can no longer be made durable."""


@dataclass
class _Tally:
    gtin: str
    quantity: Decimal
    last_at: datetime


class StockSession:
    """Turns one scanner's scans into stock movements (see the module docstring)."""

    def __init__(
        self,
        device: str,
        config: ScannerConfig,
        *,
        store_id: str,
        emit: Emit,
        items: Mapping[str, str],
        scale: Scale | None = None,
        lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        self.device = device
        self.config = config
        self.store_id = store_id
        self.reference: str | None = None
        self._emit = emit
        self._items = items
        self._lookup = lookup
        self._scale = scale
        self._tally: dict[str, _Tally] = {}
        self._lock = asyncio.Lock()
        self._open = asyncio.Event()
        self._deadline = 0.0

    async def on_scan(self, scan: Scan | ControlScan) -> None:
        """Handle one scan; raises Rejected when a weight is needed and cannot be had."""
        async with self._lock:
            if isinstance(scan, ControlScan):
                if self.reference is not None:
                    await self._close("control")
                return
            quantity = await self._quantity()
            if self.reference is None:
                self.reference = self._new_reference(scan.at)
                self._open.set()
                log.info(
                    "device %s: %s session %s opened", self.device, self.config.mode, self.reference
                )
            self._deadline = asyncio.get_running_loop().time() + self.config.idle_timeout
            sku = self._items.get(scan.gtin) or self._master_sku(scan.gtin) or scan.gtin
            if self.config.mode == "receive":
                await self._send(sku, scan.gtin, "CHANGE", quantity, "RECEIVED", scan.at)
                return
            tally = self._tally.get(sku)
            if tally is None:
                self._tally[sku] = _Tally(scan.gtin, quantity, scan.at)
            else:
                tally.quantity += quantity
                tally.gtin, tally.last_at = scan.gtin, scan.at

    def _master_sku(self, gtin: str) -> str | None:
        """The SKU the item master gives a GTIN; None if it has none or cannot be read (the
        scan is then counted under the GTIN, as without an item master)."""
        if self._lookup is None:
            return None
        try:
            return self._lookup(gtin)
        except Exception as exc:
            log.warning("device %s: item master not readable: %s", self.device, exc)
            return None

    async def run(self) -> NoReturn:
        """Close sessions left idle; runs beside the scanner until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            await self._open.wait()
            remaining = self._deadline - loop.time()
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            async with self._lock:
                if self.reference is not None and loop.time() >= self._deadline:
                    await self._close("idle")

    async def close(self, ended: str) -> None:
        """Close the open session now, if one is open (its counts emitted), as ``ended``."""
        async with self._lock:
            if self.reference is not None:
                await self._close(ended)

    async def _quantity(self) -> Decimal:
        if self._scale is None:
            return Decimal(1)
        try:
            kg = await self._scale.weigh()
        except ScaleError as exc:
            raise Rejected(f"scale_{exc.reason}", f"no weight from {self._scale.name}") from None
        if kg <= 0:
            raise Rejected("scale_no_weight", f"{self._scale.name} shows {kg} kg")
        return kg

    async def _close(self, ended: str) -> None:
        reference = self.reference
        assert reference is not None
        tally, self._tally = self._tally, {}
        for sku, line in tally.items():
            await self._send(sku, line.gtin, "COUNT", line.quantity, "COUNTED", line.last_at)
        self.reference = None
        self._open.clear()
        SESSIONS.labels(self.device, ended).inc()
        log.info(
            "device %s: session %s closed (%s, %d SKUs)", self.device, reference, ended, len(tally)
        )

    async def _send(
        self, sku: str, gtin: str, qtype: str, quantity: Decimal, reason: str, at: datetime
    ) -> None:
        weighed = self._scale is not None
        record = {
            "event_id": str(uuid.uuid4()),
            "store_id": self.store_id,
            "sku": sku,
            "gtin": gtin,
            "quantity_type": qtype,
            "quantity": quantity,
            "unit_of_measure": "KG" if weighed else "EA",
            "reason": reason,
            "reference": self.reference,
            "occurred_at": at,
            "source": "scale" if weighed else "scanner",
        }
        try:
            await self._emit("stock_movement", record)
        except Exception as exc:
            raise EmitFailed(f"device {self.device}: emit failed: {exc}") from exc
        EVENTS.labels(self.device, reason).inc()

    def _new_reference(self, at: datetime) -> str:
        kind = "RCV" if self.config.mode == "receive" else "CNT"
        return f"{kind}-{at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
