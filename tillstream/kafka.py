"""Kafka client factory: every producer, consumer and admin client is built here from settings.

Security (TLS, mTLS, SASL/SCRAM) and durability defaults live in one place, so no service
can forget them.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from tillstream.settings import Settings
from tillstream.topics import ALL_TOPICS, TopicSpec


def connection_options(settings: Settings) -> dict[str, Any]:
    """aiokafka keyword arguments for bootstrap, TLS and SASL."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
        "client_id": settings.kafka_client_id,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        assert settings.kafka_sasl_password is not None  # checked by Settings
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password.get_secret_value(),
        )
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS trusting ``kafka_ssl_cafile`` (or the system CAs), with a client cert for mTLS."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        certfile=str(settings.kafka_ssl_certfile) if settings.kafka_ssl_certfile else None,
        keyfile=str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None,
    )
    return context


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer waiting for all in-sync replicas: no loss, no duplicates on retry."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "compression_type": "lz4",  # store uplinks are thin; lz4 costs little CPU
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: Settings, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that commits nothing by itself: callers own their offsets."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def make_admin(settings: Settings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(**connection_options(settings))


async def create_topics(
    settings: Settings, topics: tuple[TopicSpec, ...] = ALL_TOPICS
) -> dict[str, str]:
    """Create tillstream's topics; existing ones are left alone. Returns topic -> outcome."""
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        outcome = {t.name: "exists" for t in topics if t.name in existing}
        new = [
            NewTopic(
                t.name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={
                    **t.configs,
                    "min.insync.replicas": str(settings.topic_min_insync_replicas),
                },
            )
            for t in topics
            if t.name not in existing
        ]
        if new:
            # Another service may create them at the same moment: that is fine.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            outcome.update({t.name: "created" for t in new})
        return outcome
    finally:
        await admin.close()
