"""The edge's device service: every configured serial device, each in its own task.

Scales start first so a paired scanner can ask them for weights; each scanner gets a stock
session. A device that fails is retried by its own task (see ``link``), so ``run()`` only
ends when cancelled, or when ``emit`` fails (EmitFailed), because then nothing is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tillstream_edge.devices.config import DevicesConfig, MtSicsConfig
from tillstream_edge.devices.link import Device, DeviceStatus
from tillstream_edge.devices.mtsics import MtSicsScale
from tillstream_edge.devices.scale import Scale
from tillstream_edge.devices.scanner import Scanner
from tillstream_edge.devices.sessions import Emit, StockSession
from tillstream_edge.devices.toledo import Toledo8217Scale


class DeviceService:
    """Runs the devices of one store and reports their health."""

    def __init__(
        self,
        config: DevicesConfig,
        *,
        store_id: str,
        emit: Emit,
        lookup: Callable[[str], str | None] | None = None,
    ) -> None:
        """``lookup``: the item master's SKU of a GTIN (the devices file's ``[items]`` wins)."""
        self.config = config
        self.store_id = store_id
        self.scales: dict[str, Scale] = {}
        for name, scale_cfg in config.scales().items():
            self.scales[name] = (
                MtSicsScale(name, scale_cfg)
                if isinstance(scale_cfg, MtSicsConfig)
                else Toledo8217Scale(name, scale_cfg)
            )
        self.sessions: dict[str, StockSession] = {}
        self.scanners: dict[str, Scanner] = {}
        for name, scan_cfg in config.scanners().items():
            session = StockSession(
                name,
                scan_cfg,
                store_id=store_id,
                emit=emit,
                items=config.items,
                scale=self.scales[scan_cfg.scale] if scan_cfg.scale else None,
                lookup=lookup,
            )
            self.sessions[name] = session
            self.scanners[name] = Scanner(name, scan_cfg, session.on_scan)

    @property
    def devices(self) -> dict[str, Device]:
        return {**self.scales, **self.scanners}

    async def run(self) -> None:
        """Run every device until cancelled."""
        async with asyncio.TaskGroup() as tasks:
            for name, device in self.devices.items():
                tasks.create_task(device.run(), name=f"device:{name}")
            for name, session in self.sessions.items():
                tasks.create_task(session.run(), name=f"session:{name}")

    def status(self) -> dict[str, DeviceStatus]:
        """A snapshot per device: up, last_error, counts (for the health endpoint)."""
        return {name: device.status() for name, device in self.devices.items()}

    def health(self) -> dict[str, dict[str, Any]]:
        """``status()`` as JSON-ready dicts, with each scanner's open session."""
        out: dict[str, dict[str, Any]] = {}
        for name, st in self.status().items():
            out[name] = {
                "protocol": st.protocol,
                "port": st.port,
                "up": st.up,
                "last_error": st.last_error,
                "connected_since": st.connected_since.isoformat() if st.connected_since else None,
                "last_frame_at": st.last_frame_at.isoformat() if st.last_frame_at else None,
                "reconnects": st.reconnects,
                "frames": st.frames,
                "rejected": st.rejected,
            }
            if name in self.sessions:
                out[name]["session"] = self.sessions[name].reference
        return out
