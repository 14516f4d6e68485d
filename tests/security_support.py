"""A secured Kafka broker for security tests: TLS, SASL/SCRAM-SHA-512, mTLS and ACLs.

One broker serves every security test module (started on first use, stopped when the
session ends). Its listeners, all on 127.0.0.1:

- ``SASL_SSL``: TLS with a certificate of a CA made here, SCRAM-SHA-512 users;
- ``MTLS``: TLS that requires a client certificate of that CA; its CN is the principal;
- ``PLAINTEXT``: the node's own (inter-broker, controller); tests do not use it.

ACLs are enforced (StandardAuthorizer); ``User:admin`` is a super user. The project's
topics exist, and tillstream's ACL model is applied for stores S1 and S2 and the built-in
consumers, as an operator would set up a cluster.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tillstream.cli.acls import consumer_access
from tillstream.core import acls
from tillstream.core.kafka import create_topics
from tillstream.core.settings import Settings, env_name
from tillstream.dev.broker import Listener, LocalKafka, pem_tls, sasl_scram
from tillstream.dev.ports import free_port
from tillstream_consumers.runtime.loader import BUILTIN

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ADMIN = "admin"
STORES = ("S1", "S2")
"""Stores whose ACLs are applied when the broker starts."""
USERS = (ADMIN, "store-S1", "store-S2", "store-A1", "erp-inventory", "acl-reader")
"""SCRAM-SHA-512 users (certificates are issued for any principal on demand)."""


@dataclass
class Pki:
    """A throwaway CA, the broker's PEM keystore, and client certificates on demand."""

    root: Path
    ca: trustme.CA = field(default_factory=trustme.CA)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ca.cert_pem.write_to_path(str(self.ca_file))

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    def broker_keystore(self) -> Path:
        """Kafka's PEM keystore: a PKCS#8 key, then the certificate chain."""
        cert = self.ca.issue_cert("127.0.0.1", "localhost", common_name="kafka-broker")
        path = self.root / "broker-keystore.pem"
        path.write_bytes(
            _pkcs8(cert.private_key_pem.bytes())
            + b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        )
        return path

    def client(self, principal: str) -> tuple[Path, Path]:
        """Certificate and key files of a client whose CN (and so principal) is ``principal``."""
        cert = self.ca.issue_cert(f"{principal}.clients.test", common_name=principal)
        cert_file = self.root / f"{principal}.crt"
        key_file = self.root / f"{principal}.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(key_file))
        return cert_file, key_file

    def foreign_ca_file(self) -> Path:
        """The certificate of another CA, which signed nothing the broker presents."""
        path = self.root / "foreign-ca.pem"
        if not path.exists():
            trustme.CA().cert_pem.write_to_path(str(path))
        return path


def _pkcs8(key_pem: bytes) -> bytes:
    # trustme writes "traditional" EC keys; Kafka's PEM keystore reads PKCS#8 only.
    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass
class SecureKafka:
    broker: LocalKafka
    pki: Pki
    passwords: dict[str, str]

    @property
    def sasl(self) -> Listener:
        return self.broker.listeners[0]

    @property
    def mtls(self) -> Listener:
        return self.broker.listeners[1]

    def sasl_settings(self, user: str, password: str | None = None, **more: Any) -> Settings:
        """Settings of ``user`` on the SASL_SSL listener (``password`` to get it wrong)."""
        return Settings(
            kafka_bootstrap_servers=self.sasl.bootstrap,
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username=user,
            kafka_sasl_password=password if password is not None else self.passwords[user],
            kafka_ssl_cafile=more.pop("kafka_ssl_cafile", self.pki.ca_file),
            topic_partitions=3,
            **more,
        )

    def mtls_settings(self, principal: str | None, **more: Any) -> Settings:
        """Settings of a client with a certificate for ``principal`` (None: no certificate)."""
        cert: dict[str, Any] = {}
        if principal is not None:
            cert_file, key_file = self.pki.client(principal)
            cert = {"kafka_ssl_certfile": cert_file, "kafka_ssl_keyfile": key_file}
        return Settings(
            kafka_bootstrap_servers=self.mtls.bootstrap,
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=self.pki.ca_file,
            topic_partitions=3,
            **cert,
            **more,
        )


def environment(settings: Settings, *, bootstrap: bool = True) -> dict[str, str]:
    """The Kafka settings as the ``TILLSTREAM_*`` variables a service process reads."""
    env = {}
    for name in settings.model_fields_set:
        if name.startswith("kafka_") and (bootstrap or name != "kafka_bootstrap_servers"):
            value = getattr(settings, name)
            secret = getattr(value, "get_secret_value", None)
            env[env_name(name)] = str(secret() if secret else value)
    return env


_shared: dict[str, SecureKafka] = {}


def secure_kafka(request: pytest.FixtureRequest) -> SecureKafka:
    """The session's secured broker, started by the first module that asks for it."""
    if "broker" in _shared:
        return _shared["broker"]
    libs: Path = request.getfixturevalue("kafka_libs")
    root: Path = request.getfixturevalue("tmp_path_factory").mktemp("secure-kafka")
    pki = Pki(root / "pki")
    keystore = pki.broker_keystore()
    passwords = {user: secrets.token_urlsafe(12) for user in USERS}
    broker = LocalKafka(
        data_dir=root / "data",
        libs=libs,
        port=free_port(),
        listeners=(
            Listener("SASL_SSL", "SASL_SSL", config={**pem_tls(keystore), **sasl_scram()}),
            Listener("MTLS", "SSL", config=pem_tls(keystore, pki.ca_file, client_auth="required")),
        ),
        scram_users=passwords,
        authorizer=True,
        super_users=(f"User:{ADMIN}",),
    )
    broker.start()
    request.config.add_cleanup(lambda: _stop(broker, request.session))
    secure = SecureKafka(broker, pki, passwords)
    asyncio.run(_set_up(secure.sasl_settings(ADMIN)))
    _shared["broker"] = secure
    return secure


def _stop(broker: LocalKafka, session: pytest.Session) -> None:
    broker.stop()
    if session.testsfailed and broker.log_path.exists():  # beside conftest's broker log
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(broker.log_path, ARTIFACTS / "kafka-secure-broker.log")


async def _set_up(admin: Settings) -> None:
    await create_topics(admin)
    consumers = [consumer_access(name) for name in BUILTIN]
    await acls.apply(admin, acls.acl_bindings(STORES, consumers))
