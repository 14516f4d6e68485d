"""The monitoring configuration: Prometheus config and rules valid (promtool), alert unit tests
pass, dashboards are the generator's output, and everything they query is a metric the code
exports. The live counterpart is tests/test_observability_live.py."""

from __future__ import annotations

import importlib.util
import subprocess
from types import ModuleType

import pytest
import yaml

from tests.pipeline_support import (
    ALERT_TESTS,
    ALERTS,
    BUILTIN_SERIES,
    DASHBOARDS_DIR,
    GRAFANA_DIR,
    PROMETHEUS_CONFIG,
    PROMETHEUS_DIR,
    ROOT,
    alert_rules,
    dashboards,
    exported_series,
    metric_name,
    panel_exprs,
    recording_rules,
    selectors,
    tool,
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", str(PROMETHEUS_CONFIG)),
        ("check", "rules", str(ALERTS)),
        *(("test", "rules", str(path)) for path in ALERT_TESTS),
    ],
    ids=["check-config", "check-rules", *(f"test-rules-{p.stem}" for p in ALERT_TESTS)],
)
def test_promtool(args: tuple[str, ...]) -> None:
    result = promtool(*args)
    assert result.returncode == 0, f"promtool {' '.join(args)}:\n{result.stdout}{result.stderr}"


def test_every_alert_has_a_promtool_test() -> None:
    tested = {
        case["alertname"]
        for path in ALERT_TESTS
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {p.name for p in ALERT_TESTS} >= {"alerts_test.yml", "audit_test.yml", "fleet_test.yml"}
    for prefix, least in (("TillstreamAudit", 4), ("TillstreamFleet", 7)):
        named = {r["alert"] for r in alert_rules() if r["alert"].startswith(prefix)}
        assert len(named) >= least
        assert named <= tested, f"alerts without a promtool case that fires: {named - tested}"


def test_scrape_jobs_and_example_store_list() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"tillstream-edge", "tillstream-consumers"}
    assert jobs["tillstream-edge"]["file_sd_configs"][0]["files"] == ["stores/*.yaml"]
    targets = [t for c in jobs["tillstream-consumers"]["static_configs"] for t in c["targets"]]
    assert targets == ["erp:9401", "crm:9402", "analytics:9403", "audit:9404", "fleet:9405"]
    assert config["rule_files"] == ["alerts.yml"]
    # Scraping each store is optional (the fleet service reports them all): the shipped
    # list scrapes none, and its commented-out entries show the format.
    text = (PROMETHEUS_DIR / "stores" / "example.yaml").read_text()
    assert yaml.safe_load(text) == []
    lines = text.splitlines()
    first = next(n for n, line in enumerate(lines) if line.startswith("# - "))
    entries = [line[2:] for line in lines[first:] if line.startswith("# ")]
    example = yaml.safe_load("\n".join(entries))
    assert example and all(e["targets"] and e["labels"]["store"] for e in example)


def test_every_alert_has_severity_for_and_runbook() -> None:
    rules = alert_rules()
    assert len(rules) >= 12
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert "for" in rule, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert f"docs/observability.md#{name.lower()}" in rule["annotations"]["description"]
    docs = (ROOT / "docs" / "observability.md").read_text()
    for rule in rules:
        assert f"### {rule['alert']}" in docs, f"{rule['alert']} has no runbook section"


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_dashboards", GRAFANA_DIR / "build_dashboards.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboards_are_the_generated_ones() -> None:
    builder = _builder()
    generated = builder.dashboards()
    assert sorted(generated) == sorted(p.name for p in DASHBOARDS_DIR.glob("*.json"))
    for name, board in generated.items():
        committed = (DASHBOARDS_DIR / name).read_text()
        assert committed == builder.render(board), (
            f"{name} is stale: run python deploy/grafana/build_dashboards.py"
        )


def test_every_panel_has_a_title_and_a_query() -> None:
    boards = dashboards()
    assert set(boards) == {"store-operations.json", "pipeline-health.json", "business.json"}
    uids = [board["uid"] for board in boards.values()]
    assert len(set(uids)) == len(uids)
    for name, board in boards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in board["panels"]:
            assert panel.get("title"), f"{name}: panel {panel['id']} has no title"
            if panel["type"] == "row":  # a header: its panels follow it
                assert panel["gridPos"]["w"] == 24 and panel["collapsed"] is False
                continue
            targets = panel.get("targets", [])
            assert targets and all(t["expr"].strip() for t in targets), (
                f"{name}: {panel['title']} has no query"
            )
            assert panel["datasource"]["uid"] == "prometheus"


def test_the_business_dashboard_has_a_sales_audit_row() -> None:
    """Below the row header, each panel queries the audit's gauges, and each of them is shown."""
    panels = dashboards()["business.json"]["panels"]
    (start,) = [i for i, p in enumerate(panels) if p["type"] == "row"]
    assert panels[start]["title"] == "Sales audit"
    audit = panels[start + 1 :]
    assert audit and all(p["gridPos"]["y"] > panels[start]["gridPos"]["y"] for p in audit)
    shown = {metric_name(sel) for p in audit for t in p["targets"] for sel in selectors(t["expr"])}
    assert shown == {
        "tillstream_audit_flags",
        "tillstream_audit_unbalanced_store_days",
        "tillstream_audit_store_days",
    }
    exprs = [t["expr"] for p in audit for t in p["targets"]]
    assert any('kind="silent_store"' in e for e in exprs)


def test_the_store_operations_dashboard_starts_with_the_estate_row() -> None:
    """The estate row needs no scrape of any store: every panel under it queries the fleet
    service's gauges, each of them is shown, and the store list comes from them too."""
    board = dashboards()["store-operations.json"]
    panels = board["panels"]
    starts = [i for i, p in enumerate(panels) if p["type"] == "row"]
    assert [panels[i]["title"] for i in starts] == [
        "Store estate (fleet service)",
        "Edge metrics (each edge scraped directly: optional)",
    ]
    estate = panels[starts[0] + 1 : starts[1]]
    shown = {metric_name(sel) for p in estate for t in p["targets"] for sel in selectors(t["expr"])}
    fleet = {m for m in exported_series() if m.startswith("tillstream_fleet_")}
    assert shown == fleet and len(fleet) == 9
    (variable,) = board["templating"]["list"]
    assert variable["definition"] == "label_values(tillstream_fleet_edge_up, store)"


def test_dashboards_and_alerts_query_only_metrics_the_code_exports() -> None:
    known = exported_series() | BUILTIN_SERIES | recording_rules()
    # the definitions are found (a broken pattern would make this test vacuous)
    assert "tillstream_edge_outbox_depth" in known
    assert "tillstream_consumer_event_latency_seconds_bucket" in known
    assert "tillstream_edge_events_accepted_total" in known
    assert "tillstream_consumer_lag_bucket" not in known
    used: dict[str, str] = {}
    for name, title, expr in panel_exprs():
        for sel in selectors(expr):
            used.setdefault(metric_name(sel), f"{name}: {title}")
    for rule in alert_rules():
        for sel in selectors(rule["expr"]):
            used.setdefault(metric_name(sel), f"alert {rule['alert']}")
    unknown = {metric: where for metric, where in used.items() if metric not in known}
    assert not unknown, f"not exported by the code: {unknown}"
    assert "tillstream_edge_device_up" in used and "tillstream_business_sales_amount" in used
    audit = {m for m in exported_series() if m.startswith("tillstream_audit_")}
    assert audit == {
        "tillstream_audit_flags",
        "tillstream_audit_unbalanced_store_days",
        "tillstream_audit_store_days",
    }
    assert audit <= set(used), f"audit metrics neither alerted on nor shown: {audit - set(used)}"


def test_selector_extraction() -> None:
    expr = (
        'sum by (store, le) (rate(a_bucket{store=~"$store"}[$__rate_interval])) '
        "/ on (store) group_left max by (store) (b) > bool 3 and c offset 10m "
        'or time() - hour() unless d{x="by (y)"}'
    )
    assert selectors(expr) == ['a_bucket{store=~"$store"}', "b", "c", 'd{x="by (y)"}']
