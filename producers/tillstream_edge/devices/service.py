"""The edge's device service: every configured serial device, each in its own task.

Scales are built first so a paired scanner can ask them for weights; each scanner gets a
stock session. A device that fails is retried by its own task (see ``link``), so ``run()``
only ends when cancelled, or when ``emit`` fails (EmitFailed), because then nothing is
durable.

Head office may change a device's settings while the edge runs (``reconfigure``): the
devices in force are the file's with head office's tables in their place, checked whole by
the file's rules; the device's task is stopped and started with the new settings, and with
it the scanners paired with a scale that changed (their sessions hold the scale). A
scanner's open session is closed first, as after ``idle_timeout``: what it counted is
emitted, not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

from tillstream_edge.devices.config import (
    DeviceConfigError,
    DevicesConfig,
    MtSicsConfig,
    ScannerConfig,
    as_table,
    devices_from,
)
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
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """``lookup``: the item master's SKU of a GTIN (the devices file's ``[items]`` wins);
        ``on_change``: called when a device connects, goes away or says what it is."""
        self.file_config = config
        self.config = config
        """The devices in force: the file's, with head office's settings in their place."""
        self.store_id = store_id
        self._emit = emit
        self._lookup = lookup
        self._on_change = on_change
        self.scales: dict[str, Scale] = {}
        self.sessions: dict[str, StockSession] = {}
        self.scanners: dict[str, Scanner] = {}
        self._tasks: dict[str, list[asyncio.Task[Any]]] = {}
        self._failed: asyncio.Future[None] | None = None
        self._build(config.scales())
        self._build(config.scanners())

    @property
    def devices(self) -> dict[str, Device]:
        return {**self.scales, **self.scanners}

    async def run(self) -> None:
        """Run every device until cancelled; raises an ExceptionGroup holding EmitFailed
        when a scanner's events can no longer be stored."""
        self._failed = asyncio.get_running_loop().create_future()
        for name in self.devices:
            self._start(name)
        try:
            await self._failed
        finally:
            self._failed = None
            await self._stop(list(self._tasks), close_sessions=False)

    # -- head office's settings ------------------------------------------------------------

    def with_device(self, name: str, table: dict[str, Any] | None) -> DevicesConfig:
        """The devices in force with ``name`` set to ``table`` (None: the file's, or none);
        raises DeviceConfigError naming the device and field, or a port that does not
        exist (a file's device may wait for its port; head office's changes may not)."""
        raw = as_table(self.config)
        devices: dict[str, Any] = raw.setdefault("devices", {})
        devices.pop(name, None)
        if table is not None:
            devices[name] = table
        elif name in self.file_config.devices:
            devices[name] = as_table(self.file_config)["devices"][name]
        new = devices_from(raw)
        device = new.devices.get(name)
        if table is not None and device is not None and not _port_exists(device.port):
            raise DeviceConfigError(f"port {device.port} does not exist")
        return new

    async def reconfigure(self, name: str, new: DevicesConfig) -> None:
        """Put ``new`` (from :meth:`with_device`) in force: ``name`` and the scanners paired
        with it are stopped and started again with their settings (only built, before
        :meth:`run`)."""
        affected = {name} | {
            scanner
            for scanner, cfg in {**self.config.scanners(), **new.scanners()}.items()
            if cfg.scale == name
        }
        running = self._failed is not None
        if running:
            await self._stop(sorted(affected), close_sessions=True)
        for gone in affected:
            self.scales.pop(gone, None)
            self.scanners.pop(gone, None)
            self.sessions.pop(gone, None)
        self.config = new
        self._build({n: d for n, d in new.scales().items() if n in affected})
        self._build({n: d for n, d in new.scanners().items() if n in affected})
        if running:
            for started in sorted(affected & set(self.devices)):
                self._start(started)
        if self._on_change is not None:
            self._on_change()

    # -- tasks -------------------------------------------------------------------------------

    def _build(self, configs: dict[str, Any]) -> None:
        for name, cfg in configs.items():
            device: Device
            if isinstance(cfg, ScannerConfig):
                session = StockSession(
                    name,
                    cfg,
                    store_id=self.store_id,
                    emit=self._emit,
                    items=self.config.items,
                    scale=self.scales[cfg.scale] if cfg.scale else None,
                    lookup=self._lookup,
                )
                self.sessions[name] = session
                device = self.scanners[name] = Scanner(name, cfg, session.on_scan)
            elif isinstance(cfg, MtSicsConfig):
                device = self.scales[name] = MtSicsScale(name, cfg)
            else:
                device = self.scales[name] = Toledo8217Scale(name, cfg)
            device.on_change = self._on_change

    def _start(self, name: str) -> None:
        tasks = [asyncio.create_task(self.devices[name].run(), name=f"device:{name}")]
        if name in self.sessions:
            tasks.append(asyncio.create_task(self.sessions[name].run(), name=f"session:{name}"))
        for task in tasks:
            task.add_done_callback(self._watch)
        self._tasks[name] = tasks

    def _watch(self, task: asyncio.Task[Any]) -> None:
        # A device's task ends only cancelled, or when its events cannot be stored: that
        # stops the service (and the edge), as nothing could be made durable.
        error = None if task.cancelled() else task.exception()
        failed = self._failed
        if isinstance(error, Exception) and failed is not None and not failed.done():
            failed.set_exception(ExceptionGroup("a device failed", [error]))

    async def _stop(self, names: list[str], *, close_sessions: bool) -> None:
        """Cancel the devices' tasks; ``close_sessions``: a scanner's open session is closed
        first, as an idle one would be (not when the edge stops: a count in progress is then
        no count)."""
        for name in names:
            session = self.sessions.get(name)
            if close_sessions and session is not None:
                with contextlib.suppress(Exception):  # an emit failure ends the service anyway
                    await session.close("reconfigured")
        tasks = [task for name in names for task in self._tasks.pop(name, [])]
        for task in tasks:
            task.remove_done_callback(self._watch)
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the transports close their ports on the next turn

    # -- health ------------------------------------------------------------------------------

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


def _port_exists(port: str) -> bool:
    """A device path that exists (a symlink to one too); pyserial's URLs (``socket://``,
    ``rfc2217://``) name no file and are taken as they are."""
    return "://" in port or os.path.exists(port)
