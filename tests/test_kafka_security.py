"""TLS, SASL/SCRAM-SHA-512 and mTLS against a real broker, with tillstream's ACLs in force.

The edge and a head-office consumer run as processes configured only from TILLSTREAM_*
variables, as operators run them. Refusals (a wrong password, a broker certificate the
client does not trust, no client certificate on the mTLS listener) must say what to fix.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.consumer_support import ConsumerProcess, scalar
from tests.edge_support import dumps, sale_json, stock_json
from tests.security_support import ADMIN, SecureKafka, environment, secure_kafka
from tillstream.core.kafka import KafkaAuthError, KafkaTLSError, make_admin, make_producer
from tillstream.core.settings import Settings
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service, clean_environment

CLI = [sys.executable, "-m", "tillstream"]


@pytest.fixture(scope="module")
def secure(request: pytest.FixtureRequest) -> SecureKafka:
    return secure_kafka(request)


def edge(settings: Settings, store: str, workdir: Path) -> Service:
    """``tillstream edge run`` for ``store``, configured by environment variables."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["edge", "run", "--store", store, "--listen", f"127.0.0.1:{port}"]
    args += ["--outbox", str(workdir / "outbox.db")]
    service = Service(f"edge-{store}", args, port, workdir / "edge.log", environment(settings))
    # Alive is enough: an edge that Kafka refuses is not ready (/readyz 503), yet takes events.
    service.start().wait_ready(timeout=30, path="/healthz")
    return service


@pytest.fixture
def services() -> Iterator[list[Service | ConsumerProcess]]:
    started: list[Service | ConsumerProcess] = []
    yield started
    for service in started:
        service.stop()  # SIGTERM: the ERP leaves its group, so the next one joins at once


def readyz(service: Service) -> dict[str, Any]:
    """An edge's health; its outbox gauge is refreshed every 2 s, so poll it."""
    answer: dict[str, Any] = httpx.get(f"{service.url}/readyz", timeout=5).json()
    return answer


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("listener", ["SASL_SSL", "mTLS"])
def test_edge_to_consumer_over_a_secured_listener(
    secure: SecureKafka, listener: str, tmp_path: Path, services: list[object]
) -> None:
    # One store per listener: each edge authenticates as its own principal.
    store = "S1" if listener == "SASL_SSL" else "S2"
    if listener == "SASL_SSL":
        edge_settings = secure.sasl_settings(f"store-{store}")
        erp_settings = secure.sasl_settings("erp-inventory")
    else:
        edge_settings = secure.mtls_settings(f"store-{store}")
        erp_settings = secure.mtls_settings("erp-inventory")
    store_edge = edge(edge_settings, store, tmp_path / "edge")
    services.append(store_edge)
    db_url = f"sqlite:///{tmp_path / 'erp.db'}"
    bootstrap = erp_settings.kafka_bootstrap_servers
    env = environment(erp_settings, bootstrap=False)  # ConsumerProcess sets it
    erp = ConsumerProcess("erp", bootstrap, db_url, tmp_path / "erp", env=env)
    services.append(erp)
    erp.start()

    sale, movement = sale_json(store), stock_json(store)
    answer = httpx.post(f"{store_edge.url}/v1/events", content=dumps([sale, movement]), timeout=10)
    assert answer.status_code == 202, answer.text

    ledger = "SELECT COUNT(*) FROM erp_ledger WHERE event_id = ?"
    wait_for(
        lambda: (
            scalar(db_url, ledger, (sale["event_id"],)) == len(sale["lines"])
            and scalar(db_url, ledger, (movement["event_id"],)) == 1
        ),
        f"the ERP to apply {store}'s sale and stock movement over {listener}",
    )
    wait_for(lambda: readyz(store_edge)["outbox"].get("depth") == 0, "the outbox gauge")
    assert readyz(store_edge)["kafka_up"] is True
    log = erp.log()
    assert "Traceback" not in log and "not authorized" not in log.lower()


async def test_a_wrong_password_is_refused_naming_user_and_mechanism(
    secure: SecureKafka,
) -> None:
    producer = make_producer(secure.sasl_settings("store-S1", password="not-the-password"))
    with pytest.raises(KafkaAuthError) as refused:
        await producer.start()
    await producer.stop()
    message = str(refused.value)
    assert "SASL authentication failed for user 'store-S1' (SCRAM-SHA-512)" in message
    assert secure.sasl.bootstrap in message
    assert "not-the-password" not in message


def test_the_cli_reports_a_wrong_password_as_an_error(secure: SecureKafka) -> None:
    settings = secure.sasl_settings(ADMIN, password="wrong")
    done = subprocess.run(
        [*CLI, "topics", "create"],
        env=clean_environment(**environment(settings)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Error: cannot create topics" in done.stderr
    assert "SASL authentication failed for user 'admin' (SCRAM-SHA-512)" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_edge_with_a_wrong_password_keeps_events_and_says_why(
    secure: SecureKafka, tmp_path: Path, services: list[object]
) -> None:
    settings = secure.sasl_settings("store-S1", password="stale-password")
    store_edge = edge(settings, "S1", tmp_path / "edge")
    services.append(store_edge)
    answer = httpx.post(f"{store_edge.url}/v1/events", content=dumps(sale_json("S1")), timeout=10)
    assert answer.status_code == 202  # accepted into the outbox: nothing is lost
    refusal = "KafkaAuthError: SASL authentication failed for user 'store-S1' (SCRAM-SHA-512)"
    wait_for(lambda: refusal in store_edge.tail(20_000), "the refusal in the edge's log")
    wait_for(lambda: readyz(store_edge)["outbox"].get("depth") == 1, "the outbox gauge")
    assert readyz(store_edge)["kafka_up"] is False
    assert httpx.get(f"{store_edge.url}/readyz", timeout=5).status_code == 503


async def test_a_broker_certificate_from_another_ca_is_refused(secure: SecureKafka) -> None:
    foreign = secure.pki.foreign_ca_file()
    admin = make_admin(secure.sasl_settings(ADMIN, kafka_ssl_cafile=foreign))
    with pytest.raises(KafkaTLSError) as refused:
        await admin.start()
    await admin.close()
    message = str(refused.value)
    assert "TLS verification of the broker certificate" in message
    assert f"the CA file {foreign}" in message
    assert "TILLSTREAM_KAFKA_SSL_CAFILE" in message


async def test_mtls_refuses_a_client_without_a_certificate(secure: SecureKafka) -> None:
    producer = make_producer(secure.mtls_settings(None))
    with pytest.raises(KafkaTLSError) as refused:
        await producer.start()
    await producer.stop()
    message = str(refused.value)
    assert "requires one (mTLS)" in message
    assert "TILLSTREAM_KAFKA_SSL_CERTFILE" in message


async def test_mtls_refuses_a_certificate_from_another_ca(
    secure: SecureKafka, tmp_path: Path
) -> None:
    impostor = trustme.CA().issue_cert("impostor.test", common_name="store-S1")
    cert, key = tmp_path / "impostor.crt", tmp_path / "impostor.key"
    impostor.cert_chain_pems[0].write_to_path(str(cert))
    impostor.private_key_pem.write_to_path(str(key))
    settings = secure.mtls_settings(None, kafka_ssl_certfile=cert, kafka_ssl_keyfile=key)
    producer = make_producer(settings)
    with pytest.raises(KafkaTLSError) as refused:
        await producer.start()
    await producer.stop()
    assert f"({cert}) must be signed by a CA the broker trusts" in str(refused.value)
