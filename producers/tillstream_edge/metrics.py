"""Prometheus metrics of the edge service (one place, so dashboards have one list to read)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_ACCEPTED = Counter(
    "tillstream_edge_events_accepted_total",
    "Events made durable in the outbox, by channel and event type.",
    ["channel", "event_type"],
)
EVENTS_DUPLICATE = Counter(
    "tillstream_edge_events_duplicate_total",
    "Resubmitted events (same event id) answered without storing them again.",
    ["channel"],
)
EVENTS_REJECTED = Counter(
    "tillstream_edge_events_rejected_total",
    "Events refused at ingest, by channel and reason.",
    ["channel", "reason"],
)
POSLOG_FILES = Counter(
    "tillstream_edge_poslog_files_total",
    "POSLog documents processed, by outcome (converted, failed).",
    ["outcome"],
)
POSLOG_FUTURE_MTIME = Counter(
    "tillstream_edge_poslog_future_mtime_total",
    "Drop-folder files found modified in the future by the edge's clock (a writer's clock "
    "ahead), each counted once; taken when their size and time stop changing.",
)
POSLOG_SKIPPED = Counter(
    "tillstream_edge_poslog_transactions_skipped_total",
    "POSLog transactions not converted (sign-on, no-sale, tender control, suspended...), "
    "by kind; counted once their document is accepted.",
    ["kind"],
)
POSLOG_SET_ASIDE = Counter(
    "tillstream_edge_poslog_transactions_set_aside_total",
    "POSLog transactions set aside (kept at the edge to be re-run after a fix), by cause: "
    "unreadable, unknown (no body read), rule, card_number, too_large, invalid, conflict...",
    ["cause"],
)
POSLOG_RETRIED = Counter(
    "tillstream_edge_poslog_set_aside_published_total",
    "Set-aside POSLog transactions published by a retry after a fix.",
)
SET_ASIDE_OPEN = Gauge(
    "tillstream_edge_poslog_set_aside_open",
    "POSLog transactions set aside and not resolved yet ('tillstream edge set-aside').",
)
OUTBOX_DEPTH = Gauge(
    "tillstream_edge_outbox_depth", "Events accepted but not yet acknowledged by Kafka."
)
OUTBOX_OLDEST_AGE = Gauge(
    "tillstream_edge_outbox_oldest_unsent_age_seconds",
    "Age of the oldest event not yet acknowledged by Kafka (0 when empty).",
)
OUTBOX_BYTES = Gauge("tillstream_edge_outbox_bytes", "Size of the outbox database on disk.")
OUTBOX_LIMIT_BYTES = Gauge("tillstream_edge_outbox_limit_bytes", "Configured outbox size limit.")
PUBLISHED = Counter(
    "tillstream_edge_events_published_total", "Events acknowledged by Kafka, by topic.", ["topic"]
)
PUBLISH_ERRORS = Counter(
    "tillstream_edge_publish_errors_total",
    "Failed publish attempts (retried), by error.",
    ["error"],
)
PUBLISH_LATENCY = Histogram(
    "tillstream_edge_publish_latency_seconds",
    "From accepted in the outbox to acknowledged by Kafka.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
KAFKA_UP = Gauge("tillstream_edge_kafka_up", "1 while the last publish attempt reached Kafka.")
LAST_EVENT_TIME = Gauge(
    "tillstream_edge_last_event_timestamp_seconds",
    "Unix time of the last event accepted from any till or device.",
)

# Nothing may block a store's stream: quarantine and the unsent-bytes limit.
EVENTS_QUARANTINED = Counter(
    "tillstream_edge_events_quarantined_total",
    "Events Kafka refused for good (too large, invalid, not authorized), moved out of the "
    "queue into the outbox's quarantine, by topic and error.",
    ["topic", "error"],
)
QUARANTINE_DEPTH = Gauge(
    "tillstream_edge_quarantine_depth",
    "Events in quarantine now (see 'tillstream edge quarantine show').",
)
OUTBOX_UNSENT_BYTES = Gauge(
    "tillstream_edge_outbox_unsent_bytes",
    "Bytes of events not yet sent (quarantined included): what the outbox limit counts.",
)

# Master data (issue 15): the store's copy of head office's items and prices.
MASTERDATA_NEWEST_AGE = Gauge(
    "tillstream_edge_masterdata_newest_record_age_seconds",
    "Age of the newest record applied to the store's copy, by topic (large while head "
    "office publishes nothing: see seconds_since_caught_up for staleness).",
    ["topic"],
)
MASTERDATA_BEHIND = Gauge(
    "tillstream_edge_masterdata_records_behind",
    "Records on the topic not yet in the store's copy (end offsets - positions), by topic; "
    "last known value while Kafka does not answer.",
    ["topic"],
)
MASTERDATA_SINCE_CAUGHT_UP = Gauge(
    "tillstream_edge_masterdata_seconds_since_caught_up",
    "Seconds since the store's copy last held everything on the master-data topics (a new "
    "copy: since it was created).",
)
MASTERDATA_ITEMS = Gauge("tillstream_edge_masterdata_items", "Items held in the store's copy.")
MASTERDATA_PRICES = Gauge(
    "tillstream_edge_masterdata_prices",
    "Prices held in the store's copy (the chain's and this store's).",
)
MASTERDATA_RECORDS_READ = Counter(
    "tillstream_edge_masterdata_records_read_total",
    "Records read from the master-data topics into the store's copy, by topic.",
    ["topic"],
)
MASTERDATA_RECORDS_SKIPPED = Counter(
    "tillstream_edge_masterdata_records_skipped_total",
    "Master-data records that could not be decoded or applied (skipped and logged), by topic.",
    ["topic"],
)
MASTERDATA_OTHER_CURRENCY = Counter(
    "tillstream_edge_masterdata_prices_other_currency_total",
    "Prices of the chain or this store in another currency than the store's "
    "(TILLSTREAM_STORE_CURRENCY): not used, each deleting what the copy held under its key.",
)
MASTERDATA_REBUILDS = Counter(
    "tillstream_edge_masterdata_rebuilds_total",
    "Rebuilds of the store's copy from the beginning of the topics (offline longer than the "
    "topics keep deletions).",
)

# The store estate (issue 24): reports to head office, and its desired state applied.
ESTATE_REPORTS = Counter(
    "tillstream_edge_estate_reports_total",
    "Estate reports Kafka acknowledged, by reason (HEARTBEAT, CHANGE, START, STOP).",
    ["reason"],
)
ESTATE_REPORT_FAILURES = Counter(
    "tillstream_edge_estate_report_failures_total",
    "Estate reports that could not be sent (Kafka away, refused): the latest is sent again "
    "once Kafka answers; none is kept beside it.",
)
ESTATE_REPORT_BYTES = Gauge(
    "tillstream_edge_estate_report_bytes",
    "Size of the last estate report, encoded (Avro), before compression.",
)
CLOCK_SKEW = Gauge(
    "tillstream_edge_clock_skew_seconds",
    "The edge's clock minus the Kafka broker's, from the append time of its last estate "
    "report (includes the upload's latency, milliseconds).",
)
DESIRED_APPLIED = Counter(
    "tillstream_edge_desired_applied_total",
    "Head office's desired states put in force or refused, by target kind (edge, till, "
    "device) and outcome (applied, refused).",
    ["target", "outcome"],
)
