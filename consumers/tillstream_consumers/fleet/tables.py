"""The fleet service's tables (portable SQL: SQLite and PostgreSQL).

The current state is each store's latest report, whole (``fleet_edges``, ``fleet_tills``,
``fleet_devices``, ``fleet_applied``: what the edge said last, nothing older), and head
office's desired state as the topic holds it (``fleet_desired``). ``fleet_history`` keeps one
row per report and ``fleet_flags`` every flag raised, open or resolved, for
``TILLSTREAM_FLEET_HISTORY_DAYS``; ``fleet_due`` when time alone may change a store's flags
(its edge due to report, a drift's grace ending, the store opening). Times are fixed-width UTC text
(``2026-03-02T09:00:00.000000Z``).
"""

from __future__ import annotations

from tillstream_consumers.runtime.db import Migration

COMPONENT = "fleet"
"""Migration component (and consumer group) of the service."""

EDGE_COLUMNS: tuple[str, ...] = (
    "store_id",
    "edge_id",
    "timezone",
    "version",
    "started_at",
    "report_id",
    "reason",
    "heartbeat_seconds",
    "sent_at",
    "appended_at",
    "skew_ms",
    "edge_skew_ms",
    "outbox_depth",
    "outbox_unsent_bytes",
    "oldest_unsent_at",
    "quarantine_depth",
    "set_aside_open",
    "masterdata_caught_up_at",
    "disk_free_bytes",
    "last_publish_at",
    "kafka_connected",
    "log_level",
    "max_event_age_seconds",
    "max_future_seconds",
    "depth_rises",
    "first_seen_at",
)
TILL_COLUMNS: tuple[str, ...] = (
    "store_id",
    "till_id",
    "lifecycle",
    "last_seen_at",
    "last_receipt",
    "software",
    "refused_while_suspended",
    "refused_rose_at",
    "status_at",
    "conditions",
)
DEVICE_COLUMNS: tuple[str, ...] = (
    "store_id",
    "device_id",
    "kind",
    "protocol",
    "port",
    "connected",
    "connected_since",
    "disconnected_since",
    "last_frame_at",
    "frames",
    "communication_errors",
    "model",
    "firmware",
    "serial_number",
    "scale_zero",
    "scale_stable",
    "scale_status",
)
APPLIED_COLUMNS: tuple[str, ...] = ("store_id", "target", "version", "applied", "error", "at")
DESIRED_COLUMNS: tuple[str, ...] = (
    "store_id",
    "target",
    "version",
    "payload",
    "published_at",
    "published_by",
    "change_id",
    "cleared_at",
)
HISTORY_COLUMNS: tuple[str, ...] = (
    "report_id",
    "store_id",
    "edge_id",
    "appended_at",
    "sent_at",
    "reason",
    "skew_ms",
    "outbox_depth",
    "oldest_unsent_at",
    "kafka_connected",
    "devices_down",
    "tills",
)
FLAG_COLUMNS: tuple[str, ...] = (
    "flag_id",
    "store_id",
    "kind",
    "subject",
    "message",
    "is_open",
    "first_seen_at",
    "updated_at",
    "resolved_at",
)

MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE IF NOT EXISTS fleet_edges (
        store_id                TEXT PRIMARY KEY,
        edge_id                 TEXT NOT NULL,
        timezone                TEXT NOT NULL,
        version                 TEXT NOT NULL,
        started_at              TEXT NOT NULL,
        report_id               TEXT NOT NULL,
        reason                  TEXT NOT NULL,
        heartbeat_seconds       BIGINT NOT NULL,
        sent_at                 TEXT NOT NULL,
        appended_at             TEXT NOT NULL,
        skew_ms                 BIGINT NOT NULL,
        edge_skew_ms            BIGINT,
        outbox_depth            BIGINT NOT NULL,
        outbox_unsent_bytes     BIGINT NOT NULL,
        oldest_unsent_at        TEXT,
        quarantine_depth        BIGINT NOT NULL,
        set_aside_open          BIGINT NOT NULL,
        masterdata_caught_up_at TEXT,
        disk_free_bytes         BIGINT NOT NULL,
        last_publish_at         TEXT,
        kafka_connected         INTEGER NOT NULL,
        log_level               TEXT NOT NULL,
        max_event_age_seconds   BIGINT NOT NULL,
        max_future_seconds      BIGINT NOT NULL,
        depth_rises             BIGINT NOT NULL,
        first_seen_at           TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS fleet_due (
        store_id TEXT PRIMARY KEY,
        due_at   TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS fleet_due_at ON fleet_due (due_at);
    CREATE TABLE IF NOT EXISTS fleet_tills (
        store_id                TEXT NOT NULL,
        till_id                 TEXT NOT NULL,
        lifecycle               TEXT NOT NULL,
        last_seen_at            TEXT,
        last_receipt            TEXT,
        software                TEXT,
        refused_while_suspended BIGINT NOT NULL,
        refused_rose_at         TEXT,
        status_at               TEXT,
        conditions              TEXT NOT NULL,
        PRIMARY KEY (store_id, till_id)
    );
    CREATE TABLE IF NOT EXISTS fleet_devices (
        store_id             TEXT NOT NULL,
        device_id            TEXT NOT NULL,
        kind                 TEXT NOT NULL,
        protocol             TEXT NOT NULL,
        port                 TEXT NOT NULL,
        connected            INTEGER NOT NULL,
        connected_since      TEXT,
        disconnected_since   TEXT,
        last_frame_at        TEXT,
        frames               BIGINT NOT NULL,
        communication_errors BIGINT NOT NULL,
        model                TEXT,
        firmware             TEXT,
        serial_number        TEXT,
        scale_zero           INTEGER,
        scale_stable         INTEGER,
        scale_status         TEXT,
        PRIMARY KEY (store_id, device_id)
    );
    CREATE TABLE IF NOT EXISTS fleet_applied (
        store_id TEXT NOT NULL,
        target   TEXT NOT NULL,
        version  BIGINT NOT NULL,
        applied  INTEGER NOT NULL,
        error    TEXT,
        at       TEXT NOT NULL,
        PRIMARY KEY (store_id, target)
    );
    CREATE TABLE IF NOT EXISTS fleet_desired (
        store_id     TEXT NOT NULL,
        target       TEXT NOT NULL,
        version      BIGINT NOT NULL,
        payload      TEXT,
        published_at TEXT NOT NULL,
        published_by TEXT NOT NULL,
        change_id    TEXT NOT NULL,
        cleared_at   TEXT,
        PRIMARY KEY (store_id, target)
    );
    CREATE TABLE IF NOT EXISTS fleet_history (
        report_id        TEXT PRIMARY KEY,
        store_id         TEXT NOT NULL,
        edge_id          TEXT NOT NULL,
        appended_at      TEXT NOT NULL,
        sent_at          TEXT NOT NULL,
        reason           TEXT NOT NULL,
        skew_ms          BIGINT NOT NULL,
        outbox_depth     BIGINT NOT NULL,
        oldest_unsent_at TEXT,
        kafka_connected  INTEGER NOT NULL,
        devices_down     BIGINT NOT NULL,
        tills            BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS fleet_history_store ON fleet_history (store_id, appended_at);
    CREATE INDEX IF NOT EXISTS fleet_history_time ON fleet_history (appended_at);
    CREATE TABLE IF NOT EXISTS fleet_flags (
        flag_id       TEXT PRIMARY KEY,
        store_id      TEXT NOT NULL,
        kind          TEXT NOT NULL,
        subject       TEXT NOT NULL,
        message       TEXT NOT NULL,
        is_open       INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        resolved_at   TEXT
    );
    CREATE INDEX IF NOT EXISTS fleet_flags_store ON fleet_flags (store_id, is_open);
    CREATE INDEX IF NOT EXISTS fleet_flags_resolved ON fleet_flags (resolved_at)
    """,
)
