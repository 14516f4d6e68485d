"""The edge service of one store: HTTP API, POSLog drop folder and serial devices feed one
durable outbox, which a forwarder drains to Kafka. Beside them, the store's estate
(``estate/``): head office's desired state applied, and reports of the edge, its tills and
devices.

Shutdown (SIGTERM or SIGINT) stops intake first, then lets the forwarder publish what it
can within a grace period; anything left stays in the outbox for the next start. The last
estate report (STOP) says how much.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import time
from typing import Any

from tillstream.core.http import TlsFiles, embedded_server
from tillstream.core.logs import REPEATED
from tillstream.core.pan import mask_pans
from tillstream.core.settings import Settings, split_host_port
from tillstream.core.topics import STORE_TOPICS
from tillstream_edge import metrics
from tillstream_edge.auth import load_tokens
from tillstream_edge.devices import DevicesConfig, DeviceService, load_devices
from tillstream_edge.dropfolder import DropFolder
from tillstream_edge.estate.service import EdgeParts, EstateService
from tillstream_edge.estate.till_status import till_status_router
from tillstream_edge.forwarder import forwarder_from_settings
from tillstream_edge.http_api import create_app
from tillstream_edge.ingest import (
    IngestError,
    count_refusal,
    ingestor_from_settings,
    refusal_reason,
)
from tillstream_edge.limits import RecordLimits, keep_limits_current
from tillstream_edge.live_settings import LiveSettings
from tillstream_edge.masterdata_api import master_data_router
from tillstream_edge.masterdata_copy import copy_from_settings
from tillstream_edge.masterdata_sync import MasterDataSync
from tillstream_edge.outbox import Backlog, OutboxFullError, outbox_from_settings

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 2.0
PRUNE_INTERVAL = 600.0
DISK_ALARM_RATIO = 0.8
DRAIN_SECONDS = 20.0
"""How long a stopping edge lets the forwarder publish what is left."""


class MaskCardNumbers(logging.Filter):
    """Masks card numbers in every log line: an error text may quote what a till sent
    (a POSLog field, a file name), and logs travel further than the store."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: the handler reports it, as without the mask
            return True
        masked = mask_pans(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_MASK = MaskCardNumbers()


def mask_card_numbers_in_logs() -> None:
    """Put the mask on every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_MASK)


class EdgeService:
    """The edge of the store ``settings`` name: everything it runs comes from the settings
    (store, listen address, outbox, devices, drop folder, tokens, TLS, Kafka)."""

    def __init__(self, settings: Settings, *, drain_seconds: float = DRAIN_SECONDS) -> None:
        self.settings = settings
        self.drain_seconds = drain_seconds
        self.outbox = outbox_from_settings(settings)
        # Kafka's default limits until the broker names the topics' own (refreshed in run()).
        self.limits = RecordLimits(settings.kafka_max_request_bytes)
        # The log level and plausibility window in force: head office may change them.
        self.live = LiveSettings.from_settings(settings)
        self.ingestor = ingestor_from_settings(settings, self.outbox, self.limits, window=self.live)
        self.store_id = self.ingestor.store_id
        self.forwarder = forwarder_from_settings(settings, self.outbox)
        self.ingestor.on_accepted.append(self.forwarder.notify)
        # The store's copy of the item master and prices (issue 15): read by the tills' API,
        # the sales path (stock_item, list_price) and the devices (GTIN -> SKU).
        self.masterdata = copy_from_settings(settings)
        self.masterdata_sync = MasterDataSync(
            settings, self.masterdata, rebuild_after=settings.edge_masterdata_rebuild_after
        )
        self.ingestor.master = self.masterdata
        # Always a device service: head office may add a device to an edge without a file.
        self.devices = DeviceService(
            load_devices(settings.edge_devices) if settings.edge_devices else DevicesConfig(),
            store_id=self.store_id,
            emit=self._emit_device,
            lookup=self.masterdata.sku_of_gtin,
            on_change=self._estate_changed,
        )
        tokens = load_tokens(settings.edge_tokens) if settings.edge_tokens is not None else None
        self.backlog: Backlog | None = None  # the outbox as housekeeping last counted it
        self.estate = EstateService(
            settings,
            self.store_id,
            EdgeParts(
                outbox=self.outbox,
                backlog=lambda: self.backlog,
                kafka_up=lambda: self.forwarder.kafka_up,
                last_publish_at=lambda: self.forwarder.last_publish_at,
                masterdata_caught_up_at=lambda: self.masterdata_sync.caught_up_at,
            ),
            self.devices,
            self.live,
            tokens,
        )
        self.app = create_app(self.ingestor, health=self.health, access=self.estate.access)
        self.app.include_router(master_data_router(self.masterdata, self.estate.access))
        self.app.include_router(till_status_router(self.estate.access))
        self.host, self.port = split_host_port(settings.edge_listen)
        self.tls = _tls(settings)
        self.server = embedded_server(
            self.app,
            self.host,
            self.port,
            tls=self.tls,
            read_timeout=settings.http_read_timeout_s,
            max_connections=settings.http_max_connections,
        )
        self._stop = asyncio.Event()
        self._last_backlog: dict[str, Any] = {}

    def request_stop(self) -> None:
        self._stop.set()

    def _estate_changed(self) -> None:
        self.estate.reporter.changed()

    def _access(self) -> str:
        """Who may post, for the start-up line."""
        rules = []
        if self.settings.edge_tls_client_cafile is not None:
            rules.append("client certificates required")
        if self.settings.edge_tokens is not None:
            rules.append("till tokens required")
        return ", ".join(rules) or "open to the store network"

    def health(self) -> dict[str, Any]:
        # Not ready while Kafka does not answer either: events are still taken and buffered,
        # but an operator (or a load balancer) must see that nothing leaves the store.
        ready = not self.outbox.is_full and self.forwarder.kafka_up
        state: dict[str, Any] = {
            "ready": ready,
            "store_id": self.store_id,
            "kafka_up": self.forwarder.kafka_up,
            "outbox": self._last_backlog,
            "masterdata": self.masterdata_sync.health(),
            "devices": self.devices.health(),
        }
        return state

    async def _emit_device(self, event_type: str, record: dict[str, Any]) -> None:
        # A refused scan is logged and counted; the device keeps running (rescanning is cheap).
        # Disk errors propagate and stop the edge: nothing could be made durable.
        try:
            await self.ingestor.accept([self.ingestor.encode(event_type, record, "device")])
        except (IngestError, OutboxFullError) as exc:  # counted once, under its reason
            reason = refusal_reason(exc)
            count_refusal("device", reason)
            if isinstance(exc, IngestError):  # the fields named, never their values
                fields = ", ".join(field for field, _ in exc.problems)
                log.error("device event refused (%s): %s", reason, fields)
            else:
                log.error("device event refused: %s", exc)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
        mask_card_numbers_in_logs()
        await self.outbox.open()
        metrics.OUTBOX_LIMIT_BYTES.set(self.outbox.max_bytes)
        # Head office's desired state in force before the first request (offline too).
        await self.estate.open()
        forwarder = asyncio.create_task(self.forwarder.run(), name="forwarder")
        estate = asyncio.create_task(self.estate.run(), name="estate")
        # Beside intake, never in its way: a failure is logged, the copy served as it is.
        masterdata = asyncio.create_task(self._masterdata(), name="masterdata")
        intake = [asyncio.create_task(self.server.serve(), name="http")]
        if self.settings.edge_poslog_dir is not None:
            folder = DropFolder(self.ingestor, self.settings.edge_poslog_dir)
            intake.append(asyncio.create_task(folder.run(), name="dropfolder"))
        intake.append(asyncio.create_task(self.devices.run(), name="devices"))
        housekeeping = asyncio.create_task(self._housekeeping(), name="housekeeping")
        limits = asyncio.create_task(
            keep_limits_current(self.limits, self.settings, [t.name for t in STORE_TOPICS]),
            name="record-limits",
        )
        log.info(
            "edge for store %s listening on %s://%s:%d (%s; outbox %s)",
            self.store_id,
            "http" if self.tls is None else "https",
            self.host,
            self.port,
            self._access(),
            self.outbox.path,
        )
        stopper = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stopper, *intake], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("%s failed: %r", task.get_name(), task.exception())
        limits.cancel()
        masterdata.cancel()
        for result in await asyncio.gather(limits, masterdata, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("%r", result)
        with contextlib.suppress(sqlite3.Error, OSError):
            await self.masterdata.close()
        await self._shutdown(intake, forwarder, housekeeping, stopper, estate)

    async def _masterdata(self) -> None:
        """Open the store's copy and keep it current. A copy that cannot be opened (a broken
        disk, a damaged file) is logged and left out: sales are then taken as sent, and the
        till API answers 503, but the edge goes on taking events."""
        try:
            await self.masterdata.open()
        except (sqlite3.Error, OSError) as exc:
            self.ingestor.master = None
            log.error(
                "master data copy %s cannot be opened (%s): no item master at this edge; "
                "sales are taken as sent. Move the file aside to rebuild it from Kafka.",
                self.masterdata.path,
                exc,
            )
            return
        await self.masterdata_sync.run()

    async def _shutdown(
        self,
        intake: list[asyncio.Task[Any]],
        forwarder: asyncio.Task[None],
        housekeeping: asyncio.Task[None],
        stopper: asyncio.Task[Any],
        estate: asyncio.Task[None],
    ) -> None:
        log.info(
            "stopping: intake closed, draining the outbox for up to %.0fs",
            self.drain_seconds,
        )
        self.server.should_exit = True
        for task in intake[1:]:
            task.cancel()
        await asyncio.gather(*intake, return_exceptions=True)
        self.forwarder.stop()
        try:
            await asyncio.wait_for(forwarder, timeout=self.drain_seconds)
        except TimeoutError:
            log.warning("drain timed out; unsent events stay in the outbox for the next start")
        await self.forwarder.close()
        for task in (housekeeping, stopper, estate):
            task.cancel()
        for result in await asyncio.gather(housekeeping, stopper, estate, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("%r", result)
        self.backlog = backlog = await self.outbox.backlog()
        await self.estate.stop()  # its STOP report says what is left
        await self.outbox.close()
        log.info("stopped; %d events left in the outbox", backlog.depth)

    async def _housekeeping(self) -> None:
        last_prune = 0.0
        alarmed = False
        while True:
            REPEATED.report()  # how often a flooding log line was not logged
            self.backlog = backlog = await self.outbox.backlog()
            age = time.time() - backlog.oldest_accepted_at if backlog.oldest_accepted_at else 0.0
            metrics.OUTBOX_DEPTH.set(backlog.depth)
            metrics.OUTBOX_OLDEST_AGE.set(age)
            metrics.OUTBOX_BYTES.set(backlog.size_bytes)
            metrics.OUTBOX_UNSENT_BYTES.set(backlog.unsent_bytes)
            metrics.QUARANTINE_DEPTH.set(backlog.quarantined)
            metrics.SET_ASIDE_OPEN.set(backlog.set_aside)
            self._last_backlog = {
                "depth": backlog.depth,
                "oldest_unsent_age_s": round(age, 1),
                "bytes": backlog.size_bytes,
                "unsent_bytes": backlog.unsent_bytes,
                "quarantined": backlog.quarantined,
                "poslog_set_aside": backlog.set_aside,
            }
            limit = self.outbox.max_bytes
            high = backlog.unsent_bytes >= DISK_ALARM_RATIO * limit
            if high and not alarmed:
                log.error(
                    "outbox at %.0f%% of its %d-byte limit (%d unsent events): "
                    "new events will be refused at the limit; check the Kafka link",
                    100 * backlog.unsent_bytes / limit,
                    limit,
                    backlog.depth,
                )
            alarmed = high
            if time.monotonic() - last_prune > PRUNE_INTERVAL:
                await self.outbox.prune()
                last_prune = time.monotonic()
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)


def _tls(settings: Settings) -> TlsFiles | None:
    """HTTPS, and mutual TLS when the settings name a client CA."""
    if settings.edge_tls_certfile is None or settings.edge_tls_keyfile is None:
        return None  # Settings allow neither or both
    return TlsFiles(
        settings.edge_tls_certfile, settings.edge_tls_keyfile, settings.edge_tls_client_cafile
    )
