"""The Prometheus alert rules: promtool checks them and runs their unit tests.

promtool comes from Debian's `prometheus` package; without it these tests fail with
the command that installs it.
"""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_dashboard import exported_metric_names, metric_names_in

ROOT = Path(__file__).parent.parent
RULES = ROOT / "helm/toloka-bridge/files/alerts.yaml"
RULE_TESTS = sorted((ROOT / "tests/promtool").glob("*.yaml"))
PROMETHEUS_OWN_SERIES = {"up"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is missing: install it with "
            "`apt-get update && apt-get install -y prometheus`",
            pytrace=False,
        )
    return path


def run_promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *arguments],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for group in load_yaml(RULES)["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def rule_test_cases() -> list[dict[str, Any]]:
    return [case for path in RULE_TESTS for case in load_yaml(path)["tests"]]


@pytest.mark.prometheus
def test_promtool_accepts_the_rules() -> None:
    """`promtool check rules` finds the file valid."""
    result = run_promtool("check", "rules", str(RULES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """`promtool test rules` runs every file under tests/promtool/."""
    assert RULE_TESTS, "no promtool tests found"

    result = run_promtool("test", "rules", *map(str, RULE_TESTS))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_every_alert_has_a_test_where_it_fires_and_one_where_it_does_not() -> None:
    """Each alert name appears in a firing and in a silent promtool expectation."""
    firing: set[str] = set()
    silent: set[str] = set()
    for case in rule_test_cases():
        for expectation in case.get("alert_rule_test", []):
            name = expectation["alertname"]
            (firing if expectation.get("exp_alerts") else silent).add(name)

    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never seen firing"
    assert names - silent == set(), "alerts never seen silent"


def test_every_alert_has_a_severity_a_summary_and_a_description() -> None:
    """Alertmanager routes on severity; people read summary and description."""
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_alert_expressions_read_only_metrics_the_bridge_exports() -> None:
    """A renamed metric cannot leave an alert silently watching nothing."""
    exported = exported_metric_names()

    for rule in alert_rules():
        names = metric_names_in(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported, (rule["alert"], names - exported)


def test_rule_tests_feed_series_the_bridge_exports() -> None:
    """The promtool inputs use the real metric names, so they test real alerts."""
    allowed = exported_metric_names() | PROMETHEUS_OWN_SERIES

    for case in rule_test_cases():
        for series in case["input_series"]:
            name = series["series"].split("{")[0]
            assert name in allowed, series["series"]
