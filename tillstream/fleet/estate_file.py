"""The estate file: head office's configuration of its stores' edges, tills and devices, as
one TOML file, checked whole before anything is published (``tillstream fleet apply``)::

    [stores.S001.edge]
    log_level = "WARNING"
    max_event_age = "P7D"

    [stores.S001.tills.T02]
    lifecycle = "suspended"

    [stores.S001.devices.scanner-1]
    protocol = "scanner"
    port = "/dev/serial/by-id/usb-Datalogic-if00"

Each table is the whole desired state of its target: an edge setting it does not name goes
back to the edge's own; a device's table replaces the store's own for that device. A till's
token is never in the file (``rotate-token`` makes it, and applying the file keeps it).
Across a store's devices, a port used twice and a scanner's ``scale`` naming a device of the
file that is no scale are refused too; a ``scale`` the file does not name is checked by the
edge, against its own devices file.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from tillstream.core.devices import ScannerConfig, parse_device
from tillstream.core.estate import EDGE, device_target
from tillstream.fleet.desired import (
    Change,
    DesiredError,
    Problems,
    device_change,
    edge_change,
    till_change,
)

STORE_TABLES = frozenset({"edge", "tills", "devices"})


def read_estate(path: Path) -> list[Change]:
    """Every change the file asks for; :class:`DesiredError` listing every problem (nothing
    is published then)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DesiredError([f"{path}: cannot read the estate file: {exc.strerror}"]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DesiredError([f"{path}: not valid TOML: {exc}"]) from None
    return estate_changes(raw)


def estate_changes(raw: dict[str, Any]) -> list[Change]:
    """The changes of a parsed estate file, checked whole."""
    problems = Problems()
    for name in sorted(set(raw) - {"stores"}):
        problems.found.append(f"{name}: not a table of the estate file (only [stores.<id>])")
    stores = raw.get("stores", {})
    if not isinstance(stores, dict):
        problems.found.append("stores: must be tables, [stores.<store id>]")
        stores = {}
    changes: list[Change] = []
    for store, tables in stores.items():
        if not isinstance(tables, dict):
            problems.add(store, None, "must be a table: [stores.<id>.edge|tills|devices]")
            continue
        for name in sorted(set(tables) - STORE_TABLES):
            problems.add(store, None, name, "not a table of a store (edge, tills, devices)")
        changes += _store(store, tables, problems)
    problems.raise_any()
    return changes


def _store(store: str, tables: dict[str, Any], problems: Problems) -> list[Change]:
    found: list[Change | None] = []
    edge = tables.get("edge")
    if edge is not None:
        if isinstance(edge, dict):
            found.append(edge_change(store, edge, problems, replace=True))
        else:
            problems.add(store, EDGE, "must be a table")
    for till, fields in _tables(store, tables, "tills", problems):
        found.append(till_change(store, till, fields, problems, replace=True))
    devices = dict(_tables(store, tables, "devices", problems))
    for name, table in devices.items():
        found.append(device_change(store, name, table, problems))
    _across_devices(store, devices, problems)
    return [c for c in found if c is not None]


def _tables(
    store: str, tables: dict[str, Any], name: str, problems: Problems
) -> list[tuple[str, dict[str, Any]]]:
    group = tables.get(name, {})
    if not isinstance(group, dict):
        problems.add(store, None, name, f"must be tables, [stores.{store}.{name}.<id>]")
        return []
    found = []
    for key, value in group.items():
        if isinstance(value, dict):
            found.append((key, value))
        else:
            problems.add(store, f"{name[:-1]} {key!r}", "must be a table")
    return found


def _across_devices(store: str, devices: dict[str, dict[str, Any]], problems: Problems) -> None:
    """What one device's table cannot say alone: ports used twice, a scanner's scale."""
    parsed = {}
    for name, table in devices.items():
        try:
            parsed[name] = parse_device(table)
        except ValueError:
            continue  # already named by its own checks
    ports: dict[str, str] = {}
    for name, device in parsed.items():
        if device.port in ports:
            problems.add(
                store, device_target(name), "port", f"already used by device {ports[device.port]}"
            )
        ports.setdefault(device.port, name)
        scale = device.scale if isinstance(device, ScannerConfig) else None
        if scale is not None and isinstance(parsed.get(scale), ScannerConfig):
            problems.add(store, device_target(name), "scale", "names a device that is no scale")
