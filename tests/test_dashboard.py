"""The Grafana dashboard: valid JSON, the datasource as a variable, real metric names.

The exported names come from a live BridgeMetrics registry, so renaming a metric
without fixing the dashboard fails here.
"""

import functools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bridge.config import Config
from bridge.metrics import BridgeMetrics

DASHBOARD = Path(__file__).parent.parent / "helm/toloka-bridge/files/dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_BUILTIN = json.dumps({"type": "grafana", "uid": "-- Grafana --"})
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count", ""),
    "info": ("_info",),
    "unknown": ("",),
}
PROMQL_WORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
}


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """Every sample name a BridgeMetrics registry can expose (`_created` aside)."""
    registry = CollectorRegistry()
    BridgeMetrics(registry, Config())
    return frozenset(
        family.name + suffix
        for family in registry.collect()
        for suffix in SAMPLE_SUFFIXES[family.type]
    )


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (Grafana variables allowed)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )
    text = re.sub(r"\$\{?\w+\}?", " ", text)

    names = set()
    for match in re.finditer(r"[0-9][0-9.eE+-]*[a-z]*|[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group()
        follows = text[match.end() :].lstrip()
        if word[0].isdigit() or word.lower() in PROMQL_WORDS or follows[:1] == "(":
            continue
        names.add(word)
    return names


def datasources_in(node: Any) -> set[str]:
    """Every `datasource` value anywhere in the document, as JSON text."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                found.add(json.dumps(value))
            found |= datasources_in(value)
    elif isinstance(node, list):
        for item in node:
            found |= datasources_in(item)
    return found


def load_dashboard() -> dict[str, Any]:
    with DASHBOARD.open(encoding="utf-8") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and the panels inside collapsed rows."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


def test_metric_name_extraction_understands_promql() -> None:
    """Functions, label matchers, ranges, label lists and variables are not names."""
    expr = (
        'histogram_quantile(0.95, sum by (operation_type, le) (rate(a_bucket{x=~"$v",'
        ' y="b_total"}[$__rate_interval]))) / on(job) group_left(version) b_info'
        " > 3 * time() - c offset 5m and d"
    )

    assert metric_names_in(expr) == {"a_bucket", "b_info", "c", "d"}


def test_dashboard_is_grafana_10_json_with_the_expected_rows() -> None:
    """Schema 39 (Grafana 10.3+), a unique uid, an operations and a bridge row."""
    dashboard = load_dashboard()

    assert dashboard["schemaVersion"] >= 38
    assert dashboard["uid"] == "toloka-bridge"
    rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
    assert [title.split(":")[0] for title in rows] == ["Operations", "Bridge"]
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_dashboard_takes_its_datasource_from_a_template_variable() -> None:
    """Panels, queries and variables use ${datasource}; no datasource uid is fixed."""
    dashboard = load_dashboard()
    variables = {item["name"]: item for item in dashboard["templating"]["list"]}

    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    assert datasources_in(dashboard) <= {json.dumps(DATASOURCE), GRAFANA_BUILTIN}


def test_every_panel_has_a_query_and_a_place() -> None:
    """No empty panels; each panel sits inside the 24-column grid."""
    dashboard = load_dashboard()

    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]


@pytest.mark.parametrize(
    ("title", "expr"), panel_queries(load_dashboard()), ids=lambda item: str(item)
)
def test_panel_queries_read_only_metrics_the_bridge_exports(
    title: str, expr: str
) -> None:
    """Each metric name in a panel query is one BridgeMetrics exposes."""
    names = metric_names_in(expr)

    assert names, f"{title}: no metric in {expr!r}"
    assert names <= exported_metric_names(), (
        f"{title}: {names - exported_metric_names()}"
    )


def test_variable_queries_read_exported_metrics() -> None:
    """The instance and operation_type variables list label values of real metrics."""
    dashboard = load_dashboard()
    exported = exported_metric_names()

    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = re.fullmatch(r"label_values\((\w+), (\w+)\)", variable["definition"])
        assert match is not None, variable["definition"]
        assert match.group(1) in exported
