"""Control characters in an event's text (issue 23): NUL breaks PostgreSQL's text, ESC reaches
an operator's terminal through `tail`, a line break splits a log line. A till's JSON holding
one is refused naming the field; a POSLog export's line breaks and tabs (a pretty-printed
file) are read as spaces; a record written to Kafka another way is dead-lettered by every
consumer (tests/test_consumers_believe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.edge_support import dumps, sale_json
from tillstream.core.identifiers import field_problem, text_problem
from tillstream_edge.poslog import parse_poslog

DATA = Path(__file__).parent / "data" / "poslog"


@pytest.mark.parametrize(
    "bad", ["A\x00B", "\x1b[2J", "two\nlines", "tab\there", "\x9bcsi", "a\u2028b"]
)
def test_free_text_holds_no_control_character(bad: str) -> None:
    problem = text_problem(bad)
    assert problem is not None and "control character" in problem.message
    assert bad not in problem.message


def test_the_first_bad_field_is_named_a_card_number_first() -> None:
    event = {"lines": [{"description": "ok\x00"}, {"description": "4111 1111 1111 1111"}]}
    assert field_problem(event) is not None
    path, problem = field_problem(event) or ("", None)
    assert (path, problem and problem.kind) == ("lines[1].description", "card_number")
    assert field_problem({"lines": [{"description": "ok\x00"}]})[0] == "lines[0].description"  # type: ignore[index]
    assert field_problem({"event_id": "x", "lines": [{"description": "Äpfel – süß"}]}) is None


async def test_a_tills_json_with_a_control_character_is_refused_naming_the_field(
    edge_factory: Any,
) -> None:
    store = "CC1"
    edge = edge_factory(store)
    sale = sale_json(store)
    sale["lines"][0]["description"] = "BANANAS\x00"
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        refused = await http.post("/v1/events", content=dumps(sale))
        assert refused.status_code == 422, refused.text
        (problem,) = refused.json()["problems"]
        assert problem["field"] == "lines[0].description"
        assert "control character" in problem["message"]
        sale["lines"][0]["description"] = "BANANAS"
        assert (await http.post("/v1/events", content=dumps(sale))).status_code == 202


def test_poslog_line_breaks_and_tabs_in_a_description_are_read_as_spaces() -> None:
    document = (DATA / "v6_customer_card.xml").read_text()
    pretty = document.replace(
        "<Description>Gift wrap, card", "<Description>\n    Gift\twrap,\r\n     card", 1
    )
    assert pretty != document
    result = parse_poslog(pretty.encode())
    descriptions = [
        line.get("description")
        for kind, event in result.events
        if kind == "sale"
        for line in event["lines"]
    ]
    assert any(d and d.startswith("Gift wrap, card") for d in descriptions), descriptions
    assert not any(d and text_problem(d) is not None for d in descriptions)
