"""One estate report (``schemas/estate_report/v1.avsc``): what the edge says of itself, its
devices, its tills and head office's desired state as applied, from their snapshots.

Pure: the reporter gathers the facts and sends; here they become the record the schema
describes, and its encoding with the project's codec is what checks it against the
schema. Nothing personal or secret goes in: till ids, the software a till names, the codes
and short words of its status (card numbers refused at the door), device names, ports and
what a device says it is; never a token, a cashier, a customer or a weight.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tillstream.core.codec import AvroCodec
from tillstream_edge.devices.link import DeviceStatus
from tillstream_edge.estate.db import AppliedRow
from tillstream_edge.estate.tills import TillState
from tillstream_edge.live_settings import Tunables
from tillstream_edge.outbox import Backlog

REPORT = "estate_report"
_KINDS = {"scanner": "SCANNER", "mt-sics": "SCALE", "toledo-8217": "SCALE"}


@dataclass(frozen=True, slots=True)
class EdgeFacts:
    """What the edge knows of itself at one moment."""

    version: str
    timezone: str
    started_at: float
    clock_skew_ms: int | None
    backlog: Backlog | None
    """The outbox as last counted (None: not counted yet)."""
    masterdata_caught_up_at: float | None
    disk_free_bytes: int
    last_publish_at: float | None
    kafka_connected: bool
    live: Tunables


def build_report(
    *,
    store_id: str,
    edge_id: str,
    reason: str,
    heartbeat_s: int,
    sent_at: datetime,
    edge: EdgeFacts,
    devices: dict[str, DeviceStatus],
    tills: list[TillState],
    applied: list[AppliedRow],
) -> dict[str, Any]:
    """The ``EstateReport`` record."""
    return {
        "report_id": str(uuid.uuid4()),
        "store_id": store_id,
        "edge_id": edge_id,
        "sent_at": sent_at,
        "reason": reason,
        "heartbeat_seconds": heartbeat_s,
        "edge": edge_state(edge),
        "devices": [device_state(status) for _, status in sorted(devices.items())],
        "tills": [till_state(till) for till in tills],
        "applied": [
            {
                "target": row.target,
                "version": row.version,
                "applied": row.applied,
                "error": row.error,
                "at": _at(row.at),
            }
            for row in sorted(applied, key=lambda r: r.target)
        ],
    }


def encode_report(codec: AvroCodec, record: dict[str, Any]) -> bytes:
    """The report in the wire format; raises CodecError for a record the schema refuses."""
    return codec.encode(REPORT, record)


def edge_state(edge: EdgeFacts) -> dict[str, Any]:
    backlog = edge.backlog
    return {
        "version": edge.version,
        "timezone": edge.timezone,
        "started_at": _at(edge.started_at),
        "clock_skew_ms": edge.clock_skew_ms,
        "outbox_depth": backlog.depth if backlog else 0,
        "outbox_unsent_bytes": backlog.unsent_bytes if backlog else 0,
        "oldest_unsent_at": _at(backlog.oldest_accepted_at) if backlog else None,
        "quarantine_depth": backlog.quarantined if backlog else 0,
        "set_aside_open": backlog.set_aside if backlog else 0,
        "masterdata_caught_up_at": _at(edge.masterdata_caught_up_at),
        "disk_free_bytes": edge.disk_free_bytes,
        "last_publish_at": _at(edge.last_publish_at),
        "kafka_connected": edge.kafka_connected,
        "log_level": edge.live.log_level,
        "max_event_age_seconds": int(edge.live.max_event_age.total_seconds()),
        "max_future_seconds": int(edge.live.max_future.total_seconds()),
    }


def device_state(status: DeviceStatus) -> dict[str, Any]:
    identity = status.identity or {}
    scale = _KINDS.get(status.protocol) == "SCALE"
    return {
        "device_id": status.name,
        "kind": _KINDS.get(status.protocol, "OTHER"),
        "protocol": status.protocol,
        "port": status.port,
        "connected": status.up,
        "connected_since": status.connected_since,
        "disconnected_since": None if status.up else status.disconnected_since,
        "last_frame_at": status.last_frame_at,
        "frames": status.frames,
        "communication_errors": status.communication_errors,
        "model": identity.get("model"),
        "firmware": identity.get("firmware"),
        "serial_number": identity.get("serial_number"),
        "scale_zero": status.zero if scale else None,
        "scale_stable": status.stable if scale else None,
        "scale_status": status.reading if scale else None,
    }


def till_state(till: TillState) -> dict[str, Any]:
    return {
        "till_id": till.till_id,
        "lifecycle": till.lifecycle,
        "last_seen_at": _at(till.last_seen_at),
        "last_receipt": till.last_receipt,
        "software": till.software,
        "refused_while_suspended": till.refused,
        "status_at": _at(till.status_at),
        "conditions": [
            {"code": c.code, "state": c.state, "detail": c.detail, "since": _at(c.since)}
            for c in till.conditions
        ],
    }


def _at(unix: float | None) -> datetime | None:
    return None if unix is None else datetime.fromtimestamp(unix, UTC)
