# pgha: `make help` lists the targets.
PY := .venv/bin/python
STACK ?= dev

.PHONY: help setup lab test test-unit test-components test-lab test-php machines machines-down test-machines bench-machines golden render readme-config lint down bench drill bench-failover

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## install distribution packages, venvs and the lab user (idempotent)
	bash scripts/setup.sh

lab: setup ## THE main command: set up, then bring the lab up and validate it
	$(PY) -m lab --stack $(STACK) up

down: ## stop the lab (every process it started)
	$(PY) -m lab --stack $(STACK) down

test: setup ## run every test: unit, Pulumi mocks, PHP, lab (real daemons)
	$(PY) -m pytest tests
	phpunit -c clients/php/phpunit.xml

test-unit: ## unit tests only (milliseconds)
	$(PY) -m pytest -m unit tests

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

lint: ## ruff + mypy
	$(PY) -m ruff check cloud_init components lab machines tests bench scripts examples clients/python __main__.py
	$(PY) -m mypy

bench: ## lab bring-up benchmark
	$(PY) bench/lab_bringup.py --runs 3

drill: ## every failover drill on the running lab (STACK=prod for synchronous mode)
	$(PY) -m lab --stack $(STACK) drill --all

bench-failover: ## failover benchmark: scenarios x timing profiles, min/median/max
	$(PY) bench/failover.py --runs 3

machines: ## boot every node of STACK from its rendered user-data (nspawn containers), validate (root)
	bash scripts/setup-machines.sh
	$(PY) -m machines --stack $(STACK) up

machines-down: ## stop the machines of STACK and remove everything they created
	$(PY) -m machines --stack $(STACK) down

test-machines: ## the machines boot test (skips where containers cannot run)
	$(PY) -m pytest -m machines tests

bench-machines: ## machines bring-up benchmark: nothing -> validated, min/median/max
	$(PY) bench/machines_bringup.py --runs 3
