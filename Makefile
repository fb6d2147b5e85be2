# pgha: `make help` lists the targets.
PY := .venv/bin/python
STACK ?= dev

.PHONY: help setup setup-machines lab test check lint format-check types fix test-fast test-unit test-tools test-components test-lab test-php golden render readme-config down bench drill bench-monitoring bench-failover machines machines-down test-machines test-machines-qemu bench-machines

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install distribution packages, venvs and the lab user (idempotent)
	bash scripts/setup.sh

lab: setup ## THE main command: set up, then bring the lab up (with backups and monitoring) and validate it
	$(PY) -m lab --stack $(STACK) up --backup

down: ## stop the lab (every process it started)
	$(PY) -m lab --stack $(STACK) down

setup-machines: ## install what the machines tier needs (systemd-nspawn, mmdebstrap; idempotent)
	bash scripts/setup-machines.sh

test: setup setup-machines ## run every test: unit, tools, Pulumi mocks, PHP, lab (real daemons), machines (booted nodes)
	$(PY) -m pytest tests
	phpunit -c clients/php/phpunit.xml

check: lint format-check types test-fast ## what CI and pre-commit run: lint, format check, mypy strict, unit + components + tools tests

lint: ## ruff check (rules and exclusions: pyproject.toml)
	$(PY) -m ruff check .

format-check: ## ruff format --check: fails on any file the formatter would change
	$(PY) -m ruff format --check .

types: ## mypy strict (files and per-module exceptions: pyproject.toml)
	$(PY) -m mypy

fix: ## ruff check --fix, then ruff format (review the diff)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test-fast: ## unit, components and tools tests (no daemons; tools come from scripts/setup.sh)
	$(PY) -m pytest -m "unit or components or tools" tests

test-unit: ## unit tests only (milliseconds, no processes)
	$(PY) -m pytest -m unit tests

test-tools: ## tests that run a real external tool (php, haproxy -c, cloud-init schema, check-jsonschema), no daemons
	$(PY) -m pytest -m tools tests

test-components: ## Pulumi mocks tests only
	$(PY) -m pytest -m components tests

test-lab: ## lab tests only (real daemons)
	$(PY) -m pytest -m lab tests

test-php: ## PHP connector unit tests
	phpunit -c clients/php/phpunit.xml

render: ## render every node's user-data and files for STACK into out/STACK
	$(PY) -m cloud_init render --stack $(STACK) --out out/$(STACK)

golden: ## update tests/golden after a deliberate template change (review the diff!)
	$(PY) -m cloud_init render --stack dev --out tests/golden/dev
	$(PY) -m cloud_init render --stack prod --out tests/golden/prod

readme-config: ## regenerate the README configuration table from the schema
	$(PY) scripts/readme_config.py

bench: ## lab bring-up benchmark
	$(PY) bench/lab_bringup.py --runs 3

drill: ## every failover drill on the running lab (STACK=prod for synchronous mode)
	$(PY) -m lab --stack $(STACK) drill --all

bench-monitoring: ## monitoring benchmark: fault-to-alert times, monitoring memory, scrape cost (min/median/max)
	$(PY) bench/monitoring.py --runs 3

bench-failover: ## failover benchmark: scenarios x timing profiles, min/median/max
	$(PY) bench/failover.py --runs 3

machines: setup setup-machines ## boot every node of STACK from its rendered user-data (nspawn containers), validate (root)
	$(PY) -m machines --stack $(STACK) up

machines-down: ## stop the machines of STACK and remove everything they created
	$(PY) -m machines --stack $(STACK) down

test-machines: ## the machines boot test (skips where containers cannot run)
	$(PY) -m pytest -m machines tests

test-machines-qemu: ## the qemu backend test: pg1 a VM, watchdog, by-id volume, frozen primary (~30 min under TCG)
	PGHA_MACHINES_QEMU=1 $(PY) -m pytest -m machines tests/machines/test_qemu.py

bench-machines: ## machines bring-up benchmark: nothing -> validated, min/median/max
	$(PY) bench/machines_bringup.py --runs 3
