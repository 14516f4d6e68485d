"""Prometheus metrics of every consumer service, labelled by consumer (group) name."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS = Counter(
    "tillstream_consumer_records_total",
    "Records handled, by outcome: applied, duplicate (event id seen before), dead_lettered.",
    ["consumer", "topic", "outcome"],
)
FAILURES = Counter(
    "tillstream_consumer_failures_total",
    "Failed attempts, by kind: transient (retried) or permanent (dead-lettered).",
    ["consumer", "kind"],
)
DLQ = Counter(
    "tillstream_consumer_dlq_records_total",
    "Records sent to the consumer's dead-letter topic, by reason.",
    ["consumer", "reason"],
)
BATCH_SECONDS = Histogram(
    "tillstream_consumer_batch_duration_seconds",
    "Time to apply one batch and commit it.",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BATCH_SIZE = Histogram(
    "tillstream_consumer_batch_records",
    "Records per applied batch.",
    ["consumer"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2500),
)
LAG = Gauge(
    "tillstream_consumer_lag",
    "Records in the partition not yet processed by this consumer (high watermark - position).",
    ["consumer", "topic", "partition"],
)
LAST_EVENT_TIME = Gauge(
    "tillstream_consumer_last_event_timestamp_seconds",
    "Kafka timestamp of the last record processed.",
    ["consumer"],
)
EVENT_LATENCY = Histogram(
    "tillstream_consumer_event_latency_seconds",
    "From the record's Kafka timestamp to its effects committed (end-to-end latency).",
    ["consumer"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
ASSIGNED = Gauge(
    "tillstream_consumer_assigned_partitions", "Partitions assigned to this instance.", ["consumer"]
)
UP = Gauge(
    "tillstream_consumer_ready",
    "1 while the consumer is in its group and its database answers.",
    ["consumer"],
)

# Records on the wrong partition, sends the broker refused, read-API auth.
MISROUTED = Counter(
    "tillstream_consumer_misrouted_records_total",
    "Records read from another partition than their key's murmur2 hash gives: a producer "
    "with another partitioner (librdkafka's default CRC32) breaks per-store order.",
    ["consumer", "topic"],
)
SENDS_REFUSED = Counter(
    "tillstream_consumer_sends_refused_total",
    "Records the broker refused from this consumer, by what (published: set aside in "
    "runtime_outbox_refused or kept queued; dead_letter: sent without its value) and "
    "reason (too_large, not_authorized).",
    ["consumer", "what", "reason"],
)
API_REJECTED = Counter(
    "tillstream_consumer_api_rejected_total",
    "Read-API requests refused for a missing or wrong bearer token.",
    ["consumer"],
)
