"""Kafka client factory: every producer, consumer and admin client is built here from settings.

Security (TLS, mTLS, SASL/SCRAM) and durability defaults live in one place, so no service
can forget them. So does explaining a refused connection: aiokafka reports any failed
bootstrap as "Unable to bootstrap from [...]" (the cause only goes to its log), so the
clients made here probe the bootstrap servers once more when starting fails and raise a
:class:`KafkaAccessError` that says what to fix.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from tillstream.core.settings import Settings, env_name, split_host_port
from tillstream.core.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

PROBE_TIMEOUT_MS = 5_000


class KafkaAccessError(KafkaError):  # type: ignore[misc]
    """Kafka refused this client, or this client refused Kafka; the message says what to fix.

    A :class:`KafkaError`, so commands report it like any Kafka failure and long-running
    services keep retrying: the fix (a password, a certificate) may be made on the cluster.
    """


class KafkaAuthError(KafkaAccessError):
    """The broker refused the SASL credentials."""


class KafkaTLSError(KafkaAccessError):
    """TLS failed: the broker's certificate is not trusted, or it refused ours."""


class KafkaUnreachableError(KafkaConnectionError):  # type: ignore[misc]
    """No bootstrap server answered; the message names the setting that lists them.

    A :class:`KafkaConnectionError`, as aiokafka's own: services keep retrying it.
    """


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


async def diagnose(settings: Settings) -> KafkaAccessError | KafkaUnreachableError | None:
    """Why the bootstrap servers refuse this client, or that none of them answers
    (None: they answer and accept us; the failure was something else)."""
    options = connection_options(settings)
    del options["bootstrap_servers"]
    unreachable = []
    for server in settings.bootstrap_servers:
        host, port = split_host_port(server)
        try:
            conn = await create_conn(host, port, request_timeout_ms=PROBE_TIMEOUT_MS, **options)
        except Exception as exc:  # what the probe meets is the diagnosis, not a failure
            problem = _explain(settings, server, exc)
            if problem is not None:
                return problem
            if isinstance(exc, OSError | TimeoutError):  # else it answered, somehow
                unreachable.append(f"{server}: {_why_unreachable(exc)}")
        else:
            conn.close()
    if unreachable and len(unreachable) == len(settings.bootstrap_servers):
        return _unreachable(unreachable)
    return None


def _why_unreachable(exc: OSError | TimeoutError) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    if isinstance(exc, TimeoutError):
        return f"no answer within {PROBE_TIMEOUT_MS // 1000} s"
    return exc.strerror or type(exc).__name__


def _unreachable(problems: list[str]) -> KafkaUnreachableError:
    variable = env_name("kafka_bootstrap_servers")
    return KafkaUnreachableError(
        f"no Kafka broker answers at {'; '.join(problems)}. Set {variable} to the brokers' "
        "host:port list, or start a local broker with `tillstream dev kafka`."
    )


def _explain(settings: Settings, server: str, exc: BaseException) -> KafkaAccessError | None:
    if isinstance(exc, SaslAuthenticationFailed | UnsupportedSaslMechanismError):
        return _sasl_problem(settings, server, exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        cafile = settings.kafka_ssl_cafile
        trusted = f"the CA file {cafile}" if cafile else "the system CA bundle"
        return KafkaTLSError(
            f"TLS verification of the broker certificate at {server} failed "
            f"({exc.verify_message}): it must be signed by a CA in {trusted} "
            f"({env_name('kafka_ssl_cafile')}) and name the host connected to."
        )
    cause = exc.__cause__ if isinstance(exc, KafkaConnectionError) else exc
    if isinstance(cause, ssl.SSLError):
        return _handshake_problem(settings, server, cause)
    return None  # unreachable, timed out, ...: aiokafka's own error says enough


def _sasl_problem(settings: Settings, server: str, exc: BaseException) -> KafkaAuthError:
    user, mechanism = settings.kafka_sasl_username, settings.kafka_sasl_mechanism
    if isinstance(exc, UnsupportedSaslMechanismError):
        return KafkaAuthError(
            f"SASL authentication of user {user!r} at {server} failed: {exc}. Set "
            f"{env_name('kafka_sasl_mechanism')} to a mechanism the listener enables."
        )
    return KafkaAuthError(
        f"SASL authentication failed for user {user!r} ({mechanism}) at {server}: the "
        "broker rejected the credentials (wrong password, or no such user). Check "
        f"{env_name('kafka_sasl_username')} and {env_name('kafka_sasl_password')}."
    )


def _handshake_problem(settings: Settings, server: str, exc: ssl.SSLError) -> KafkaTLSError:
    reason = exc.reason or str(exc)
    if "CERTIFICATE" not in reason and "UNKNOWN_CA" not in reason:
        return KafkaTLSError(
            f"TLS handshake with Kafka at {server} failed ({reason}): is it a TLS listener "
            f"({env_name('kafka_security_protocol')}={settings.kafka_security_protocol})?"
        )
    # The broker sent a certificate alert: it refused our client certificate, or its absence.
    certfile = settings.kafka_ssl_certfile
    fix = (
        f"{env_name('kafka_ssl_certfile')} ({certfile}) must be signed by a CA the broker trusts"
        if certfile
        else f"the listener requires one (mTLS): set {env_name('kafka_ssl_certfile')} and "
        f"{env_name('kafka_ssl_keyfile')}"
    )
    return KafkaTLSError(
        f"Kafka at {server} refused the TLS handshake ({reason}): no client certificate it "
        f"accepts; {fix}."
    )


class _ExplainsRefusal:
    """Mixed into aiokafka's clients: a start that Kafka refuses says why (see diagnose)."""

    def __init__(self, settings: Settings, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._settings = settings

    async def start(self) -> None:
        await _explained(self._settings, super().start)  # type: ignore[misc]


class _Producer(_ExplainsRefusal, AIOKafkaProducer):  # type: ignore[misc]
    pass


class _Consumer(_ExplainsRefusal, AIOKafkaConsumer):  # type: ignore[misc]
    pass


class _Admin(_ExplainsRefusal, AIOKafkaAdminClient):  # type: ignore[misc]
    pass


class _Client(_ExplainsRefusal, AIOKafkaClient):  # type: ignore[misc]
    # The low-level client starts with bootstrap().
    async def bootstrap(self) -> None:
        await _explained(self._settings, super().bootstrap)


async def _explained(settings: Settings, start: Callable[[], Awaitable[None]]) -> None:
    """Run a client's start; if bootstrapping fails because Kafka refuses us or cannot be
    reached, say why and what to set."""
    with _aiokafka_quiet():
        try:
            await start()
        except KafkaConnectionError as exc:
            if isinstance(exc, KafkaUnreachableError):  # the low-level client: explained
                raise
            problem = await diagnose(settings)
            if problem is None:
                raise
            raise problem from exc


_AIOKAFKA = logging.getLogger("aiokafka")
_starting = 0
"""Clients starting now (one event loop: a plain count)."""
_level_before = logging.NOTSET


@contextlib.contextmanager
def _aiokafka_quiet() -> Iterator[None]:
    """aiokafka's own lines while clients start (``Unable connect to "host:port"`` for each
    bootstrap server that does not answer): a start that fails says why in its error, and
    the commands that configure no logging would print them above it. The level is given
    back when the last start in progress ends."""
    global _starting, _level_before
    if _starting == 0:
        _level_before = _AIOKAFKA.level
        _AIOKAFKA.setLevel(logging.CRITICAL)
    _starting += 1
    try:
        yield
    finally:
        _starting -= 1
        if _starting == 0:
            _AIOKAFKA.setLevel(_level_before)


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent producer waiting for all in-sync replicas: no loss, no duplicates on retry."""
    options: dict[str, Any] = {
        **connection_options(settings),
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "compression_type": "lz4",  # store uplinks are thin; lz4 costs little CPU
        "request_timeout_ms": 30_000,
        "max_request_size": settings.kafka_max_request_bytes,  # the edge's door checks it too
    }
    options.update(overrides)
    return _Producer(settings, **options)


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
    return _Consumer(settings, *topics, **options)


def make_admin(settings: Settings) -> AIOKafkaAdminClient:
    return _Admin(settings, **connection_options(settings))


def make_client(settings: Settings) -> AIOKafkaClient:
    """aiokafka's low-level client, for protocol requests its admin client lacks (ACLs).

    Call ``await client.bootstrap()`` first and ``await client.close()`` at the end.
    """
    return _Client(settings, **connection_options(settings))


async def create_topics(
    settings: Settings, topics: tuple[TopicSpec, ...] = ALL_TOPICS
) -> dict[str, str]:
    """Create tillstream's topics; existing ones are left alone. Returns topic -> outcome."""
    admin = make_admin(settings)
    try:  # a failed start is stopped too, not left unclosed
        await admin.start()
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
            await _leaders_elected(settings, [t.name for t in new])
        return outcome
    finally:
        await admin.close()


async def _leaders_elected(settings: Settings, names: list[str]) -> None:
    """Until the leader of every partition of the topics ``names`` answers for it: a producer
    started right after the topics were created would otherwise meet NotLeaderForPartition
    while the brokers take up leadership, and aiokafka logs each retry (on the demo's first
    screen). A ListOffsets request is answered only by a partition's leader; aiokafka retries
    it quietly until it is (bounded by the request timeout)."""
    consumer = make_consumer(settings, group_id=None)
    with _aiokafka_quiet():
        await consumer.start()
        try:
            await consumer.end_offsets(
                [TopicPartition(n, p) for n in names for p in range(settings.topic_partitions)]
            )
        except KafkaError as exc:  # producers retry by themselves: only slower to start
            log.debug("topics %s: leaders not confirmed (%s)", ", ".join(names), exc)
        finally:
            await consumer.stop()
