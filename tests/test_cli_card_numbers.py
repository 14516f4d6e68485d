"""No card number reaches an event from the command line: every argument that becomes part
of an event (a customer id, a case reference, a store id) passes the card-number rule of
every channel, and a refusal names the argument, never the value. Run as operators run the
commands: as processes, against the real broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from stdnum import luhn

from tests.masterdata_support import end_offsets
from tillstream.core.settings import Settings
from tillstream.core.topics import CUSTOMER_REQUESTS, SALES
from tillstream.dev.processes import run_tillstream

CARD = "4111111111111111"
SPELLINGS = [CARD, "4111 1111 1111 1111", "4111-1111-1111-1111", "C-4111111111111111"]


def env(settings: Settings, **extra: str) -> dict[str, str]:
    return {"TILLSTREAM_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, **extra}


def refused(args: list[str], argument: str, settings: Settings, **extra: str) -> None:
    """``tillstream ARGS`` ends as a usage error naming ``argument``, without the number."""
    done = run_tillstream(*args, env=env(settings, **extra))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Invalid value for {argument}: looks like a card number (PAN)" in done.stderr
    assert "1111" not in done.stdout + done.stderr


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_crm_erase_of_a_card_number_publishes_nothing(
    kafka_topics: Settings, spelling: str
) -> None:
    before = end_offsets(kafka_topics, CUSTOMER_REQUESTS.name)
    refused(["crm", "erase", spelling], "'CUSTOMER_ID'", kafka_topics)
    refused(["crm", "reenrol", spelling], "'CUSTOMER_ID'", kafka_topics)
    refused(["crm", "erase", "C-1", "--reference", spelling], "'--reference'", kafka_topics)
    assert end_offsets(kafka_topics, CUSTOMER_REQUESTS.name) == before


def test_a_card_number_as_the_store_of_an_edge_command_is_refused(
    kafka_topics: Settings, tmp_path: Path
) -> None:
    poslog = tmp_path / "day1.xml"
    poslog.write_text("<POSLog/>")
    outbox = str(tmp_path / "outbox.db")
    before = end_offsets(kafka_topics, SALES.name)
    refused(["edge", "import", str(poslog), "--store", CARD, "--outbox", outbox], "'--store'",
            kafka_topics)  # fmt: skip
    refused(["edge", "run", "--store", CARD, "--outbox", outbox], "'--store'", kafka_topics)
    (tmp_path / "outbox.db").touch()
    refused(["edge", "set-aside", "retry", "--all", "--store", CARD, "--outbox", outbox],
            "'--store'", kafka_topics)  # fmt: skip
    assert end_offsets(kafka_topics, SALES.name) == before
    # Nor as the store id setting: named by its variable.
    done = run_tillstream(
        "edge", "import", str(poslog), "--outbox", outbox,
        env=env(kafka_topics, TILLSTREAM_STORE_ID=CARD),
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "TILLSTREAM_STORE_ID: looks like a card number (PAN)" in done.stderr
    assert "1111" not in done.stdout + done.stderr


def test_simulated_store_ids_are_never_card_numbers(kafka_topics: Settings) -> None:
    refused(["simulate", "--duration", "1", "--store-prefix", CARD], "'--store-prefix'",
            kafka_topics)  # fmt: skip
    # A prefix that is no card number on its own, but is one with a store's number after it.
    prefix = next(p for p in (f"41111111111111{d}" for d in range(10)) if luhn.is_valid(p + "002"))
    assert not luhn.is_valid(prefix)
    refused(["simulate", "--duration", "1", "--stores", "3", "--store-prefix", prefix],
            "'--store-prefix'", kafka_topics)  # fmt: skip
