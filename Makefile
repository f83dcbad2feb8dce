# The two commands a user needs:   make demo   (the main job)   and   make test   (everything, from scratch)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
APP := .venv/bin/stream-app
STAMP := .venv/.installed

.PHONY: help install services down status test test-unit lint compose-check demo clean

help:
	@echo "make demo      - install, start Kafka+Redis, run the worker and the simulator, show predictions"
	@echo "make test      - install, start Kafka+Redis, run lint, compose check and the whole test suite"
	@echo "make install   - system packages (apt), .venv with the project and its pinned dependencies"
	@echo "make services  - start the local Kafka and Redis (stream-app devstack up)"
	@echo "make down      - stop them"

$(STAMP): pyproject.toml constraints.txt
	./scripts/install-system-deps.sh
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

services: install
	$(APP) devstack up

down:
	-$(APP) devstack down

status:
	$(APP) devstack status

lint: install
	.venv/bin/ruff check .

compose-check: install
	docker-compose -f docker-compose.yml config -q
	@echo "docker-compose.yml: valid"

test-unit: install
	.venv/bin/pytest -m "not integration"

test: lint compose-check services
	.venv/bin/pytest

demo: install
	$(APP) demo

clean: down
	rm -rf .devstack

# ---- benchmarks (bench/); each prints its table and writes it, with the machine, into docs/BENCHMARKS.md
.PHONY: bench-scoring bench-ingest bench-e2e bench-gpu chaos

bench-scoring: services
	$(PY) bench/bench_scoring.py --doc

bench-ingest: services
	$(PY) bench/bench_ingest.py --doc

bench-e2e: services
	$(PY) bench/bench_e2e.py --doc

bench-gpu: services
	bench/gpu.sh

# faults at random (Redis, broker, workers) under a steady stream for 10 minutes, then a reconciliation
chaos: services
	$(PY) bench/chaos.py --minutes 10 --doc

# ---- docker-compose.yml run for real: podman-compose, images built locally (README "docker compose")
.PHONY: test-compose

test-compose: install
	./scripts/test-compose.sh
