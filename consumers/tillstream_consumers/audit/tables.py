"""The sales audit's tables (portable SQL: SQLite and PostgreSQL).

Facts (``audit_transactions``, ``audit_controls``, ``audit_control_amounts``,
``audit_payments``) are what the tills reported, one row per event, never changed. What the
audit concluded (``audit_days``, ``audit_flags``) is recomputed from the facts of a store-day
whenever a batch touches it, so it does not depend on the order the events arrived in.
``audit_acks`` is the auditors' trail; ``audit_dirty`` the store-days whose facts changed
and wait to be audited again (a batch that touches many store-days leaves them to
``SalesAudit.settle``); ``audit_read`` how far each store's events were read. Money
is integer ten-thousandths (``MONEY_SCALE``); days are ISO dates; times are fixed-width UTC
text (``2026-03-02T09:00:00.000000Z``).
"""

from __future__ import annotations

from tillstream_consumers.runtime.db import Migration

COMPONENT = "sales-audit"
"""Migration component (and consumer group) of the service."""

MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE IF NOT EXISTS audit_transactions (
        event_id           TEXT PRIMARY KEY,
        store_id           TEXT NOT NULL,
        business_day       TEXT NOT NULL,
        terminal_id        TEXT NOT NULL,
        number             TEXT NOT NULL,
        cashier_id         TEXT,
        occurred_at        TEXT NOT NULL,
        utc_offset_minutes INTEGER NOT NULL,
        currency           TEXT NOT NULL,
        net_amount         BIGINT NOT NULL,
        content            TEXT NOT NULL,
        problems           TEXT,
        received_at        TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_transactions_day
        ON audit_transactions (store_id, business_day);
    CREATE TABLE IF NOT EXISTS audit_controls (
        event_id           TEXT PRIMARY KEY,
        store_id           TEXT NOT NULL,
        business_day       TEXT NOT NULL,
        terminal_id        TEXT NOT NULL,
        kind               TEXT NOT NULL,
        number             TEXT,
        operator_id        TEXT,
        occurred_at        TEXT NOT NULL,
        utc_offset_minutes INTEGER NOT NULL,
        currency           TEXT,
        reason             TEXT,
        content            TEXT NOT NULL,
        received_at        TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_controls_day ON audit_controls (store_id, business_day);
    CREATE TABLE IF NOT EXISTS audit_control_amounts (
        event_id TEXT NOT NULL,
        tender   TEXT NOT NULL,
        amount   BIGINT NOT NULL,
        PRIMARY KEY (event_id, tender)
    );
    CREATE TABLE IF NOT EXISTS audit_payments (
        event_id      TEXT PRIMARY KEY,
        sale_event_id TEXT NOT NULL,
        store_id      TEXT NOT NULL,
        terminal_id   TEXT NOT NULL,
        method        TEXT NOT NULL,
        status        TEXT NOT NULL,
        amount        BIGINT NOT NULL,
        occurred_at   TEXT NOT NULL,
        received_at   TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_payments_sale ON audit_payments (sale_event_id);
    CREATE TABLE IF NOT EXISTS audit_days (
        store_id           TEXT NOT NULL,
        business_day       TEXT NOT NULL,
        utc_offset_minutes INTEGER NOT NULL,
        events             BIGINT NOT NULL,
        tills              INTEGER NOT NULL,
        tills_closed       INTEGER NOT NULL,
        closed_at          TEXT,
        first_at           TEXT,
        last_at            TEXT,
        updated_at         TEXT NOT NULL,
        PRIMARY KEY (store_id, business_day)
    );
    CREATE INDEX IF NOT EXISTS audit_days_day ON audit_days (business_day);
    CREATE INDEX IF NOT EXISTS audit_days_window ON audit_days (store_id, first_at);
    CREATE INDEX IF NOT EXISTS audit_payments_time ON audit_payments (store_id, occurred_at);
    CREATE TABLE IF NOT EXISTS audit_flags (
        flag_id       TEXT PRIMARY KEY,
        store_id      TEXT NOT NULL,
        business_day  TEXT NOT NULL,
        kind          TEXT NOT NULL,
        terminal_id   TEXT,
        subject       TEXT NOT NULL,
        message       TEXT NOT NULL,
        amount        BIGINT,
        operator_id   TEXT,
        events        TEXT NOT NULL,
        is_open       INTEGER NOT NULL,
        first_seen_at TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        resolved_at   TEXT
    );
    CREATE INDEX IF NOT EXISTS audit_flags_day ON audit_flags (store_id, business_day);
    CREATE INDEX IF NOT EXISTS audit_flags_by_day ON audit_flags (business_day, kind);
    CREATE INDEX IF NOT EXISTS audit_flags_open ON audit_flags (is_open, kind);
    CREATE TABLE IF NOT EXISTS audit_acks (
        ack_id   TEXT PRIMARY KEY,
        flag_id  TEXT NOT NULL,
        note     TEXT NOT NULL,
        acked_by TEXT NOT NULL,
        acked_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS audit_acks_flag ON audit_acks (flag_id);
    CREATE TABLE IF NOT EXISTS audit_dirty (
        store_id     TEXT NOT NULL,
        business_day TEXT NOT NULL,
        token        TEXT NOT NULL,
        new_events   BIGINT NOT NULL,
        PRIMARY KEY (store_id, business_day)
    )
    """,
    # When each fact was published (its Kafka timestamp), and how far each store's events
    # of each type were read: a check waits for what the audit has not read *yet*
    # (``reading.py``). And what each store-day's last audit read (``pacing.py``).
    """
    ALTER TABLE audit_transactions ADD COLUMN published_ms BIGINT;
    ALTER TABLE audit_controls ADD COLUMN published_ms BIGINT;
    ALTER TABLE audit_payments ADD COLUMN published_ms BIGINT;
    ALTER TABLE audit_days ADD COLUMN facts BIGINT;
    ALTER TABLE audit_days ADD COLUMN waiting_since TEXT;
    CREATE TABLE IF NOT EXISTS audit_read (
        store_id     TEXT NOT NULL,
        event        TEXT NOT NULL,
        published_ms BIGINT NOT NULL,
        PRIMARY KEY (store_id, event)
    )
    """,
    # Post-voids: one fact per post-void, as it arrived (``voids.py``); a void's sale, by
    # its event id, whichever came first.
    """
    CREATE TABLE IF NOT EXISTS audit_voids (
        event_id           TEXT PRIMARY KEY,
        voided_event_id    TEXT NOT NULL,
        store_id           TEXT NOT NULL,
        business_day       TEXT NOT NULL,
        terminal_id        TEXT NOT NULL,
        number             TEXT,
        voided_terminal_id TEXT NOT NULL,
        voided_number      TEXT,
        cashier_id         TEXT,
        occurred_at        TEXT NOT NULL,
        utc_offset_minutes INTEGER NOT NULL,
        currency           TEXT,
        amount             BIGINT,
        reason             TEXT,
        content            TEXT NOT NULL,
        received_at        TEXT NOT NULL,
        published_ms       BIGINT
    );
    CREATE INDEX IF NOT EXISTS audit_voids_day ON audit_voids (store_id, business_day);
    CREATE INDEX IF NOT EXISTS audit_voids_sale ON audit_voids (voided_event_id)
    """,
    # Acknowledgements of record (docs/audit.md, "Sign-in, roles and tokens"): who made each
    # (the signed-in user or the token, never a typed name) and whether a lead reopened it;
    # the key of flag ids (``flags.py``), made once per database.
    """
    ALTER TABLE audit_acks ADD COLUMN acked_by_kind TEXT;
    ALTER TABLE audit_acks ADD COLUMN acked_by_subject TEXT;
    ALTER TABLE audit_acks ADD COLUMN reopened_at TEXT;
    ALTER TABLE audit_acks ADD COLUMN reopened_by TEXT;
    ALTER TABLE audit_acks ADD COLUMN reopen_note TEXT;
    CREATE TABLE IF NOT EXISTS audit_keys (
        name   TEXT PRIMARY KEY,
        secret TEXT NOT NULL
    )
    """,
    # Money at stake (``at_stake.py``): how many numbers a receipt gap leaves out, and the
    # store-day's currency, so a listing of store-days sums its open flags without the facts.
    """
    ALTER TABLE audit_flags ADD COLUMN missing INTEGER;
    ALTER TABLE audit_days ADD COLUMN currency TEXT
    """,
)
