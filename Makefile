# dripiq campaign engine. `make help` lists every target.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
IMAGE_REGISTRY ?= dripiq
IMAGE_TAG ?= dev
IMAGES := planner dispatcher events edge scheduler

.PHONY: help install protos check-protos lint lint-protos typecheck format migrate run test test-unit test-deploy test-integration test-e2e images clean

help: ## List every target with what it does
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) tools/bootstrap_uv.py $(TOOLS) $(UV_VERSION)

$(VENV)/.installed: $(UV) uv.lock pyproject.toml libs/common/pyproject.toml services/*/pyproject.toml tools/devtools/pyproject.toml
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the locked dependencies

protos: $(VENV)/.installed ## Regenerate the Python contracts from protos/
	$(PY) -m dripiq_devtools.protos

check-protos: $(VENV)/.installed ## Fail when the committed contracts are stale
	$(PY) -m dripiq_devtools.protos --check

lint: $(VENV)/.installed ## Check style, common mistakes, types and protos/ (ruff, mypy, buf)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(MAKE) --no-print-directory typecheck
	$(MAKE) --no-print-directory lint-protos

typecheck: $(VENV)/.installed ## Check types (mypy with pydantic's plugin; the packages under src/)
	$(PY) -m mypy

# buf breaking reads the previous commit's protos/ from a scratch workspace holding this buf.yaml
# and a link to .venv: a bare git input (.git#ref=HEAD~1,subdir=protos) has no
# google/rpc/status.proto to import.
lint-protos: $(VENV)/.installed ## Lint protos/ (buf: STANDARD, COMMENTS) and check them for breaking changes against HEAD~1
	$(VENV)/bin/buf lint protos
	@set -o pipefail; \
	if ! git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null 2>&1; then \
		echo "lint-protos: no HEAD~1 in this clone (single-commit checkout), buf breaking skipped"; \
	else \
		against=$$(mktemp -d) && trap 'rm -rf "$$against"' EXIT && \
		git archive HEAD~1 protos | tar -x -C "$$against" && \
		cp buf.yaml "$$against/" && ln -s "$(CURDIR)/$(VENV)" "$$against/$(VENV)" && \
		echo "$(VENV)/bin/buf breaking protos --against HEAD~1:protos" && \
		$(VENV)/bin/buf breaking protos --against "$$against/protos"; \
	fi

format: $(VENV)/.installed ## Format the code and sort imports (ruff)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

migrate: $(VENV)/.installed ## Apply every service's migrations to DATABASE_URL (make run migrates its own server)
	$(PY) -m dripiq_common.migrations

run: $(VENV)/.installed ## Run the whole suite: PostgreSQL, NATS, migrations, fake SendGrid, the five processes (DRIPIQ_NATS_CLUSTER=3, DRIPIQ_REPLICAS=2: README)
	$(PY) -m dripiq_devtools run

test: $(VENV)/.installed ## Run every test (unit, integration, end-to-end) on real PostgreSQL and NATS
	$(PY) -m pytest -p no:cacheprovider

test-unit: $(VENV)/.installed ## Run the unit tests only (no servers)
	$(PY) -m pytest -p no:cacheprovider tests/unit

test-deploy: $(VENV)/.installed ## Check the Kubernetes manifests, the dashboard and the images (no servers)
	$(PY) -m pytest -p no:cacheprovider tests/deploy

test-integration: $(VENV)/.installed ## Run the integration tests only
	$(PY) -m pytest -p no:cacheprovider tests/integration

test-e2e: $(VENV)/.installed ## Run the end-to-end test only
	$(PY) -m pytest -p no:cacheprovider tests/e2e

images: ## Build one container image per process with docker: IMAGE_REGISTRY/<process>:IMAGE_TAG
	$(if $(shell command -v docker),,$(error make images needs the docker command, which is not on PATH))
	$(if $(shell docker info >/dev/null 2>&1 && echo up),,$(error make images needs a running Docker engine, and `docker info` reaches none))
	for image in $(IMAGES); do \
		docker build --file deploy/docker/Dockerfile --target $$image --build-arg UV_VERSION=$(UV_VERSION) \
			--tag $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG) . || exit 1; \
	done

clean: ## Remove .venv, the bootstrap tools and local server data under .run/
	rm -rf $(VENV) $(TOOLS) .run
