#!/usr/bin/env bash
# Builds, where missing, what docker-compose.yml needs on a machine that cannot pull images, and prints
# the variables that point docker-compose.yml at them (source its output, or let scripts/test-compose.sh):
#   localhost/casting-defect-stream/debian   Debian (minbase, python3) from Debian's packages by mmdebstrap
#   localhost/casting-defect-stream/kafka    the broker from the devstack's Maven jars (compose/kafka)
#   localhost/casting-defect-stream/redis    Debian's redis-server (compose/redis)
#   .wheelhouse/                             every wheel the app images install, filled by the host's pip
# The host's own pip settings (index, certificates) fill the wheelhouse; the image builds then need no
# package index. The images' apt-get reaches Debian's mirror (DEBIAN_MIRROR) through the host's network.
# Run it again after changing pyproject.toml or constraints.txt: the wheelhouse is refilled.
set -euo pipefail
cd "$(dirname "$0")/.."
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PREFIX=localhost/casting-defect-stream
BASE="$PREFIX/debian:$DEBIAN_SUITE"
KAFKA_POM=stream_app/tools/resources/kafka-pom.xml
PY=.venv/bin/python

say() { echo "compose-images: $*" >&2; }

if ! podman image exists "$BASE"; then
  say "building $BASE with mmdebstrap from $DEBIAN_MIRROR (a few minutes)"
  rootfs="$(mktemp --suffix=.tar)"
  trap 'rm -f "$rootfs"' EXIT
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,passwd,python3,python3-venv \
    "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" </dev/null >&2
  podman import --change 'CMD ["/bin/bash"]' "$rootfs" "$BASE" >/dev/null
  rm -f "$rootfs"
fi

kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")"
if ! podman image exists "$PREFIX/kafka:$kafka_version"; then
  libs=compose/kafka/libs
  if ! ls "$libs"/kafka-tools-*.jar >/dev/null 2>&1; then
    say "fetching the Kafka $kafka_version jars with Maven into $libs"
    rm -rf "$libs"
    mvn -q -B -f "$KAFKA_POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$PWD/$libs" >&2
    # kafka-tools: BrokerApiVersionsCommand, for the compose health check (its dependencies are the broker's)
    mvn -q -B -f "$KAFKA_POM" dependency:copy -Dartifact="org.apache.kafka:kafka-tools:$kafka_version" \
      -DoutputDirectory="$PWD/$libs" >&2
  fi
  say "building $PREFIX/kafka:$kafka_version"
  podman build -q --build-arg BASE_IMAGE="$BASE" -t "$PREFIX/kafka:$kafka_version" compose/kafka >&2
fi

if ! podman image exists "$PREFIX/redis:$DEBIAN_SUITE"; then
  say "building $PREFIX/redis:$DEBIAN_SUITE"
  podman build -q --build-arg BASE_IMAGE="$BASE" -t "$PREFIX/redis:$DEBIAN_SUITE" compose/redis >&2
fi

stamp=.wheelhouse/.filled
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
  say "filling .wheelhouse with the host's pip (from its cache where it can)"
  mkdir -p .wheelhouse
  "$PY" -m pip wheel -q -c constraints.txt -w .wheelhouse '.[dev]' >&2
  # the build backend of `pip install -e .`, which pip fetches in its isolated build environment
  "$PY" -m pip download -q -d .wheelhouse 'setuptools>=68' wheel >&2
  rm -f .wheelhouse/casting_defect_stream-*.whl  # the project itself is installed from the source
  touch "$stamp"
fi

cat <<VARS
export KAFKA_IMAGE=$PREFIX/kafka:$kafka_version
export REDIS_IMAGE=$PREFIX/redis:$DEBIAN_SUITE
export BASE_IMAGE=$BASE
export WHEELHOUSE=.wheelhouse
VARS
