"""tillstream's ACL model: the pure function, and ``tillstream acls`` on a broker that
enforces ACLs, checked by what each principal can and cannot then do."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from tests.conftest import external_kafka
from tests.security_support import ADMIN, SecureKafka, environment, secure_kafka
from tillstream.cli.acls import consumer_access
from tillstream.core import acls
from tillstream.core.acls import AclBinding, ConsumerAccess, Operation, ResourceType
from tillstream.core.codec import AvroCodec
from tillstream.core.kafka import KafkaAccessError, make_consumer, make_producer
from tillstream.core.registry import FileRegistry
from tillstream.core.schemas import SchemaSet
from tillstream.core.settings import Settings
from tillstream.core.topics import (
    ESTATE_DESIRED,
    ESTATE_REPORTS,
    ITEMS,
    MASTER_DATA_TOPICS,
    PAYMENTS,
    PRICES,
    REORDER_SUGGESTIONS,
    SALE_VOIDS,
    SALES,
    STOCK_MOVEMENTS,
    STORE_TOPICS,
    TILL_EVENTS,
    item_key,
)
from tillstream.dev.processes import clean_environment
from tillstream.masterdata import items_csv
from tillstream.masterdata.publish import ITEM_KIND, publish_file
from tillstream.masterdata.topic_state import read_topic
from tillstream_consumers.runtime.loader import BUILTIN

CLI = [sys.executable, "-m", "tillstream"]
ROOT = Path(__file__).resolve().parent.parent
READER = "acl-reader"
"""The group of tests.runtime_consumers:Effects here (it reads tillstream.sales)."""


# -- the model --------------------------------------------------------------------------


def test_a_store_may_only_write_the_store_topics_and_read_master_data() -> None:
    bindings = acls.acl_bindings(["S001"], [])
    assert {(b.resource_type, b.resource_name, b.operation) for b in bindings} == {
        *((ResourceType.TOPIC, t.name, Operation.WRITE) for t in STORE_TOPICS),
        *((ResourceType.TOPIC, t.name, Operation.READ) for t in MASTER_DATA_TOPICS),
        # The estate: its reports out, head office's desired state in (by assignment).
        (ResourceType.TOPIC, ESTATE_REPORTS.name, Operation.WRITE),
        (ResourceType.TOPIC, ESTATE_DESIRED.name, Operation.READ),
    }
    assert {b.principal for b in bindings} == {"User:store-S001"}


def test_the_master_data_publisher_reads_writes_and_creates_the_master_data_topics() -> None:
    bindings = acls.acl_bindings([], [], [acls.MASTER_DATA_PUBLISHER])
    assert set(bindings) == {
        AclBinding("User:hq-masterdata", ResourceType.TOPIC, t.name, op)
        for t in (ITEMS, PRICES)
        for op in (Operation.READ, Operation.WRITE, Operation.CREATE)
    }


def test_a_consumer_reads_its_topics_and_group_and_writes_what_it_publishes() -> None:
    erp = consumer_access("erp")
    bindings = acls.acl_bindings([], [erp])
    principal = "User:erp-inventory"
    topic, group = ResourceType.TOPIC, ResourceType.GROUP
    assert set(bindings) == {
        AclBinding(principal, topic, SALES.name, Operation.READ),
        AclBinding(principal, topic, STOCK_MOVEMENTS.name, Operation.READ),
        AclBinding(principal, topic, ITEMS.name, Operation.READ),
        AclBinding(principal, topic, SALE_VOIDS.name, Operation.READ),  # post-voids undo sales
        AclBinding(principal, group, "erp-inventory", Operation.READ),
        AclBinding(principal, topic, "tillstream.dlq.erp-inventory", Operation.WRITE),
        AclBinding(principal, topic, "tillstream.dlq.erp-inventory", Operation.CREATE),
        AclBinding(principal, topic, REORDER_SUGGESTIONS.name, Operation.WRITE),
        AclBinding(principal, topic, REORDER_SUGGESTIONS.name, Operation.CREATE),
    }


def test_every_built_in_consumer_can_read_what_it_subscribes_to_and_write_nothing_of_stores() -> (
    None
):
    consumers = [consumer_access(name) for name in BUILTIN]
    bindings = acls.acl_bindings(["S1", "S2"], consumers)
    for consumer in consumers:
        principal = f"User:{consumer.group}"
        granted = {(b.resource_name, b.operation) for b in bindings if b.principal == principal}
        assert {(t, Operation.READ) for t in consumer.reads} <= granted
        assert (consumer.group, Operation.READ) in granted
        assert not {(t.name, Operation.WRITE) for t in STORE_TOPICS} & granted
    store_grants = {
        (b.resource_name, b.operation) for b in bindings if b.principal.startswith("User:store-")
    }
    assert {name for name, op in store_grants if op == Operation.READ} == {
        ITEMS.name,
        PRICES.name,
        ESTATE_DESIRED.name,
    }
    assert {op for _, op in store_grants} == {Operation.WRITE, Operation.READ}
    assert bindings == sorted(set(bindings))  # sorted, each once


def test_the_table_in_docs_security_is_the_model() -> None:
    documented = set()
    principal = ""
    text = (ROOT / "docs" / "security.md").read_text()
    section = text.split("\n## ACLs", 1)[1].split("\n## ", 1)[0]  # other tables are not ACLs
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or len(cells) != 3 or "operator" in cells[0]:
            continue
        named = re.search(r"`(User:[^`]+)`", cells[0])
        principal = named.group(1) if named else principal
        for part in cells[2].split(";"):
            kind = ResourceType.GROUP if part.strip().startswith("group") else ResourceType.TOPIC
            for name in re.findall(r"`([^`]+)`", part):
                for op in cells[1].split(", "):
                    documented.add(AclBinding(principal, kind, name, Operation[op]))
    consumers = [consumer_access(name) for name in BUILTIN]
    model = acls.acl_bindings(
        ["S1"], consumers, [acls.MASTER_DATA_PUBLISHER], [acls.ESTATE_PUBLISHER]
    )
    as_documented = {replace(b, principal=b.principal.replace("S1", "<id>")) for b in model}
    assert documented == as_documented


@pytest.mark.parametrize("bad", ["", "two words", "a/b", "x" * 65, "-leading"])
def test_ids_that_cannot_be_principals_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="use 1-64 letters"):
        acls.acl_bindings([bad], [])
    with pytest.raises(ValueError, match="consumer group"):
        acls.acl_bindings([], [ConsumerAccess(bad, ["tillstream.sales"])])


def test_acls_show_prints_the_model(tmp_path: Path) -> None:
    stores = tmp_path / "stores.txt"
    stores.write_text("S1\n# closed: S9\n\nS2  # the new one\n")
    done = subprocess.run(
        [*CLI, "acls", "show", "--stores-file", str(stores), "--consumer", "crm", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["principal"] for r in rows} == {
        "User:store-S1",
        "User:store-S2",
        "User:crm-profiles",
        "User:hq-masterdata",  # the default publishers
        "User:hq-fleet",
    }
    assert {"principal": "User:crm-profiles", "operation": "READ", "resource_type": "TOPIC",
            "resource_name": "tillstream.customer-requests"} in rows  # fmt: skip


# -- on a broker that enforces ACLs -------------------------------------------------------


@pytest.fixture(scope="module")
def secure(request: pytest.FixtureRequest) -> SecureKafka:
    return secure_kafka(request)


def acls_cli(secure: SecureKafka, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``tillstream acls ...`` as ``user`` over SASL_SSL; Effects runs as group acl-reader."""
    env = clean_environment()
    env.update(environment(secure.sasl_settings(user)), TILLSTREAM_TEST_GROUP=READER)
    return subprocess.run(
        [*CLI, "acls", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def lines(output: str) -> list[str]:
    """Output lines with runs of spaces (column padding) as one."""
    return [" ".join(line.split()) for line in output.splitlines()]


MODEL = ("--store", "A1", "--consumer", "tests.runtime_consumers:Effects")


@pytest.fixture(scope="module")
def applied(secure: SecureKafka) -> subprocess.CompletedProcess[str]:
    """The first ``acls apply`` for store A1 and the acl-reader consumer."""
    return acls_cli(secure, ADMIN, "apply", *MODEL)


def test_apply_creates_the_model_once(
    secure: SecureKafka, applied: subprocess.CompletedProcess[str]
) -> None:
    assert applied.returncode == 0, applied.stderr
    created = lines(applied.stdout)
    # The store: WRITE its topics, READ master data; the reader: READ sales and its group,
    # WRITE and CREATE its DLQ; the publishers: READ, WRITE, CREATE master data, and the
    # estate's desired state.
    masterdata = len(MASTER_DATA_TOPICS)
    estate = 2  # WRITE its reports, READ the desired state
    assert len(created) == len(STORE_TOPICS) + masterdata + estate + 4 + 3 * masterdata + 3
    assert all(line.startswith("created ") for line in created)
    assert "created User:store-A1 WRITE topic tillstream.sales" in created
    assert f"created User:{READER} READ group {READER}" in created

    again = acls_cli(secure, ADMIN, "apply", *MODEL)
    assert again.returncode == 0, again.stderr
    assert {line.split(None, 1)[0] for line in again.stdout.splitlines()} == {"present"}
    assert f"0 created, {len(created)} already present" in again.stderr


def test_dry_run_creates_nothing(secure: SecureKafka) -> None:
    for _ in range(2):  # the second run still has everything to create
        done = acls_cli(secure, ADMIN, "apply", "--store", "DRY1", "--consumer", "crm", "--dry-run")
        assert done.returncode == 0, done.stderr
        out = lines(done.stdout)
        assert "would create User:store-DRY1 WRITE topic tillstream.sales" in out
        assert "would create User:store-DRY1 READ topic tillstream.items" in out
        # Only the store's are missing: crm's were applied with the broker.
        store_lines = [line for line in out if "User:store-DRY1" in line]
        assert len(store_lines) == len(STORE_TOPICS) + len(MASTER_DATA_TOPICS) + 2  # estate
        assert all(line.startswith("would create") for line in store_lines)


async def test_a_store_writes_its_topics_and_nothing_else(
    secure: SecureKafka, applied: subprocess.CompletedProcess[str]
) -> None:
    assert applied.returncode == 0, applied.stderr
    store = secure.sasl_settings("store-A1")
    producer = make_producer(store)
    await producer.start()
    try:
        for topic in STORE_TOPICS:  # idempotent producer: no cluster-wide ACL needed
            await producer.send_and_wait(topic.name, b"event", key=b"A1")
        await producer.send_and_wait(ESTATE_REPORTS.name, b"report", key=b"A1")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_and_wait(REORDER_SUGGESTIONS.name, b"forged", key=b"A1")
    finally:
        await producer.stop()
    forger = make_producer(store)  # head office's desired state is not the store's to write
    await forger.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            await forger.send_and_wait(ESTATE_DESIRED.name, None, key=b'["A1","till/T1"]')
    finally:
        await forger.stop()
    await read_once(make_consumer(store, ESTATE_DESIRED.name, group_id=None))  # by assignment

    with pytest.raises(TopicAuthorizationFailedError):
        await read_once(make_consumer(store, SALES.name, group_id=None))
    with pytest.raises(GroupAuthorizationFailedError):  # nor may it use a consumer group
        await read_once(make_consumer(store, SALES.name, group_id="store-A1"))


async def test_a_consumer_reads_its_topics_only(
    secure: SecureKafka, applied: subprocess.CompletedProcess[str]
) -> None:
    assert applied.returncode == 0, applied.stderr
    marker = os.urandom(8).hex().encode()
    producer = make_producer(secure.sasl_settings("store-A1"))
    await producer.start()
    await producer.send_and_wait(SALES.name, marker, key=b"A1")
    await producer.stop()

    reader_settings = secure.mtls_settings(READER)  # the same principal by certificate
    reader = make_consumer(reader_settings, SALES.name, group_id=READER)
    await reader.start()
    try:
        seen: list[bytes] = []
        for _ in range(40):
            batches = await reader.getmany(timeout_ms=500)
            seen += [m.value for messages in batches.values() for m in messages]
            if marker in seen:
                break
        assert marker in seen
    finally:
        await reader.stop()

    with pytest.raises(TopicAuthorizationFailedError):
        await read_once(make_consumer(reader_settings, PAYMENTS.name, group_id=READER))


async def test_the_publisher_publishes_master_data_and_a_store_reads_it_without_a_group(
    secure: SecureKafka, applied: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    assert applied.returncode == 0, applied.stderr
    codec = AvroCodec(FileRegistry(SchemaSet()))
    file = tmp_path / "items.csv"
    file.write_text(
        "sku,gtins,description,unit_of_measure,weighed,stock_item\n"
        "ACL-MILK,,Milk,EA,false,true\nACL-BAG,,Bag,EA,false,false\n"
    )
    publisher = secure.mtls_settings(acls.MASTER_DATA_PUBLISHER)
    changes = await publish_file(publisher, codec, ITEM_KIND, file)
    assert len(changes.new) + changes.unchanged == 2

    store = secure.sasl_settings("store-A1")
    held = (await read_topic(store, codec, ITEMS.name, items_csv.CONTENT)).held
    assert {item_key("ACL-MILK"), item_key("ACL-BAG")} <= set(held)
    producer = make_producer(store)
    await producer.start()
    try:
        with pytest.raises(TopicAuthorizationFailedError):  # a store never writes master data
            await producer.send_and_wait(ITEMS.name, None, key=item_key("ACL-MILK"))
    finally:
        await producer.stop()


async def read_once(consumer: AIOKafkaConsumer) -> None:
    try:
        await consumer.start()
        await consumer.getmany(timeout_ms=5000)
    finally:
        await consumer.stop()


def test_only_a_super_user_may_apply(secure: SecureKafka) -> None:
    done = acls_cli(secure, "store-A1", "apply", *MODEL)
    assert done.returncode == 1
    assert "Error: cannot apply ACLs" in done.stderr
    assert "CLUSTER_AUTHORIZATION_FAILED" in done.stderr and "super user" in done.stderr
    assert "Traceback" not in done.stderr


async def test_acls_outside_the_model_are_reported_and_kept(secure: SecureKafka) -> None:
    admin = secure.sasl_settings(ADMIN)
    model = acls.acl_bindings(["X1"], [])
    await acls.apply(admin, model)
    # The broker's ACL cache follows the controller a moment later: wait (bounded) until it
    # shows every created binding, or the next apply would see some as still missing.
    async with asyncio.timeout(30):
        while (await acls.apply(admin, model, dry_run=True)).created:
            await asyncio.sleep(0.2)
    narrower = [b for b in model if b.resource_name != PAYMENTS.name]
    report = await acls.apply(admin, narrower)
    assert report.created == []
    assert report.extra == [b for b in model if b.resource_name == PAYMENTS.name]
    assert (await acls.apply(admin, model, dry_run=True)).created == []  # still there


@pytest.mark.skipif(external_kafka() is not None, reason="an external cluster may enforce ACLs")
async def test_applying_without_an_authorizer_says_so(kafka_broker: str) -> None:
    plain = Settings(kafka_bootstrap_servers=kafka_broker)
    with pytest.raises(KafkaAccessError, match="does not enforce ACLs"):
        await acls.apply(plain, acls.acl_bindings(["S1"], []))


def test_the_fleet_reads_the_estate_and_writes_desired_state_as_its_publisher_does() -> None:
    fleet = consumer_access("fleet")
    bindings = acls.acl_bindings([], [fleet], [], [acls.ESTATE_PUBLISHER])
    topic = ResourceType.TOPIC
    assert set(bindings) == {
        AclBinding("User:fleet", topic, ESTATE_REPORTS.name, Operation.READ),
        AclBinding("User:fleet", topic, ESTATE_DESIRED.name, Operation.READ),
        AclBinding("User:fleet", ResourceType.GROUP, "fleet", Operation.READ),
        # what a person signed in to its page decides (a till suspended), in their name
        AclBinding("User:fleet", topic, ESTATE_DESIRED.name, Operation.WRITE),
        AclBinding("User:fleet", topic, ESTATE_DESIRED.name, Operation.CREATE),
        AclBinding("User:fleet", topic, "tillstream.dlq.fleet", Operation.WRITE),
        AclBinding("User:fleet", topic, "tillstream.dlq.fleet", Operation.CREATE),
        *(
            AclBinding("User:hq-fleet", topic, ESTATE_DESIRED.name, op)
            for op in (Operation.READ, Operation.WRITE, Operation.CREATE)
        ),
    }
    assert not [b for b in bindings if b.resource_name == ESTATE_REPORTS.name
                and b.operation != Operation.READ]  # fmt: skip


def test_a_store_may_write_its_till_events() -> None:
    bindings = acls.acl_bindings(["S001"], [])
    grant = AclBinding("User:store-S001", ResourceType.TOPIC, TILL_EVENTS.name, Operation.WRITE)
    assert grant in bindings
