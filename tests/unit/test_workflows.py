"""The GitHub workflows are shaped as the deploy docs say, and test with `make check`
exactly as pre-commit does (parsed YAML, no tool run; their validity against GitHub's
schema: tests/tools/test_workflows.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the bare key `on` as true
    return doc


def pulumi_step(job: dict) -> dict:
    (step,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("pulumi/actions@")]
    return step["with"]


def test_preview_on_pull_requests_for_every_stack():
    doc = load("preview.yml")
    assert "pull_request" in doc["on"]
    assert doc["permissions"]["pull-requests"] == "write", "comment-on-pr needs it"
    job = doc["jobs"]["preview"]
    stacks = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
    assert job["strategy"]["matrix"]["stack"] == stacks == ["dev", "prod"]
    step = pulumi_step(job)
    assert (step["command"], step["stack-name"], step["comment-on-pr"]) == ("preview", "${{ matrix.stack }}", True)
    assert job["needs"] == "test"


def test_deploy_dev_then_prod_with_approval():
    doc = load("deploy.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    jobs = doc["jobs"]
    assert (pulumi_step(jobs["dev"])["command"], pulumi_step(jobs["dev"])["stack-name"]) == ("up", "dev")
    assert (pulumi_step(jobs["prod"])["command"], pulumi_step(jobs["prod"])["stack-name"]) == ("up", "prod")
    assert jobs["prod"]["environment"] == "production", "manual approval: required reviewers on the environment"
    assert jobs["prod"]["needs"] == "dev"
    assert jobs["dev"]["needs"] == ["runner", "test"]
    # The validation SSHes through the bastion from the runner: only a configured runner.
    for name in ("dev", "prod"):
        assert jobs[name]["runs-on"] == "${{ vars.PGHA_DEPLOY_RUNNER }}", name
    check = jobs["runner"]["steps"][0]
    assert check["env"]["RUNNER_LABEL"] == "${{ vars.PGHA_DEPLOY_RUNNER }}"
    assert '[ -z "$RUNNER_LABEL" ]' in check["run"]
    assert "exit 1" in check["run"]
    assert doc["concurrency"]["cancel-in-progress"] is False, "never cancel a running pulumi up"
    for name in ("dev", "prod"):
        assert "OVH_CLOUD_PROJECT_SERVICE" in jobs[name]["env"], name
        assert jobs[name]["env"]["PGHA_ROLL"] == "${{ inputs.roll }}", name
    assert "roll" in doc["on"]["workflow_dispatch"]["inputs"]


def make_targets() -> dict[str, str]:
    """Makefile target -> its line (prerequisites and ## help)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    return {line.split(":", 1)[0]: line for line in lines if re.match(r"^[a-z][a-z-]*:", line)}


@pytest.mark.parametrize("name", ["preview.yml", "deploy.yml"])
def test_ci_runs_make_check_after_the_projects_setup(name):
    steps = load(name)["jobs"]["test"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    assert runs == ["bash scripts/setup.sh", "make check"], "CI checks exactly what a developer's `make check` does"


def test_make_check_is_lint_format_types_and_the_fast_tests():
    targets = make_targets()
    assert "##" in targets["check"]
    prerequisites = targets["check"].split(":", 1)[1].split("##")[0].split()
    assert prerequisites == ["lint", "format-check", "types", "test-fast"]
    makefile = (ROOT / "Makefile").read_text()
    assert '-m pytest -m "unit or components or tools" tests' in makefile


def test_pre_commit_runs_the_make_check_targets():
    hooks = [
        h for repo in yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"] for h in repo["hooks"]
    ]
    entries = [h["entry"].split() for h in hooks]
    assert all(e[:2] == ["make", "-s"] for e in entries), "hooks go through the Makefile, with the project's venv"
    check = make_targets()["check"].split(":", 1)[1].split("##")[0].split()
    assert [e[2] for e in entries] == check, "pre-commit runs exactly the targets of `make check`"


def test_preview_uses_read_only_credentials():
    env = load("preview.yml")["jobs"]["preview"]["env"]
    for key in ("OVH_APPLICATION_KEY", "OVH_APPLICATION_SECRET", "OVH_CONSUMER_KEY", "OS_USERNAME", "OS_PASSWORD"):
        assert env[key] == f"${{{{ secrets.{key}_READONLY }}}}", key
