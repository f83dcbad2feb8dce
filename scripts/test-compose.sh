#!/usr/bin/env bash
# `make test-compose`: docker-compose.yml run for real with podman-compose, on a machine that cannot pull
# images. Builds what is missing (scripts/compose-images.sh; cached afterwards), brings Kafka, Redis and
# the worker up and waits for their health checks, runs the integration-tests service against them
# (kafka and redis by service name), then from the host (compose/tests): the simulator's castings come out
# as predictions, a killed worker container restarted by compose loses nothing, a Redis restarted by
# compose keeps its windows. Prints a summary and tears everything down, also on failure or Ctrl-C.
# Variables: COMPOSE_PROJECT (casting-defect-stream), WORKER_METRICS_PORT (9464), KAFKA_HOST_PORT (29092),
# PYTEST_ARGS (extra arguments for the integration-tests service, e.g. "-x -k faults").
set -euo pipefail
cd "$(dirname "$0")/.."
export COMPOSE_PROJECT="${COMPOSE_PROJECT:-casting-defect-stream}"
export WORKER_METRICS_PORT="${WORKER_METRICS_PORT:-9464}" KAFKA_HOST_PORT="${KAFKA_HOST_PORT:-29092}"
COMPOSE=(podman-compose -p "$COMPOSE_PROJECT" -f docker-compose.yml)
TESTS_CONTAINER="${COMPOSE_PROJECT}_integration-tests_run"
started=$(date +%s)
summary=()
current=""

# podman-compose, its output dropped but for errors; podman's complaint that it cannot set health check
# timers without systemd, and podman-compose's look for a volume before creating it, are expected here
compose_quiet() {
  "${COMPOSE[@]}" "$@" 2> >(grep -v -E 'systemd connection|no such volume' >&2) >/dev/null
}

elapsed() { echo "$(( $(date +%s) - $1 ))s"; }

# run_step NAME COMMAND...: runs it, records PASS/FAIL with its duration; a failure ends the run
run_step() {
  local name=$1 t0
  shift
  t0=$(date +%s)
  current="$name"
  echo "=== $name"
  if "$@"; then
    summary+=("PASS  $name ($(elapsed "$t0"))")
  else
    summary+=("FAIL  $name ($(elapsed "$t0"))")
    current=""
    return 1
  fi
  current=""
}

teardown() {
  local rc=$?
  trap - EXIT INT TERM
  [ -n "$current" ] && summary+=("STOP  $current (interrupted)")
  echo "=== tearing down the stack (project $COMPOSE_PROJECT)"
  podman rm -f "$TESTS_CONTAINER" >/dev/null 2>&1 || true
  "${COMPOSE[@]}" down -v >/dev/null 2>&1 || true
  podman network rm -f "${COMPOSE_PROJECT}_default" >/dev/null 2>&1 || true
  echo "=== summary (total $(elapsed "$started"))"
  printf '  %s\n' "${summary[@]}"
  [ "$rc" -eq 0 ] && echo "compose: all passed" || echo "compose: FAILED (exit $rc)"
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

images() {
  ./scripts/install-compose-deps.sh
  local vars
  vars="$(./scripts/compose-images.sh)"
  eval "$vars"
  echo "$vars"
  # Each build of changed dependencies leaves the previous images behind untagged (several GB each, torch):
  # drop those, or the disk fills up run after run (a build failed on a full disk). Then untag the app images:
  # a build that fails (podman-compose does not pass on its failure) must leave no image of an older commit
  # to be tested instead; untagged, they still serve the build as its layer cache, and the next run drops them.
  podman image prune -f >/dev/null
  for service in worker simulator integration-tests; do
    if podman image exists "${COMPOSE_PROJECT}_${service}"; then podman untag "${COMPOSE_PROJECT}_${service}"; fi
  done
  # podman-compose builds every service with a build section; the layer cache makes repeats quick
  compose_quiet build worker simulator integration-tests
  for service in worker simulator integration-tests; do
    podman image exists "${COMPOSE_PROJECT}_${service}" || { echo "image of $service not built" >&2; return 1; }
  done
  podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E "casting-defect-stream|${COMPOSE_PROJECT}_"
}

wait_healthy() {  # podman runs compose health checks on a timer only under systemd: run them here
  local service deadline=$(( $(date +%s) + 300 ))
  for service in "$@"; do
    until podman healthcheck run "${COMPOSE_PROJECT}_${service}_1" >/dev/null 2>&1; do
      if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "$service not healthy after 300s; its log:" >&2
        podman logs --tail 40 "${COMPOSE_PROJECT}_${service}_1" >&2 || true
        return 1
      fi
      sleep 2
    done
    echo "$service healthy"
  done
}

up() {
  # podman-compose ignores depends_on conditions, so the worker starts with Kafka and Redis (its start-up
  # waits for them); then each service's health check is waited for
  compose_quiet up -d --no-build worker
  wait_healthy kafka redis worker
}

integration_tests() {
  # shellcheck disable=SC2086  # PYTEST_ARGS holds several arguments
  compose_quiet run -d -T --no-deps --name "$TESTS_CONTAINER" integration-tests -q ${PYTEST_ARGS:-}
  podman logs -f "$TESTS_CONTAINER" || true
  local rc
  rc="$(podman wait "$TESTS_CONTAINER")"
  echo "integration-tests exited $rc"
  [ "$rc" -eq 0 ]
}

host_tests() {
  .venv/bin/python -m pytest -q -p no:cacheprovider compose/tests
}

run_step "images (build what is missing)" images
run_step "stack up and healthy (kafka, redis, worker)" up
run_step "integration-tests service (pytest -m integration in compose)" integration_tests
run_step "from the host: simulator -> predictions, worker kill, Redis restart" host_tests
