"""CRM profiles: visits, spend, points, favourite store, segments and erasure.

Through the real Applier on SQLite and a real PostgreSQL, and once end to end over Kafka.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.consumer_support import publish, running, scalar, wait_until
from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.core.settings import Settings
from tillstream.dev.samples import sale_worth
from tillstream_consumers.crm import CrmProfiles, load_profile, segment_of
from tillstream_consumers.crm.erasure import customer_hash
from tillstream_consumers.crm.segments import score
from tillstream_consumers.runtime.db import Database
from tillstream_consumers.runtime.testing import ConsumerHarness

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Feed(ConsumerHarness):
    """Events through the real codec and Applier, called as ``feed(("sale", record), ...)``."""

    def __init__(self, db_url: str, codec: AvroCodec, consumer: CrmProfiles | None = None) -> None:
        super().__init__(consumer or CrmProfiles(), db_url, codec=codec)

    def __call__(self, *events: tuple[str, dict[str, Any]]) -> None:
        self.apply_events(*events)


@pytest.fixture
def feed(db_url: str, codec: AvroCodec) -> Any:
    f = Feed(db_url, codec)
    yield f
    f.db.close()


def sale(
    customer: str | None,
    store: str,
    at: datetime,
    net: str,
    currency: str = "EUR",
) -> tuple[str, dict[str, Any]]:
    value = sale_worth(store, Decimal(net), at=at, customer=customer)
    value["currency"] = currency
    return "sale", value


def request(customer: str, action: str, at: datetime) -> tuple[str, dict[str, Any]]:
    return "customer_request", {
        "event_id": str(uuid.uuid4()),
        "customer_id": customer,
        "action": action,
        "reference": "CASE-1",
        "requested_at": at,
    }


def test_profile_visits_spend_points_and_favourite_store(feed: Feed) -> None:
    c = f"C-{uuid.uuid4().hex[:8]}"
    resent = sale(c, "S-B", T0 + timedelta(days=1), "20.00")
    feed(
        sale(c, "S-A", T0, "10.50"),
        resent,
        sale(None, "S-A", T0, "99.00"),  # anonymous: no profile
    )
    feed(
        resent,  # a till resent it: applied once
        sale(c, "S-B", T0 + timedelta(days=2), "7.00", "USD"),
        sale(c, "S-A", T0 + timedelta(days=3), "-10.50"),  # a return
    )
    p = load_profile(feed.db, c)
    assert p is not None
    assert p.visits == 4
    assert (p.first_visit, p.last_visit) == (T0, T0 + timedelta(days=3))
    spend = {s.currency: s for s in p.spend}
    assert spend["EUR"].total == Decimal("20.00")
    assert spend["EUR"].visits == 3
    assert spend["EUR"].average_basket == Decimal("6.6667")
    assert (spend["USD"].total, spend["USD"].average_basket) == (Decimal(7), Decimal(7))
    assert p.points == 10 + 20 + 7 - 10  # the return takes back what 10.50 earned
    # Two visits each: the tie goes to the store visited last.
    assert p.favourite_store == "S-A"
    assert feed.db.fetchone("SELECT COUNT(*) FROM crm_profiles")[0] == 1  # type: ignore[index]


def test_points_follow_the_setting_and_never_go_below_zero(db_url: str, codec: AvroCodec) -> None:
    feed = Feed(db_url, codec, CrmProfiles(Settings(crm_points_per_unit=Decimal("1.5"))))
    c = f"C-{uuid.uuid4().hex[:8]}"
    feed(sale(c, "S-A", T0, "5.00"))  # 7.5 -> 7
    assert load_profile(feed.db, c).points == 7  # type: ignore[union-attr]
    feed(sale(c, "S-A", T0 + timedelta(hours=1), "-50.00"))
    assert load_profile(feed.db, c).points == 0  # type: ignore[union-attr]
    feed(sale(c, "S-A", T0 + timedelta(hours=2), "3.00"))
    assert load_profile(feed.db, c).points == 4  # type: ignore[union-attr]
    # A refund as the very first visit earns nothing and owes nothing.
    d = f"C-{uuid.uuid4().hex[:8]}"
    feed(sale(d, "S-A", T0, "-12.00"))
    assert load_profile(feed.db, d).points == 0  # type: ignore[union-attr]
    feed.db.close()


@pytest.mark.parametrize(
    ("days_ago", "visits", "spend", "expected"),
    [
        (200, 30, "5000", "lost"),
        (3, 1, "10", "new"),
        (2, 12, "800", "champion"),
        (2, 12, "100", "loyal"),
        (60, 6, "100", "loyal"),
        (120, 8, "900", "at_risk"),
        (45, 1, "20", "occasional"),
        (10, 2, "20", "occasional"),
    ],
)
def test_segment_rule(days_ago: int, visits: int, spend: str, expected: str) -> None:
    now = T0 + timedelta(days=400)
    assert score(now - timedelta(days=days_ago), visits, Decimal(spend), now).name == expected


def test_segment_of_a_profile_depends_on_the_reference_time(feed: Feed) -> None:
    c = f"C-{uuid.uuid4().hex[:8]}"
    feed(*(sale(c, "S-A", T0 + timedelta(days=i), "60.00") for i in range(10)))
    p = load_profile(feed.db, c)
    assert p is not None
    last = T0 + timedelta(days=9)
    assert segment_of(p, last + timedelta(days=1)).name == "champion"  # 10 visits, 600 EUR
    assert segment_of(p, last + timedelta(days=100)).name == "at_risk"
    assert segment_of(p, last + timedelta(days=365)).name == "lost"


def _text_columns(db: Database) -> list[tuple[str, str]]:
    if db.dialect == "sqlite":
        tables = [t for (t,) in db.fetchall("SELECT name FROM sqlite_master WHERE type='table'")]
        return [
            (t, str(col[1]))
            for t in tables
            for col in db.fetchall(f"PRAGMA table_info({t})")
            if "TEXT" in str(col[2]).upper() or "CHAR" in str(col[2]).upper()
        ]
    return [
        (str(t), str(c))
        for t, c in db.fetchall(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
        )
    ]


def _traces(db: Database, customer: str) -> list[str]:
    """Every (table.column) of the whole database holding ``customer`` anywhere in a value."""
    found = []
    for table, column in _text_columns(db):
        hits = db.fetchone(
            f"SELECT COUNT(*) FROM {table} WHERE {column} LIKE ?", (f"%{customer}%",)
        )
        if hits and hits[0]:
            found.append(f"{table}.{column}")
    return found


def test_erasure_leaves_no_trace_and_is_not_undone_by_later_sales(feed: Feed) -> None:
    c = f"C-{uuid.uuid4().hex[:8]}"
    other = f"C-{uuid.uuid4().hex[:8]}"
    feed(
        sale(c, "S-A", T0, "10.00"),
        sale(c, "S-B", T0 + timedelta(hours=1), "4.00", "USD"),
        sale(other, "S-A", T0, "3.00"),
    )
    tables = {t for t, _ in _text_columns(feed.db)}
    assert {"crm_profiles", "crm_spend", "crm_store_visits", "crm_erasures"} <= tables
    assert {"crm_profiles.customer_id", "crm_spend.customer_id"} <= set(_traces(feed.db, c))

    erased_at = T0 + timedelta(days=1)
    feed(sale(c, "S-A", T0 + timedelta(hours=2), "1.00"), request(c, "ERASE", erased_at))
    assert _traces(feed.db, c) == []
    assert load_profile(feed.db, c) is None
    assert load_profile(feed.db, other) is not None  # only the one customer is forgotten
    assert feed.db.fetchall("SELECT customer_hash FROM crm_erasures") == [(customer_hash(c),)]
    assert customer_hash(c) != c and len(customer_hash(c)) == 64
    assert feed.db.fetchone("SELECT COUNT(*) FROM runtime_outbox") == (0,)

    # Sales still on the topic (late, or replayed) and new ones: nothing comes back.
    feed(sale(c, "S-A", T0 + timedelta(hours=3), "8.00"))
    feed(sale(c, "S-C", erased_at + timedelta(days=1), "8.00"))
    assert _traces(feed.db, c) == []

    # Re-enrolment: only sales from the request on build a new profile.
    reenrolled_at = erased_at + timedelta(days=5)
    feed(request(c, "REENROL", reenrolled_at))
    feed(sale(c, "S-A", T0 + timedelta(hours=4), "50.00"))  # pre-erasure, delivered late
    assert load_profile(feed.db, c) is None
    feed(sale(c, "S-D", reenrolled_at + timedelta(hours=1), "2.00"))
    p = load_profile(feed.db, c)
    assert p is not None
    assert (p.visits, p.points, p.favourite_store) == (1, 2, "S-D")
    assert [(s.currency, s.total) for s in p.spend] == [("EUR", Decimal("2.00"))]

    # Erased again: gone again, and later sales ignored again.
    feed(request(c, "ERASE", reenrolled_at + timedelta(days=1)))
    feed(sale(c, "S-D", reenrolled_at + timedelta(days=2), "2.00"))
    assert _traces(feed.db, c) == []


def _crm_group() -> type[CrmProfiles]:
    """The CRM consumer under a fresh group id, so tests share the broker safely."""
    return type("Crm", (CrmProfiles,), {"name": f"crm-{uuid.uuid4().hex[:8]}"})


async def test_end_to_end_profile_and_erasure_over_kafka(
    kafka_topics: Settings, codec: AvroCodec, tmp_path: Path
) -> None:
    store = f"S-{uuid.uuid4().hex[:8]}"
    c = f"C-{uuid.uuid4().hex[:8]}"
    marker = f"C-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    env = {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": kafka_topics.kafka_bootstrap_servers}
    visits = "SELECT visits FROM crm_profiles WHERE customer_id = ?"
    consumer = _crm_group()(kafka_topics)
    await publish(kafka_topics, codec, [sale(c, store, now - timedelta(minutes=i), "12.00")
                                        for i in range(3)])  # fmt: skip
    async with running(consumer, kafka_topics, url):
        await wait_until(lambda: scalar(url, visits, (c,)) == 3, what="3 visits")

        shown = CliRunner().invoke(main, ["crm", "show", c, "--db", url, "--json"], env=env)
        assert shown.exit_code == 0, shown.output
        profile = json.loads(shown.output)
        assert profile["spend"]["EUR"] == {
            "visits": 3,
            "total": "36.0000",
            "average_basket": "12.0000",
        }
        assert (profile["points"], profile["favourite_store"]) == (36, store)
        assert profile["segment"] == "occasional"

        # The operator's command, in a thread: it runs its own event loop.
        erased = await asyncio.to_thread(
            CliRunner().invoke, main, ["crm", "erase", c, "--reference", "T-42"], env=env
        )
        assert erased.exit_code == 0, erased.output
        await wait_until(lambda: scalar(url, visits, (c,)) is None, what="the profile erased")
        await publish(
            kafka_topics,
            codec,
            [sale(c, store, datetime.now(UTC), "5.00"), sale(marker, store, now, "1.00")],
        )
        # The marker follows the late sale on the same partition: once it is in, so is that.
        await wait_until(lambda: scalar(url, visits, (marker,)) == 1, what="the marker sale")
        assert scalar(url, visits, (c,)) is None
        db = Database(url)
        try:
            assert _traces(db, c) == []
        finally:
            db.close()

    gone = CliRunner().invoke(main, ["crm", "show", c, "--db", url], env=env)
    assert gone.exit_code != 0
    assert "was erased" in gone.output
