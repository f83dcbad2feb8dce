# The two commands a user needs:   make demo   (the main job)   and   make test   (everything, from scratch)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY := .venv/bin/python
APP := .venv/bin/stream-app
STAMP := .venv/.installed

.PHONY: help install services services-secured services-cluster down status test test-unit test-cluster lint compose-check demo clean

help:
	@echo "make demo      - install, start Kafka+Redis, run the worker and the simulator, show predictions"
	@echo "make test      - install, start Kafka+Redis, run lint, compose check and the test suite (all but cluster)"
	@echo "make install   - system packages (apt), .venv with the project and its pinned dependencies"
	@echo "make services  - start the local Kafka and Redis (stream-app devstack up)"
	@echo "make down      - stop them"
	@echo "make dashboard - serve the control-room page on http://127.0.0.1:8050/ (stream-app dashboard)"
	@echo "make ops       - Kafka+Redis plus Prometheus with the alerting rules on http://127.0.0.1:9090/"
	@echo "make services-secured - the secured stack too: Kafka SASL_SSL, Redis TLS + ACL user (make test starts it)"
	@echo "make test-cluster - the clustered stack (3 Kafka brokers, a Redis Cluster of 3 masters) and the tests marked cluster"

$(STAMP): pyproject.toml constraints.txt
	./scripts/install-system-deps.sh
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

services: install
	$(APP) devstack up

# Kafka SASL_SSL (SCRAM-SHA-512) on 9094 and Redis TLS + ACL user on 6380; `make test` runs the tests marked
# `secured` against it. Certificates, passwords and the clients' settings: .devstack/secured/
services-secured: install
	$(APP) devstack up --secured

# the clustered stack: three Kafka brokers (KRaft, replication 3, min ISR 2) on 19092-19094 and a Redis Cluster
# of three masters on 17001-17003; the tests marked `cluster` use them
services-cluster: install
	$(APP) devstack up --kafka-cluster
	$(APP) devstack up --redis-cluster

down:
	-$(APP) devstack down
	-$(APP) devstack down --secured
	-$(APP) devstack down --kafka-cluster
	-$(APP) devstack down --redis-cluster

status:
	$(APP) devstack status

lint: install
	.venv/bin/ruff check .

compose-check: install
	docker-compose -f docker-compose.yml config -q
	docker-compose -f docker-compose.yml --profile ops config -q
	@echo "docker-compose.yml: valid"

test-unit: install
	.venv/bin/pytest -m "not integration"

test: lint compose-check services services-secured
	.venv/bin/pytest -m "not cluster"

# broker and master failures, many workers, against the clustered stack (about 5 min); CI runs it once, separately
test-cluster: services services-cluster
	.venv/bin/pytest -m cluster

demo: install
	$(APP) demo

clean: down
	rm -rf .devstack

# ---- benchmarks (bench/); each prints its table and writes it, with the machine, into docs/BENCHMARKS.md
.PHONY: bench-peer-env bench-peer bench-scoring bench-ingest bench-replay bench-e2e bench-gpu bench-uea chaos

bench-scoring: services
	$(PY) bench/bench_scoring.py --doc

bench-ingest: services
	$(PY) bench/bench_ingest.py --doc

bench-replay: services
	$(PY) bench/bench_replay.py --doc

# the Quix Streams peer's own environment: quixstreams 3.28.1 pins pydantic < 2.14, the project uses 2.14
.venv-quix/.installed: bench/requirements-peer.txt
	test -x .venv-quix/bin/python || python3 -m venv .venv-quix
	.venv-quix/bin/python -m pip install -q -r bench/requirements-peer.txt
	touch $@

bench-peer-env: .venv-quix/.installed

# the worker and its ceiling beside Quix Streams (both variants), same topic data, one run
bench-peer: services bench-peer-env
	$(PY) bench/bench_ingest.py --peer --no-naive --chunks 1 50 --doc

bench-e2e: services
	$(PY) bench/bench_e2e.py --doc

bench-gpu: services
	bench/gpu.sh

# the dataset-file recipe on five UCR/UEA sets through stream-app train/evaluate (table for docs/MODEL.md)
bench-uea: install
	nice $(PY) bench/bench_uea.py --out runs/uea-v5-seed0 --budget-s 600 --threads 1 --seed 0

# faults at random (Redis, broker, workers) under a steady stream for 10 minutes, then a reconciliation
chaos: services
	$(PY) bench/chaos.py --minutes 10 --doc

# ---- live monitoring: the control-room page, and Prometheus (Debian's package) with configs/prometheus-alerts.yml
.PHONY: dashboard ops

dashboard: install
	$(APP) dashboard

ops: install
	$(APP) devstack up --prometheus
# ---- docker-compose.yml run for real: podman-compose, images built locally (README "docker compose")
.PHONY: test-compose

test-compose: install
	./scripts/test-compose.sh
