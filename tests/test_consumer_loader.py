"""Finding consumers: built-ins, module:Class, entry points, and clear errors otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tillstream.cli import main
from tillstream_consumers.analytics import Analytics
from tillstream_consumers.audit import SalesAudit
from tillstream_consumers.crm import CrmProfiles
from tillstream_consumers.erp import ErpInventory
from tillstream_consumers.example import VisitCounter
from tillstream_consumers.fleet import FleetService
from tillstream_consumers.runtime.loader import ConsumerNotFound, load_consumer


def test_builtins_and_module_paths_resolve() -> None:
    assert load_consumer("erp") is ErpInventory
    assert load_consumer("crm") is CrmProfiles
    assert load_consumer("analytics") is Analytics
    assert load_consumer("audit") is SalesAudit
    assert load_consumer("sales-audit") is SalesAudit
    assert load_consumer("fleet") is FleetService
    assert load_consumer("tillstream_consumers.example:VisitCounter") is VisitCounter


def test_an_installed_entry_point_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "visits_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: visits-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[tillstream.consumers]\nvisits = tillstream_consumers.example:VisitCounter\n"
    )
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert load_consumer("visits") is VisitCounter


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "no consumer 'nope': use one of analytics, audit, crm, erp, fleet"),
        ("no_such_module:Thing", "cannot import 'no_such_module'"),
        ("tillstream_consumers.example:Missing", "has no 'Missing'"),
        ("tillstream.core.settings:Settings", "is not a tillstream Consumer subclass"),
    ],
)
def test_unknown_consumers_are_refused_clearly(spec: str, message: str) -> None:
    with pytest.raises(ConsumerNotFound, match=message):
        load_consumer(spec)


def test_consume_names_a_bad_consumer_and_exits_2() -> None:
    result = CliRunner().invoke(main, ["consume", "nope"])
    assert result.exit_code == 2
    assert "no consumer 'nope'" in result.output
