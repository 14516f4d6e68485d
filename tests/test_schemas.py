"""The schema contracts and `tillstream schemas check`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tillstream.cli import main
from tillstream.core.schemas import SchemaSet, check, pin_new_versions
from tillstream.core.topics import EVENT_TOPICS


@pytest.fixture
def schema_copy(tmp_path: Path) -> Path:
    root = tmp_path / "schemas"
    shutil.copytree(SchemaSet().root, root)
    return root


def add_version(root: Path, event: str, change: dict) -> None:
    current = SchemaSet(root).current(event)
    definition = json.loads(json.dumps(current.definition))
    definition.update(change)
    (root / event / f"v{current.version + 1}.avsc").write_text(json.dumps(definition))


def test_committed_schemas_pass_the_check(schema_set: SchemaSet) -> None:
    assert check(schema_set) == []
    assert [v.version for v in schema_set.versions["sale"]] == [1, 2, 3]  # stock_item, list_price
    assert {"sale", "payment", "stock_movement"} <= set(schema_set.versions)
    assert set(EVENT_TOPICS) <= set(schema_set.versions)


def test_money_is_decimal_and_times_are_timestamps(schema_set: SchemaSet) -> None:
    text = json.dumps([v.definition for v in schema_set.all_versions()])
    assert '"float"' not in text and '"double"' not in text
    sale = schema_set.current("sale").definition
    fields = {f["name"]: f for f in sale["fields"]}
    assert fields["occurred_at"]["type"]["logicalType"] == "timestamp-micros"
    line = fields["lines"]["type"]["items"]
    price = next(f for f in line["fields"] if f["name"] == "unit_price")
    assert price["type"]["logicalType"] == "decimal"


def test_payment_schema_has_no_place_for_a_card_number(schema_set: SchemaSet) -> None:
    text = json.dumps(schema_set.current("payment").definition).lower()
    for forbidden in ('"pan"', "card_number", '"number"', "cvv", "expiry"):
        assert forbidden not in text


def test_incompatible_change_fails_the_check(schema_copy: Path) -> None:
    # A new required field without a default: its readers cannot read v1 data.
    current = SchemaSet(schema_copy).current("sale")
    sale, new = current.definition, current.version + 1
    add_version(
        schema_copy,
        "sale",
        {
            "fields": [
                *sale["fields"],
                {"name": "channel", "type": "string", "doc": "Sales channel."},
            ]
        },
    )
    pin_new_versions(SchemaSet(schema_copy))
    problems = check(SchemaSet(schema_copy))
    assert any(
        f"sale/v{new} cannot read data written with v1" in p and "channel" in p for p in problems
    )

    result = CliRunner().invoke(main, ["schemas", "check", "--dir", str(schema_copy)])
    assert result.exit_code != 0
    assert "cannot read data written with v1" in result.output


def test_incompatibility_is_checked_transitively(schema_copy: Path) -> None:
    # v2 drops a field's default-less type change? Use: v2 adds a field with default (ok vs v1),
    # v3 removes the default (ok vs v2's data, which always has it; not ok vs v1's).
    movement = SchemaSet(schema_copy).current("stock_movement").definition
    extra = {"name": "operator_id", "type": "string", "doc": "Who moved the stock."}
    add_version(
        schema_copy,
        "stock_movement",
        {"fields": [*movement["fields"], {**extra, "default": "unknown"}]},
    )
    add_version(schema_copy, "stock_movement", {"fields": [*movement["fields"], extra]})
    pin_new_versions(SchemaSet(schema_copy))
    problems = check(SchemaSet(schema_copy))
    assert any("stock_movement/v3 cannot read data written with v1" in p for p in problems)
    assert not any("v3 cannot read data written with v2" in p for p in problems)


def test_compatible_change_passes_after_pinning(schema_copy: Path) -> None:
    movement = SchemaSet(schema_copy).current("stock_movement").definition
    add_version(
        schema_copy,
        "stock_movement",
        {
            "fields": [
                *movement["fields"],
                {"name": "operator_id", "type": ["null", "string"], "default": None, "doc": "Who."},
            ]
        },
    )
    runner = CliRunner()
    unpinned = runner.invoke(main, ["schemas", "check", "--dir", str(schema_copy)])
    assert unpinned.exit_code != 0 and "no id pinned" in unpinned.output
    pinned = runner.invoke(main, ["schemas", "check", "--dir", str(schema_copy), "--pin"])
    assert pinned.exit_code == 0, pinned.output
    pinned_ids = json.loads((schema_copy / "ids.json").read_text())
    new_id = pinned_ids["stock_movement/v2"]["id"]
    assert new_id == 1 + max(v["id"] for k, v in pinned_ids.items() if k != "stock_movement/v2")
    assert f"stock_movement/v2 -> id {new_id}" in pinned.output


def test_editing_a_published_version_fails(schema_copy: Path) -> None:
    path = schema_copy / "payment" / "v1.avsc"
    definition = json.loads(path.read_text())
    definition["fields"] = definition["fields"][:-1]
    path.write_text(json.dumps(definition))
    assert any("changed after it was published" in p for p in check(SchemaSet(schema_copy)))


def test_undocumented_field_fails(schema_copy: Path) -> None:
    path = schema_copy / "payment" / "v1.avsc"
    definition = json.loads(path.read_text())
    del definition["fields"][-1]["type"][1]["fields"][0]["doc"]  # card.brand
    path.write_text(json.dumps(definition))
    assert "payment/v1: field card.brand has no doc" in check(SchemaSet(schema_copy))


def test_till_events_have_their_own_store_keyed_topic(schema_set: SchemaSet) -> None:
    from tillstream.core.topics import STORE_TOPICS, TILL_EVENTS

    assert EVENT_TOPICS["till_event"] is TILL_EVENTS and TILL_EVENTS in STORE_TOPICS
    fields = {f["name"]: f for f in schema_set.current("till_event").definition["fields"]}
    assert fields["business_day"]["type"]["logicalType"] == "date"
    amount = fields["tenders"]["type"]["items"]["fields"][1]
    assert amount["type"]["logicalType"] == "decimal"
