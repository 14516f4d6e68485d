"""Puts head office's desired state in force at the edge, target by target, and keeps how
each went for the estate report (``applied``: the version, in force or not, why not).

- ``till/<id>``: its lifecycle (a suspended or decommissioned till is refused from then on,
  ``tills.py``) and its token (``access.py``). A suspension is applied even when the token
  part of the same record cannot be (the record is then reported not applied, saying why).
- ``device/<name>``: its table (``settings_json``), checked by the devices file's rules with
  every other device in force and its port present, then applied by restarting that device
  alone; refused, the device keeps the settings it runs with.
- ``edge``: the log level and the plausibility window (``live_settings.py``).

A deleted record (a tombstone) gives the target back to the store's own configuration: the
tokens file, the devices file, the edge's settings; the till is active again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from tillstream_edge import metrics
from tillstream_edge.devices import DeviceConfigError, DeviceService
from tillstream_edge.estate.access import TillAccess
from tillstream_edge.estate.db import AppliedRow, EstateDb
from tillstream_edge.estate.tills import LIFECYCLES, Lifecycle
from tillstream_edge.live_settings import LiveSettings

log = logging.getLogger(__name__)

MAX_ERROR = 300
"""Characters of a reason reported, at most."""


class DesiredApplier:
    """Applies one store's desired state (module docstring)."""

    def __init__(
        self,
        db: EstateDb,
        access: TillAccess,
        devices: DeviceService,
        live: LiveSettings,
        *,
        on_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.access = access
        self.devices = devices
        self.live = live
        self.on_change = on_change
        self.clock = clock
        self.applied: dict[str, AppliedRow] = {}

    async def start(
        self, records: Mapping[str, dict[str, Any]], stored: Mapping[str, AppliedRow]
    ) -> None:
        """At start, before anything is served: the copy's desired state in force again (a
        till suspended stays refused, offline too); what the file says was applied before
        keeps its time when it is applied the same way."""
        self.applied = dict(stored)
        named = {target.removeprefix("till/") for target in records if target.startswith("till/")}
        for till, lifecycle in self.access.tills.lifecycles().items():
            if lifecycle != "ACTIVE" and till not in named:  # its record deleted meanwhile
                self.access.tills.set_lifecycle(till, "ACTIVE")
        gone = set(stored) - set(records)
        await self.apply(set(records) | gone, records)

    async def apply(self, targets: Iterable[str], records: Mapping[str, dict[str, Any]]) -> None:
        """Apply the desired state of ``targets`` as ``records`` holds it now (a target
        missing there: deleted by head office)."""
        rows: dict[str, AppliedRow] = {}
        deleted: list[str] = []
        for target in sorted(targets):
            record = records.get(target)
            if record is None:
                await self._reset(target)
                if self.applied.pop(target, None) is not None:
                    deleted.append(target)
                continue
            rows[target] = await self._row(target, record)
        # A scanner paired with a scale head office added in the same batch may have come
        # first: each device refused is tried once more, after the others.
        for target, row in list(rows.items()):
            if not row.applied and target.startswith("device/"):
                rows[target] = await self._row(target, records[target])
        for target, row in rows.items():
            before = self.applied.get(target)
            if before is not None and (before.version, before.applied, before.error) == (
                row.version,
                row.applied,
                row.error,
            ):
                rows[target] = before  # the same outcome: its time stays
            else:
                outcome = "applied" if row.applied else "refused"
                metrics.DESIRED_APPLIED.labels(target.partition("/")[0], outcome).inc()
                if not row.applied:
                    log.warning(
                        "estate: head office's %s version %d not applied: %s",
                        target,
                        row.version,
                        row.error,
                    )
                else:
                    log.info("estate: head office's %s version %d applied", target, row.version)
        self.applied.update(rows)
        await self.db.save_applied(list(rows.values()), deleted)
        self.on_change()

    async def _row(self, target: str, record: dict[str, Any]) -> AppliedRow:
        try:
            error = await self._apply(target, record)
        except Exception as exc:  # a bug must not stop the reading; reported, logged
            log.exception("estate: applying %s failed", target)
            error = f"the edge failed applying it ({type(exc).__name__})"
        return AppliedRow(target, int(record["version"]), error is None, _cut(error), self.clock())

    async def _apply(self, target: str, record: dict[str, Any]) -> str | None:
        """Why the record is not in force, or None: it is."""
        kind, _, name = target.partition("/")
        if kind == "edge" and not name:
            return self._edge(record.get("edge"))
        if kind == "till" and name:
            return self._till(name, record.get("till"))
        if kind == "device" and name:
            return await self._device(name, record.get("device"))
        return f"unknown target {target!r}: edge, till/<id> or device/<name>"

    def _edge(self, desired: dict[str, Any] | None) -> str | None:
        if desired is None:
            return "the record holds no edge settings"
        try:
            self.live.apply(
                desired.get("log_level"),
                desired.get("max_event_age_seconds"),
                desired.get("max_future_seconds"),
            )
        except ValueError as exc:
            return str(exc)
        return None

    def _till(self, till: str, desired: dict[str, Any] | None) -> str | None:
        if desired is None:
            return "the record holds no till settings"
        lifecycle = desired.get("lifecycle")
        if lifecycle not in LIFECYCLES:
            return f"lifecycle {lifecycle} is not one this edge knows ({', '.join(LIFECYCLES)})"
        self.access.tills.set_lifecycle(till, cast(Lifecycle, lifecycle))
        token = desired.get("token_sha256")
        if token is None:
            self.access.unrotate(till)
            return None
        until: datetime | None = desired.get("previous_token_until")
        try:
            self.access.rotate(
                till,
                token,
                desired.get("previous_token_sha256"),
                None if until is None else until.timestamp(),
            )
        except ValueError as exc:
            return f"lifecycle applied; token not: {exc}"
        return None

    async def _device(self, name: str, desired: dict[str, Any] | None) -> str | None:
        if desired is None:
            return "the record holds no device settings"
        try:
            table = json.loads(desired["settings_json"])
        except ValueError:
            return "settings_json is not JSON"
        if not isinstance(table, dict):
            return "settings_json is not a JSON object (the device's table)"
        try:
            config = self.devices.with_device(name, table)
        except DeviceConfigError as exc:
            return str(exc)
        if config != self.devices.config:  # the same settings again: the device runs on
            await self.devices.reconfigure(name, config)
        return None

    async def _reset(self, target: str) -> None:
        """Head office's record deleted: the store's own configuration again."""
        kind, _, name = target.partition("/")
        if kind == "edge":
            self.live.reset()
        elif kind == "till" and name:
            self.access.tills.set_lifecycle(name, "ACTIVE")
            self.access.unrotate(name)
        elif kind == "device" and name:
            try:
                config = self.devices.with_device(name, None)
                if config != self.devices.config:
                    await self.devices.reconfigure(name, config)
            except DeviceConfigError as exc:  # the file's table beside head office's others
                log.error("estate: %s back to the devices file failed: %s", target, exc)
        log.info("estate: head office's %s deleted: the store's own configuration", target)


def _cut(error: str | None) -> str | None:
    return None if error is None else error[:MAX_ERROR]
