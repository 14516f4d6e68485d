"""A customer id no one person could be (issue 21): a till that writes the loyalty programme's
name, or a shared card, in the customer field makes the chain's members one "customer". The
CRM counts every sale as before, but flags the id for the business day, on SQLite and on a
real PostgreSQL; a post-void takes its visit back; erasure forgets the flags too."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from tests.test_crm import Feed, request, sale
from tillstream.cli import main
from tillstream.core.codec import AvroCodec
from tillstream.dev.samples import sample_sale_void
from tillstream_consumers.crm import CrmProfiles, load_profile
from tillstream_consumers.crm.plausibility import implausible
from tillstream_consumers.crm.tables import PERSONAL_TABLES

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_an_id_seen_in_too_many_stores_in_a_day_is_flagged_not_dropped(
    db_url: str, codec: AvroCodec
) -> None:
    feed = Feed(db_url, codec, CrmProfiles())
    try:
        club = f"CLUB-{uuid.uuid4().hex[:6]}"  # every member's receipt names the programme
        person = f"C-{uuid.uuid4().hex[:6]}"
        feed(*(sale(club, f"S-{n}", T0 + timedelta(minutes=n), "5.00") for n in range(6)))
        feed(*(sale(person, "S-0", T0 + timedelta(hours=n), "5.00") for n in range(3)))
        feed(sale(person, "S-1", T0 + timedelta(hours=5), "5.00"))
        [flag] = implausible(feed.db)
        assert (flag.customer_id, flag.business_day, flag.visits, flag.stores) == (
            club,
            T0.date().isoformat(),
            6,
            6,
        )
        profile = load_profile(feed.db, club)
        assert profile is not None and profile.visits == 6  # counted, not merged away silently
        assert implausible(feed.db, (T0 + timedelta(days=1)).date().isoformat()) == []
    finally:
        feed.db.close()


def test_too_many_visits_in_one_store_and_a_post_void_takes_its_visit_back(
    db_url: str, codec: AvroCodec
) -> None:
    feed = Feed(db_url, codec, CrmProfiles())
    try:
        card = f"STAFF-{uuid.uuid4().hex[:6]}"
        sales = [sale(card, "S-A", T0 + timedelta(minutes=n), "1.00") for n in range(26)]
        feed(*sales[:25])
        assert implausible(feed.db) == []  # 25 visits: the most one person is taken to do
        feed(sales[25])
        [flag] = implausible(feed.db)
        assert (flag.visits, flag.stores) == (26, 1)
        void = sample_sale_void(sales[25][1], at=T0 + timedelta(hours=1))
        feed(("sale_void", void))
        visits = feed.db.fetchone("SELECT visits FROM crm_days WHERE customer_id = ?", (card,))
        assert visits is not None and int(visits[0]) == 25
        assert "crm_days" in PERSONAL_TABLES and "crm_implausible" in PERSONAL_TABLES
        feed(request(card, "ERASE", T0 + timedelta(days=1)))
        assert implausible(feed.db) == []
        assert feed.db.fetchone("SELECT 1 FROM crm_days WHERE customer_id = ?", (card,)) is None
    finally:
        feed.db.close()


def test_tillstream_crm_implausible_lists_them(tmp_path: Any, codec: AvroCodec) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    feed = Feed(url, codec, CrmProfiles())
    club = "SPORTCLUB"
    feed(*(sale(club, f"S-{n}", T0 + timedelta(minutes=n), "5.00") for n in range(5)))
    feed.db.close()
    done = CliRunner().invoke(main, ["crm", "implausible", "--db", url, "--json"])
    assert done.exit_code == 0, done.output
    [row] = [json.loads(line) for line in done.output.splitlines() if line.startswith("{")]
    assert (row["customer_id"], row["stores"], row["visits"]) == (club, 5, 5)
