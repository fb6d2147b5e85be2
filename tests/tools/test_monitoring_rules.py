"""pgha's alert rules, checked by Prometheus' own tools: ``promtool test rules`` runs the
firing and non-firing cases of tests/tools/monitoring/pgha.rules.test.yml against the rules
rendered for the prod stack; ``promtool check config`` and ``amtool check-config`` read
the rendered Prometheus and Alertmanager configs, for both stacks and with receivers."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud_init.monitoring import alert_names, dashboard_exprs, monitoring_files, rules
from pgha.settings import Settings, load_stack_file
from pgha.target import Target

pytestmark = pytest.mark.tools

CASES = Path(__file__).parent / "monitoring" / "pgha.rules.test.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run scripts/setup.sh")
    return path


def write_rendered(settings: Settings, out: Path, smtp_password: str | None = None) -> Path:
    """The monitoring host's files under ``out``; returns its etc dir."""
    target = Target.vm(settings)
    for f in monitoring_files(settings, target, "CA PLACEHOLDER", smtp_password):
        dest = out / f.path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(f.content)
    return out / target.monitoring.etc_dir.lstrip("/")


def cases_with_annotations(settings: Settings) -> dict[str, Any]:
    """The test cases, each expected alert given the annotations its rendered rule produces."""
    annotations = {
        r["alert"]: {k: v for k, v in r["annotations"].items() if k != "description"}
        for g in rules(settings, Target.vm(settings))["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    doc: dict[str, Any] = yaml.safe_load(CASES.read_text())
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            for alert in check["exp_alerts"]:
                alert["exp_annotations"] = annotations[check["alertname"]]
    return doc


def strip_descriptions(rules_file: Path) -> None:
    """promtool compares annotations exactly; the description (labels templated in) is
    checked by Prometheus in the lab, the summary and runbook here."""
    doc = yaml.safe_load(rules_file.read_text())
    for g in doc["groups"]:
        for r in g["rules"]:
            r.get("annotations", {}).pop("description", None)
    rules_file.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_every_alert_has_firing_and_quiet_cases() -> None:
    settings = load_stack_file("prod")
    doc = yaml.safe_load(CASES.read_text())
    fires = {c["alertname"] for t in doc["tests"] for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in doc["tests"] for c in t["alert_rule_test"] if not c["exp_alerts"]}
    names = set(alert_names(settings, Target.vm(settings)))
    assert names - fires == set(), "alerts without a case where they fire"
    assert names - quiet == set(), "alerts without a case where they stay quiet"
    assert (fires | quiet) - names == set(), "cases for alerts that do not exist"


def test_promtool_rule_cases_pass(tmp_path: Path) -> None:
    settings = load_stack_file("prod")
    etc = write_rendered(settings, tmp_path)
    rules_file = tmp_path / "pgha.rules.yml"
    shutil.copy(etc / "rules" / "pgha.rules.yml", rules_file)
    strip_descriptions(rules_file)
    test_file = tmp_path / "pgha.rules.test.yml"
    test_file.write_text(yaml.safe_dump(cases_with_annotations(settings), sort_keys=False))
    p = subprocess.run([tool("promtool"), "test", "rules", str(test_file)], check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_rendered_configs_pass_promtool_and_amtool(stack: str, tmp_path: Path) -> None:
    settings = load_stack_file(stack)
    etc = write_rendered(settings, tmp_path)
    for cmd in (
        [tool("promtool"), "check", "config", str(etc / "prometheus.yml")],
        [tool("promtool"), "check", "rules", str(etc / "rules" / "pgha.rules.yml")],
        [tool("amtool"), "check-config", str(etc / "alertmanager.yml")],
    ):
        p = subprocess.run(cmd, check=False, capture_output=True, text=True)
        assert p.returncode == 0, f"{' '.join(cmd)}:\n{p.stdout}{p.stderr}"


def test_alertmanager_with_webhook_and_email_passes_amtool(tmp_path: Path) -> None:
    base = load_stack_file("prod")
    am = dataclasses.replace(
        base.monitoring.alertmanager,
        webhook_url="https://hooks.example.com/pgha",
        email_to=("oncall@example.com",),
        email_from="pgha@example.com",
        smarthost="smtp.example.com:587",
        smtp_username="pgha",
    )
    settings = dataclasses.replace(base, monitoring=dataclasses.replace(base.monitoring, alertmanager=am))
    etc = write_rendered(settings, tmp_path, smtp_password="s3cret-for-test")
    p = subprocess.run(
        [tool("amtool"), "check-config", str(etc / "alertmanager.yml")], check=False, capture_output=True, text=True
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 receivers" in p.stdout
    doc = yaml.safe_load((etc / "alertmanager.yml").read_text())
    (receiver,) = doc["receivers"]
    assert receiver["webhook_configs"][0]["url"] == "https://hooks.example.com/pgha"
    assert receiver["email_configs"][0]["auth_password"] == "s3cret-for-test"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each dashboard query as a recording rule's expression."""
    exprs = dashboard_exprs()
    doc = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"pgha:dashboard_{i}", "expr": e} for i, e in enumerate(exprs.values())],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(doc))
    p = subprocess.run([tool("promtool"), "check", "rules", str(path)], check=False, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{len(exprs)} rules found" in p.stdout
