"""A consumer the broker refuses (ACLs in force, a real secured broker): events it may not
publish stay queued while it goes on consuming, and go out once it may; dead letters it may
not write stop it with an error that names the topic, skipping nothing."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from aiokafka.admin import NewTopic
from prometheus_client import REGISTRY

from tests.consumer_support import publish, running, scalar, wait_until
from tests.runtime_consumers import Effects, Relay
from tests.security_support import ADMIN, SecureKafka, secure_kafka
from tillstream.core import acls
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import make_admin, make_producer
from tillstream.core.settings import Settings
from tillstream.core.topics import SALES, store_key
from tillstream.dev.samples import sample_sale
from tillstream_consumers.runtime import relay
from tillstream_consumers.runtime.deadletter import topic_for
from tillstream_consumers.runtime.runner import ConsumerService, RunnerConfig
from tillstream_consumers.runtime.sender import Refused


@pytest.fixture(scope="module")
def secure(request: pytest.FixtureRequest) -> SecureKafka:
    return secure_kafka(request)


async def _grant(admin: Settings, principal: str, topics: dict[str, list[acls.Operation]]) -> None:
    bindings = [
        acls.AclBinding(f"User:{principal}", acls.ResourceType.TOPIC, topic, operation)
        for topic, operations in topics.items()
        for operation in operations
    ]
    bindings.append(
        acls.AclBinding(
            f"User:{principal}", acls.ResourceType.GROUP, principal, acls.Operation.READ
        )
    )
    await acls.apply(admin, bindings)


async def _create(admin: Settings, *topics: str) -> None:
    client = make_admin(admin)
    await client.start()
    try:
        await client.create_topics([NewTopic(t, 3, 1) for t in topics])
    finally:
        await client.close()


async def test_events_a_consumer_may_not_publish_wait_queued_while_it_consumes(
    secure: SecureKafka, codec: AvroCodec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(relay, "REFUSED_RETRY_SECONDS", 1.0)
    admin = secure.sasl_settings(ADMIN)
    principal = f"relay-{uuid.uuid4().hex[:8]}"
    relay_topic = f"tillstream.test.relay-{principal}"
    dlq = topic_for(principal).name
    await _create(admin, relay_topic, dlq)
    write = [acls.Operation.WRITE, acls.Operation.CREATE]
    await _grant(admin, principal, {SALES.name: [acls.Operation.READ], dlq: write})
    store = f"A{uuid.uuid4().hex[:8]}"
    await publish(admin, codec, [("sale", sample_sale(store, customer=None)) for _ in range(3)])

    cfg = secure.mtls_settings(principal)
    consumer = type("Refused", (Relay,), {"name": principal, "relay_topic": relay_topic})
    url = f"sqlite:///{tmp_path / 'refused.db'}"
    pending = "SELECT COUNT(*) FROM runtime_outbox"
    async with running(consumer(cfg), cfg, url) as service:
        await wait_until(
            lambda: scalar(url, "SELECT COUNT(*) FROM effects WHERE store_id = ?", (store,)) == 3,
            what="the sales applied although their relay is refused",
        )
        await wait_until(
            lambda: (
                (
                    REGISTRY.get_sample_value(
                        "tillstream_consumer_sends_refused_total",
                        {"consumer": principal, "what": "published", "reason": "not_authorized"},
                    )
                    or 0
                )
                > 0
            ),
            what="the refusal counted",
        )
        assert (scalar(url, pending) or 0) >= 3  # kept, on disk
        assert service.ready  # consuming goes on
        await _grant(admin, principal, {relay_topic: write})  # the operator fixes the ACL
        await wait_until(lambda: scalar(url, pending) == 0, what="the queued events sent")


async def test_dead_letters_a_consumer_may_not_write_stop_it_naming_the_topic(
    secure: SecureKafka, tmp_path: Path
) -> None:
    admin = secure.sasl_settings(ADMIN)
    principal = f"nodlq-{uuid.uuid4().hex[:8]}"
    dlq = topic_for(principal).name
    other = f"tillstream.test.other-{principal}"
    await _create(admin, dlq, other)
    # May read, create its topic and write another one (as the ERP its reorder suggestions),
    # but not write its dead letters.
    await _grant(
        admin,
        principal,
        {
            SALES.name: [acls.Operation.READ],
            dlq: [acls.Operation.CREATE],
            other: [acls.Operation.WRITE],
        },
    )
    producer = make_producer(admin)
    await producer.start()
    try:
        garbage = await producer.send_and_wait(
            SALES.name, b"\x00not avro", key=store_key("A-GARBAGE")
        )
    finally:
        await producer.stop()

    cfg = secure.mtls_settings(principal)
    url = f"sqlite:///{tmp_path / 'nodlq.db'}"
    consumer = type("NoDlq", (Effects,), {"name": principal})(cfg)
    service = ConsumerService(consumer, cfg, RunnerConfig(db_url=url))
    with pytest.raises(Refused, match=f"refuses dead letters on {dlq}"):
        await asyncio.wait_for(service.run(), timeout=90)
    # Nothing was skipped: the stored offset has not passed the undecodable record.
    stored = scalar(
        url,
        "SELECT next_offset FROM runtime_offsets WHERE topic = ? AND part = ?",
        (SALES.name, garbage.partition),
    )
    assert stored is None or stored <= garbage.offset


async def test_a_consumer_that_may_write_nothing_stops_at_start_naming_its_dead_letter_topic(
    secure: SecureKafka, tmp_path: Path
) -> None:
    admin = secure.sasl_settings(ADMIN)
    principal = f"nowrite-{uuid.uuid4().hex[:8]}"
    dlq = topic_for(principal).name
    await _create(admin, dlq)
    await _grant(
        admin, principal, {SALES.name: [acls.Operation.READ], dlq: [acls.Operation.CREATE]}
    )
    cfg = secure.mtls_settings(principal)
    consumer = type("NoWrite", (Effects,), {"name": principal})(cfg)
    service = ConsumerService(consumer, cfg, RunnerConfig(db_url=f"sqlite:///{tmp_path / 'x.db'}"))
    with pytest.raises(Refused, match=f"grant it WRITE on {dlq}"):
        await asyncio.wait_for(service.run(), timeout=90)
