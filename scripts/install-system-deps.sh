#!/usr/bin/env bash
# Installs the system packages the local stack needs, if missing: redis-server (Redis), a JDK and
# Maven (Kafka from its Maven jars), docker-compose (only to validate docker-compose.yml), openssl
# (certificates of the secured stack).
# Debian/Ubuntu with apt; needs root (or sudo). Safe to run again: it installs only what is absent.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
# the control-room page's browser tests (selenium drives Debian's chromium; no browser download) and the
# ops view (Prometheus and promtool, which checks the alerting rules)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v firefox-esr >/dev/null 2>&1 || missing+=(firefox-esr)  # the page's Firefox test
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# the secured devstack (`devstack up --secured`) makes its CA and certificates with openssl
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

mapfile -t missing < <(printf '%s\n' ${missing[@]+"${missing[@]}"} | awk 'NF && !seen[$0]++')
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing system packages: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} by hand" >&2; exit 1; }
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian's package may start its own redis on 6379 where an init system runs; the devstack runs its own.
if pgrep -x redis-server >/dev/null 2>&1 && command -v service >/dev/null 2>&1; then
  $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
# likewise Debian's prometheus (on 9090, with its own config): `stream-app devstack up --prometheus` runs its own
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v service >/dev/null 2>&1; then
  $SUDO service prometheus stop >/dev/null 2>&1 || true
  $SUDO service prometheus-node-exporter stop >/dev/null 2>&1 || true
fi
