"""Who may post to the edge: per-till bearer tokens and mutual TLS, on real edge processes.

Refused requests never reach the outbox; health, readiness and metrics stay open to tokens
(mTLS works below HTTP, so with it every client needs a certificate).
"""

from __future__ import annotations

import hashlib
import re
import socket
import sqlite3
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.edge_support import dumps, live_poslog, payment_json, sale_json, stock_json
from tillstream.dev.ports import free_port
from tillstream.dev.processes import Service, run_tillstream
from tillstream_edge.auth import TokenFileError, load_tokens
from tillstream_edge.roles import MAY_POST, POSTED, ROLES

DATA = Path(__file__).parent / "data" / "poslog"
STORE = "S-AUTH"  # its own store: other tests count what store 100 (the sample's) sent
TOKEN_10001 = "till-10001-secret-token-4f1c9e"
TOKEN_10002 = "till-10002-secret-token-88ab31"
TOKEN_BACKOFFICE = "backoffice-secret-token-0d2e77"
TOKEN_MANAGER = "manager-secret-token-5c1a90"


def sha256(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(
        "[tills]\n"
        f'10001 = "{sha256(TOKEN_10001)}"\n'
        f'10002 = "{TOKEN_10002}"\n'  # plain tokens are allowed too
        "[store]\n"
        f'MANAGER = "{sha256(TOKEN_MANAGER)}"\n'
        "[stock_only]\n"
        f'BACKOFFICE = "{sha256(TOKEN_BACKOFFICE)}"\n'
    )
    return path


def journal_of_till_10001() -> bytes:
    """The POSLog sample (WorkstationID 10001) as a new transaction of this store."""
    number = str(uuid.uuid4().int % 10**8)
    v6 = (DATA / "v6_customer_card.xml").read_text().replace(">100</UnitID>", f">{STORE}</UnitID>")
    return live_poslog(v6.replace(">4711<", f">{number}<")).encode()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def outbox_ids(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT event_id FROM events")}


def test_tokens_file_mistakes_are_named_and_never_quote_a_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    for content, message in [
        ('[tills]\nT1 = "short-secret"\n', "at least 16 characters"),
        ('T1 = "long-enough-secret-value"\n', "one [tills] table"),
        ('[tills]\nT1 = "long-enough-secret-value"\nT2 = "long-enough-secret-value"\n', "share"),
        ('[tills]\n" T1" = "long-enough-secret-value"\n', "not a till id"),
        ('[tills]\nT1 = "sha256:5ecre7"\n', "64 hex digits"),
        ("[tills\n", "not valid TOML"),
        ('[tills]\nBACKOFFICE = "long-enough-secret-value"\n', "belongs in [store]"),
        (
            '[store]\nBO = "long-enough-secret-value"\n[stock_only]\nBO = "other-secret-value"\n',
            "is in both [store] and [stock_only]",
        ),
        (
            '[tills]\nT1 = "long-enough-secret-value"\n[stock_only]\nT1 = "other-secret-value"\n',
            "in both",
        ),
        ('[till]\nT1 = "long-enough-secret-value"\n', "one [tills] table"),
    ]:
        path.write_text(content)
        with pytest.raises(TokenFileError, match=re.escape(message)) as err:
            load_tokens(path)
        assert "secret" not in str(err.value) and "5ecre7" not in str(err.value)
    tokens = load_tokens(tokens_file(tmp_path))
    assert tokens.till_of(TOKEN_10001) == "10001"
    assert tokens.till_of(TOKEN_10002) == "10002"
    assert tokens.till_of(TOKEN_10001 + "x") is None

    path.write_text('[tills]\nT1 = "short-secret"\n')
    command = ["edge", "run", "--store", "S1", "--outbox", str(tmp_path / "o.db")]
    result = run_tillstream(*command, "--tokens", str(path))
    assert result.returncode == 1
    assert "T1" in result.stderr and "at least 16 characters" in result.stderr
    assert "short-secret" not in result.stderr + result.stdout


async def test_tokens_are_required_and_bind_events_to_their_till(
    edge_factory: Any, tmp_path: Path
) -> None:
    edge = edge_factory(STORE, args=["--tokens", str(tokens_file(tmp_path))])
    sale = sale_json(STORE, terminal_id="10001")
    own = [sale, payment_json(sale), stock_json(STORE)]
    foreign = sale_json(STORE, terminal_id="10002")
    poslog = journal_of_till_10001()
    refused_ids = {foreign["event_id"]}
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        for headers in ({}, {"authorization": "Basic dGlsbDpwdw=="}, bearer("not-a-token")):
            answer = await http.post("/v1/events", content=dumps(foreign), headers=headers)
            assert answer.status_code == 401, answer.text
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.json()["error"] == "unauthenticated"
        unknown = await http.post("/v1/events", content=dumps(foreign), headers=bearer("x" * 20))
        assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
        assert (await http.post("/v1/poslog", content=poslog)).status_code == 401

        # A till cannot post as another till, not even one event in a batch.
        as_other = await http.post("/v1/events", content=dumps(own), headers=bearer(TOKEN_10002))
        assert as_other.status_code == 403, as_other.text
        # The sale and the payment; the stock movement names no till.
        assert {p["field"] for p in as_other.json()["problems"]} == {
            "events[0].terminal_id",
            "events[1].terminal_id",
        }
        mixed = await http.post(
            "/v1/events", content=dumps([*own, foreign]), headers=bearer(TOKEN_10001)
        )
        assert mixed.status_code == 403
        assert [p["field"] for p in mixed.json()["problems"]] == ["events[3].terminal_id"]
        other_poslog = await http.post("/v1/poslog", content=poslog, headers=bearer(TOKEN_10002))
        assert other_poslog.status_code == 403
        back_office_sale = await http.post(
            "/v1/events", content=dumps(sale), headers=bearer(TOKEN_BACKOFFICE)
        )
        assert back_office_sale.status_code == 403
        assert outbox_ids(edge.outbox) == set()

        ok = await http.post("/v1/events", content=dumps(own), headers=bearer(TOKEN_10001))
        assert ok.status_code == 202, ok.text
        movement = stock_json(STORE)
        back_office = await http.post(
            "/v1/events", content=dumps(movement), headers=bearer(TOKEN_BACKOFFICE)
        )
        assert back_office.status_code == 202
        journal = await http.post("/v1/poslog", content=poslog, headers=bearer(TOKEN_10001))
        assert journal.status_code == 202, journal.text

        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200
        spec = (await http.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"

    stored = outbox_ids(edge.outbox)
    assert {e["event_id"] for e in own} | {movement["event_id"]} <= stored
    assert set(journal.json()["event_ids"]) <= stored
    assert not stored & refused_ids
    assert len(stored) == len(own) + 1 + len(journal.json()["event_ids"])
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="unauthenticated"') == 5
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="forbidden"') == 4
    for token in (TOKEN_10001, TOKEN_10002, TOKEN_BACKOFFICE, "not-a-token"):
        assert token not in edge.log()


async def test_a_stock_only_token_posts_stock_movements_and_nothing_else(
    edge_factory: Any, tmp_path: Path
) -> None:
    edge = edge_factory(STORE, args=["--tokens", str(tokens_file(tmp_path))])
    # Events naming the back office itself: no other till is impersonated.
    sale = sale_json(STORE, terminal_id="BACKOFFICE")
    payment = payment_json(sale)
    movement = stock_json(STORE)
    poslog = journal_of_till_10001().replace(b">10001<", b">BACKOFFICE<")
    office = bearer(TOKEN_BACKOFFICE)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        single = await http.post("/v1/events", content=dumps(sale), headers=office)
        batch = await http.post(
            "/v1/events", content=dumps([movement, sale, payment]), headers=office
        )
        journal = await http.post("/v1/poslog", content=poslog, headers=office)
        for refused in (single, batch, journal):
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"] == "forbidden"
            assert all("stock_only" in p["message"] for p in refused.json()["problems"])
        assert [p["field"] for p in batch.json()["problems"]] == [
            "events[1].type",
            "events[2].type",
        ]
        assert outbox_ids(edge.outbox) == set()  # the batch's movement was refused with it
        ok = await http.post("/v1/events", content=dumps(movement), headers=office)
        assert ok.status_code == 202, ok.text
    assert outbox_ids(edge.outbox) == {movement["event_id"]}
    assert edge.metric("tillstream_edge_events_rejected_total", 'reason="forbidden"') == 3


def store_day_event(kind: str, terminal: str = "BO") -> dict[str, Any]:
    """A store-day's open or close as the back office posts it (yesterday, store-local)."""
    at = datetime.now(UTC) - timedelta(hours=2)
    return {
        "type": "till_event",
        "event_id": str(uuid.uuid4()),
        "store_id": STORE,
        "terminal_id": terminal,
        "kind": kind,
        "operator_id": "manager",
        "business_day": at.date().isoformat(),
        "occurred_at": at.isoformat(),
        "utc_offset_minutes": 0,
    }


async def test_the_store_opens_and_closes_its_day_and_a_till_may_not(
    edge_factory: Any, tmp_path: Path
) -> None:
    edge = edge_factory(STORE, args=["--tokens", str(tokens_file(tmp_path))])
    opening, closing = store_day_event("STORE_DAY_OPEN"), store_day_event("STORE_DAY_CLOSE")
    on_a_till = store_day_event("STORE_DAY_CLOSE", terminal="10001")
    sign_on = {**store_day_event("SIGN_ON", terminal="10001"), "operator_id": "C42"}
    controls = live_poslog(
        (DATA / "control_v6.xml").read_text().replace(">0815</UnitID>", f">{STORE}</UnitID>")
    ).replace(">POS2<", ">10001<")  # the till's journal: its shift, and the store's open and close
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        # A till's own token: its own till's events, never the store's day, whatever till
        # the event names.
        till = await http.post(
            "/v1/events", content=dumps([sign_on, on_a_till, closing]), headers=bearer(TOKEN_10001)
        )
        assert till.status_code == 403, till.text
        problems = till.json()["problems"]
        assert [p["field"] for p in problems] == ["events[1].kind", "events[2].kind"]
        assert all("store's token ([store]" in p["message"] for p in problems)
        journal = await http.post("/v1/poslog", content=controls, headers=bearer(TOKEN_10001))
        assert journal.status_code == 403, journal.text
        assert {p["field"].rsplit(".", 1)[1] for p in journal.json()["problems"]} == {"kind"}
        assert len(journal.json()["problems"]) == 2  # StoreOpen and StoreClose
        # The stock-only token: not the day either.
        stock = await http.post(
            "/v1/events", content=dumps(opening), headers=bearer(TOKEN_BACKOFFICE)
        )
        assert stock.status_code == 403
        assert stock.json()["problems"][0]["field"] == "kind"
        assert "role is stock_only" in stock.json()["problems"][0]["message"]
        # The store's token: its day's open and close (on whichever workstation), and stock
        # movements; never a till's sale or shift.
        store = bearer(TOKEN_MANAGER)
        shift = await http.post("/v1/events", content=dumps([sign_on]), headers=store)
        assert shift.status_code == 403 and shift.json()["problems"][0]["field"] == "type"
        sale = await http.post(
            "/v1/events", content=dumps(sale_json(STORE, terminal_id="10001")), headers=store
        )
        assert sale.status_code == 403
        its_journal = await http.post("/v1/poslog", content=controls, headers=store)
        assert its_journal.status_code == 403  # the till's shift in it is not the store's
        assert outbox_ids(edge.outbox) == set()
        movement = stock_json(STORE)
        day = await http.post(
            "/v1/events", content=dumps([opening, on_a_till, movement, closing]), headers=store
        )
        assert day.status_code == 202, day.text
        shift_only = await http.post(
            "/v1/events", content=dumps(sign_on), headers=bearer(TOKEN_10001)
        )
        assert shift_only.status_code == 202, shift_only.text
    assert outbox_ids(edge.outbox) == {
        e["event_id"] for e in (opening, on_a_till, movement, closing, sign_on)
    }


def test_the_docs_table_of_roles_is_what_the_edge_does() -> None:
    text = (Path(__file__).parent.parent / "docs" / "edge.md").read_text()
    table = text[text.index("| Event | `[tills]`") :].split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert header[1:] == [f"`[{role}]`" for role in ROLES]
    rows = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    assert len(rows) == len(POSTED)
    for what, label in zip(POSTED, rows, strict=True):
        assert what.split(":")[0] in label.replace("`", ""), (what, label)
        allowed = [cell.startswith("yes") for cell in rows[label]]
        assert allowed == [what in MAY_POST[role] for role in ROLES], (what, rows[label])


async def test_without_tokens_the_edge_stays_open(edge_factory: Any) -> None:
    edge = edge_factory("S-OPEN")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        answer = await http.post("/v1/events", content=dumps(stock_json("S-OPEN")))
        assert answer.status_code == 202
        spec = (await http.get("/openapi.json")).json()
        assert "securitySchemes" not in spec.get("components", {})


# -- mutual TLS ---------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path
    stranger_key: Path

    def client(self, *, cert: bool = True, stranger: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if stranger:
            context.load_cert_chain(self.stranger_cert, self.stranger_key)
        elif cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    till = ca.issue_cert("till-10001.store-100.example")
    stranger = other_ca.issue_cert("till-10001.store-100.example")
    paths = Pki(*(tmp_path / f"{name}.pem" for name in ("ca", "sc", "sk", "cc", "ck", "xc", "xk")))
    ca.cert_pem.write_to_path(str(paths.ca))
    for leaf, cert, key in [
        (server, paths.server_cert, paths.server_key),
        (till, paths.client_cert, paths.client_key),
        (stranger, paths.stranger_cert, paths.stranger_key),
    ]:
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
    return paths


@pytest.fixture
def mtls_edge(kafka_broker: str, pki: Pki, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``tillstream edge run`` with HTTPS and client certificates, configured as operators do
    (environment variables); yields its URL and outbox."""
    port, outbox = free_port(), tmp_path / "outbox.db"
    env = {
        "TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "TILLSTREAM_EDGE_TLS_CERTFILE": str(pki.server_cert),
        "TILLSTREAM_EDGE_TLS_KEYFILE": str(pki.server_key),
        "TILLSTREAM_EDGE_TLS_CLIENT_CAFILE": str(pki.ca),
    }
    args = ["edge", "run", "--store", STORE, "--listen", f"127.0.0.1:{port}"]
    args += ["--outbox", str(outbox)]
    edge = Service(
        f"edge {STORE}", args, port, tmp_path / "edge.log", env,
        ready_path="/healthz", own_session=False, tls=pki.client(),
    ).start()  # fmt: skip
    try:
        edge.wait_ready(30)
        yield edge.url, outbox
    finally:
        edge.kill()


def handshake_tls12(port: int, context: ssl.SSLContext) -> None:
    """A TLS 1.2 handshake, where a missing client certificate fails the handshake itself."""
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.do_handshake()


def test_mtls_refuses_clients_without_a_certificate_of_the_store_ca(
    mtls_edge: tuple[str, Path], pki: Pki
) -> None:
    url, outbox = mtls_edge
    port = int(url.rsplit(":", 1)[1])
    event = stock_json(STORE)
    with pytest.raises(ssl.SSLError):
        handshake_tls12(port, pki.client(cert=False))
    with pytest.raises(ssl.SSLError):
        handshake_tls12(port, pki.client(stranger=True))
    handshake_tls12(port, pki.client())  # the store's own till gets through

    for context in (pki.client(cert=False), pki.client(stranger=True)):
        with pytest.raises(httpx.TransportError):
            httpx.post(f"{url}/v1/events", content=dumps(event), verify=context, timeout=5)
    with pytest.raises(httpx.TransportError):  # plain HTTP on the HTTPS port
        httpx.post(url.replace("https", "http") + "/v1/events", content=dumps(event), timeout=5)
    assert outbox_ids(outbox) == set()

    answer = httpx.post(f"{url}/v1/events", content=dumps(event), verify=pki.client(), timeout=10)
    assert answer.status_code == 202, answer.text
    assert outbox_ids(outbox) == {event["event_id"]}
