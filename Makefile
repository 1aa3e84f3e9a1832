# synth_assets: `make run` builds the dataset from examples/documents, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# A corpus shard (docs/DEPLOYMENT.md, "Corpus shards"): `make run SHARD=<sub-folder>`,
# `make ui SHARD=<sub-folder>` work on that sub-folder of the documents folder, with
# its own Dagster instance, tables and exports; `make merge` merges the shards' datasets.
ifdef SHARD
export SYNTH_ASSETS_CORPUS_SHARD := $(SHARD)
DAGSTER_HOME := $(CURDIR)/.dagster_shards/$(SHARD)
endif
# Nothing at run time may reach a model hub: tokenizers and models come from local packages.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export GX_ANALYTICS_ENABLED := False
export DAGSTER_DISABLE_TELEMETRY := 1
# `make ui` listens on this machine only; DAGSTER_HOST=0.0.0.0 opens it to the network.
DAGSTER_HOST ?= 127.0.0.1

.PHONY: run test ui review env clean browser postgres redis serve serve-stop migrate merge prune

# The environment is made once and remade when pyproject.toml changes. torch is
# installed first, pinned to the CPU build: left to the resolver, docling's
# dependencies would pull a multi-GB CUDA build. (vllm brings its own torch: it is
# the optional `[vllm]` extra and never installed here.)
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

env: $(VENV)/.installed

$(DAGSTER_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $@

run: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m synth_assets.run $(ARGS)

# The UI tests drive Debian's chromium: installed here when missing and we are root
# (as in CI); elsewhere those tests are skipped with the reason.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "installing Debian's chromium for the UI tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver > /dev/null; \
	fi

# The team-deployment tests start a PostgreSQL server of their own from Debian's
# binaries: installed here when missing and we are root; elsewhere those tests skip.
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "installing Debian's postgresql for the team-deployment tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql > /dev/null; \
	fi

# The Celery-worker tests start a Redis of their own (broker and result backend) from
# Debian's redis-server: installed here when missing and we are root; elsewhere they skip.
redis:
	@if ! command -v redis-server > /dev/null && [ ! -x /usr/bin/redis-server ] && [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
		echo "installing Debian's redis-server for the Celery-worker tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server > /dev/null; \
	fi

test: env browser postgres redis
	$(PY) -m pytest -q

# With SYNTH_ASSETS_GENERATION_BACKEND=vllm_serve the generation service is started (or
# found) first, so the daemon's runs find the model loaded.
ui: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m synth_assets.serve --if-used
	$(VENV)/bin/dagster dev -w workspace.yaml -h $(DAGSTER_HOST) -p $${DAGSTER_PORT:-3000}

# The review page for domain experts (no Dagster needed), on SYNTH_ASSETS_REVIEW_PAGE_URL
# (http://127.0.0.1:8765), reading and writing the same database as make run.
review: env
	$(PY) -m synth_assets.review_page

# The generation service (SYNTH_ASSETS_GENERATION_BACKEND=vllm_serve): one `vllm serve`
# shared by every run, recorded in $(DAGSTER_HOME), stopped when idle or by serve-stop.
serve: env $(DAGSTER_HOME)/dagster.yaml
	$(PY) -m synth_assets.serve

serve-stop: env
	$(PY) -m synth_assets.serve --stop

# Copy an embedded project (its tables and its Dagster instance) into the team profile
# (docs/DEPLOYMENT.md, "Moving an embedded project"). Run with the team profile's
# environment: DAGSTER_HOME=<folder with deploy/team/dagster.yaml>, DAGSTER_PG_*,
# SYNTH_ASSETS_DUCKLAKE_CATALOG, SYNTH_ASSETS_DUCKLAKE_DATA_PATH. It reads the embedded
# tables from SYNTH_ASSETS_DUCKDB_PATH (default data/synth_assets.duckdb) and the embedded
# instance from SYNTH_ASSETS_MIGRATE_FROM_DAGSTER_HOME (default .dagster_home).
migrate: env
	$(PY) -m synth_assets.migrate

# The dataset of every corpus shard's published version, merged (synth_assets/merge.py),
# with its own Dagster instance: repeats across shards removed, checked, then published.
MERGE_HOME := $(CURDIR)/.dagster_shards/merged
$(MERGE_HOME)/dagster.yaml: dagster.yaml
	mkdir -p $(MERGE_HOME)
	cp dagster.yaml $@

merge: env $(MERGE_HOME)/dagster.yaml
	DAGSTER_HOME=$(MERGE_HOME) $(PY) -m synth_assets.merge $(ARGS)

# Old dataset versions deleted: all but the KEEP newest and the published one
# (MERGED=1: of the merged dataset, on the merge's instance).
prune: env $(if $(MERGED),$(MERGE_HOME),$(DAGSTER_HOME))/dagster.yaml
	@test -n "$(KEEP)" || { echo "make prune KEEP=N: how many of the newest versions to keep"; exit 2; }
	$(if $(MERGED),DAGSTER_HOME=$(MERGE_HOME)) $(PY) -m synth_assets.prune --keep $(KEEP) $(if $(MERGED),--merged) $(ARGS)

clean:
	rm -rf data .dagster_home .dagster_shards
