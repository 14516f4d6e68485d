"""Who may do what on Kafka: tillstream's ACL model, and applying it to a cluster.

The model (:func:`acl_bindings`) is a pure function of the stores and the consumers:

- a store's edge (principal ``User:store-<id>``) may WRITE the store topics (sales,
  payments, stock movements, till events, post-voids) and its estate reports, and READ the
  master-data topics (items, prices) and head office's desired state of the estate (each
  edge keeps a copy of these, reading every partition by assignment, without a consumer
  group); nothing else;
- head office's master-data publisher (``User:hq-masterdata`` unless named otherwise) may
  READ, WRITE and CREATE the master-data topics (``tillstream items|prices publish`` reads
  what a topic holds before it publishes the changes);
- head office's estate publisher (``User:hq-fleet`` unless named otherwise: whoever runs
  ``tillstream fleet set|apply|rotate-token``) may READ, WRITE and CREATE the desired-state
  topic (it reads each target's last version before it publishes the next);
- a consumer (principal ``User:<group>``, its consumer group id) may READ its topics and its
  group, and WRITE and CREATE its dead-letter topic and the topics it publishes (the
  runtime creates them at start-up when missing).

WRITE implies DESCRIBE, and since Kafka 2.8 (KIP-679) WRITE on any topic also allows the
idempotent producer's InitProducerId, so no cluster-wide IDEMPOTENT_WRITE is granted.
Everything else (creating the topics, ``crm erase``, ``dlq replay``, applying ACLs) is for
an operator principal listed in the brokers' ``super.users``.

aiokafka's admin client has no ACL calls (aio-libs/aiokafka#955); aiokafka does implement
the DescribeAcls and CreateAcls requests, so :func:`apply` sends those through the same
client factory (and TLS/SASL settings) as every other tillstream client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from aiokafka.errors import ClusterAuthorizationFailedError, SecurityDisabled, for_code
from aiokafka.protocol.admin import (
    CreateAclsRequest_v1,
    DescribeAclsRequest,
)
from aiokafka.protocol.api import Request

from tillstream.core.kafka import KafkaAccessError, make_client
from tillstream.core.settings import Settings
from tillstream.core.topics import ESTATE_DESIRED, ESTATE_REPORTS, MASTER_DATA_TOPICS, STORE_TOPICS

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CLUSTER = "kafka-cluster"
MASTER_DATA_PUBLISHER = "hq-masterdata"
"""The principal (``User:hq-masterdata``) head office publishes master data as, by default."""
ESTATE_PUBLISHER = "hq-fleet"
"""The principal (``User:hq-fleet``) head office publishes the estate's desired state as from
the command line, by default (the fleet page publishes as the fleet service)."""


# Kafka's protocol codes (org.apache.kafka.common.resource / acl).
class ResourceType(IntEnum):
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Operation(IntEnum):
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    IDEMPOTENT_WRITE = 12


_ANY = 1
_ALLOW = 3
_LITERAL = 3


@dataclass(frozen=True, order=True)
class AclBinding:
    """ALLOW ``principal`` to do ``operation`` on one resource (by literal name, any host)."""

    principal: str
    resource_type: ResourceType
    resource_name: str
    operation: Operation

    def __str__(self) -> str:
        return (
            f"{self.principal:<24} {self.operation.name:<8} "
            f"{self.resource_type.name.lower()} {self.resource_name}"
        )

    def as_dict(self) -> dict[str, str]:
        return {
            "principal": self.principal,
            "operation": self.operation.name,
            "resource_type": self.resource_type.name,
            "resource_name": self.resource_name,
        }


@dataclass(frozen=True)
class ConsumerAccess:
    """What one head-office consumer group touches."""

    group: str
    reads: Sequence[str]
    writes: Sequence[str] = field(default=())
    """Topics it produces to and may create: its dead-letter topic and what it publishes."""


def store_principal(store_id: str) -> str:
    return f"User:store-{_checked(store_id, 'store id')}"


def consumer_principal(group: str) -> str:
    return f"User:{_checked(group, 'consumer group')}"


def publisher_principal(name: str) -> str:
    return f"User:{_checked(name, 'publisher')}"


def acl_bindings(
    stores: Iterable[str],
    consumers: Iterable[ConsumerAccess],
    publishers: Iterable[str] = (),
    estate_publishers: Iterable[str] = (),
) -> list[AclBinding]:
    """The ACLs of tillstream's model for these stores, consumers, master-data publishers
    and estate publishers, sorted, no duplicates."""
    bindings: set[AclBinding] = set()
    for store in stores:
        principal = store_principal(store)
        bindings.update(_topic(principal, t.name, Operation.WRITE) for t in STORE_TOPICS)
        bindings.update(_topic(principal, t.name, Operation.READ) for t in MASTER_DATA_TOPICS)
        # The estate (docs/edge.md): its reports out; its store's desired state in, read by
        # assignment like the master data (no group).
        bindings.add(_topic(principal, ESTATE_REPORTS.name, Operation.WRITE))
        bindings.add(_topic(principal, ESTATE_DESIRED.name, Operation.READ))
    for publisher in publishers:
        principal = publisher_principal(publisher)
        for operation in (Operation.READ, Operation.WRITE, Operation.CREATE):
            bindings.update(_topic(principal, t.name, operation) for t in MASTER_DATA_TOPICS)
    for publisher in estate_publishers:
        principal = publisher_principal(publisher)
        for operation in (Operation.READ, Operation.WRITE, Operation.CREATE):
            bindings.add(_topic(principal, ESTATE_DESIRED.name, operation))
    for consumer in consumers:
        principal = consumer_principal(consumer.group)
        bindings.update(_topic(principal, t, Operation.READ) for t in consumer.reads)
        bindings.add(AclBinding(principal, ResourceType.GROUP, consumer.group, Operation.READ))
        for topic in consumer.writes:
            bindings.add(_topic(principal, topic, Operation.WRITE))
            bindings.add(_topic(principal, topic, Operation.CREATE))
    return sorted(bindings)


def _topic(principal: str, topic: str, operation: Operation) -> AclBinding:
    return AclBinding(principal, ResourceType.TOPIC, topic, operation)


def _checked(value: str, what: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{what} {value!r}: use 1-64 letters, digits, '_', '.' or '-'")
    return value


# -- applying the model ----------------------------------------------------------------


@dataclass
class ApplyReport:
    created: list[AclBinding] = field(default_factory=list)
    """Created now (or, in a dry run, that would be)."""
    present: list[AclBinding] = field(default_factory=list)
    """Already on the cluster."""
    extra: list[AclBinding] = field(default_factory=list)
    """On the cluster for the model's principals but not in the model (left alone)."""


async def apply(
    settings: Settings, bindings: Sequence[AclBinding], *, dry_run: bool = False
) -> ApplyReport:
    """Create the bindings the cluster lacks (none with ``dry_run``); report the rest."""
    client = make_client(settings)
    await client.bootstrap()
    try:
        existing = await _describe(client)
        wanted = set(bindings)
        principals = {b.principal for b in bindings}
        report = ApplyReport(
            created=[b for b in bindings if b not in existing],
            present=[b for b in bindings if b in existing],
            extra=sorted(b for b in existing - wanted if b.principal in principals),
        )
        if report.created and not dry_run:
            await _create(client, report.created)
        return report
    finally:
        await client.close()


async def _describe(client: Any) -> set[AclBinding]:
    request = DescribeAclsRequest(
        resource_type=ResourceType.ANY,
        resource_name=None,
        resource_pattern_type_filter=_ANY,
        principal=None,
        host=None,
        operation=Operation.ANY,
        permission_type=_ANY,
    )
    response = await client.send(client.get_random_node(), request)
    _raise_for(response.error_code, response.error_message)
    found = set()
    for resource_type, name, pattern, acls in response.resources:
        for principal, host, operation, permission in acls:
            if (pattern, host, permission) == (_LITERAL, "*", _ALLOW):
                binding = _known(principal, resource_type, name, operation)
                if binding is not None:
                    found.add(binding)
    return found


def _known(principal: str, resource_type: int, name: str, operation: int) -> AclBinding | None:
    """The binding, unless it uses a resource type or operation the model never grants."""
    try:
        return AclBinding(principal, ResourceType(resource_type), name, Operation(operation))
    except ValueError:
        return None


class _CreateAcls(Request[CreateAclsRequest_v1]):  # type: ignore[misc]
    """CreateAcls with many creations in one request (aiokafka's sends one)."""

    API_KEY = 30

    def __init__(self, bindings: Sequence[AclBinding]) -> None:
        self._creations = [
            (b.resource_type, b.resource_name, _LITERAL, b.principal, "*", b.operation, _ALLOW)
            for b in bindings
        ]

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> Any:
        return request_struct_class(self._creations)


async def _create(client: Any, bindings: Sequence[AclBinding]) -> None:
    response = await client.send(client.get_random_node(), _CreateAcls(bindings))
    for binding, (code, message) in zip(bindings, response.creation_responses, strict=True):
        _raise_for(code, message, binding)


def _raise_for(code: int, message: str | None, binding: AclBinding | None = None) -> None:
    if code == 0:
        return
    error = for_code(code)
    what = f"creating {' '.join(str(binding).split())}" if binding else "reading the ACLs"
    hint = {
        ClusterAuthorizationFailedError.errno: "this principal may not manage ACLs: run as a "
        "super user, or grant it ALTER and DESCRIBE on the cluster",
        SecurityDisabled.errno: "the cluster does not enforce ACLs: set authorizer.class.name="
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer on its brokers and controllers",
    }.get(code, message or error.description)
    raise KafkaAccessError(f"{what} failed ({error.message}): {hint}")
