#!/usr/bin/env bash
# What `make test-compose` needs on a Debian machine without Docker: podman and podman-compose to run
# docker-compose.yml, runc, the CNI dnsname plugin, mmdebstrap to build the local Debian base image,
# Maven and a JRE for the Kafka jars (scripts/install-system-deps.sh), and podman settings that work
# inside an unprivileged container host. Needs root (or sudo). Safe to run again: installs only what
# is absent, writes the settings only when they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-system-deps.sh

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root or sudo to set up podman" >&2; exit 1; }
  SUDO=sudo
fi

missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v podman-compose >/dev/null 2>&1 || missing+=(podman-compose)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
# name resolution between containers (kafka, redis by service name) on podman's CNI network backend
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing system packages: ${missing[*]}"
  command -v apt-get >/dev/null 2>&1 || { echo "no apt-get: install ${missing[*]} by hand" >&2; exit 1; }
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# crun fails where cgroups are in hybrid mode ("cgroups in hybrid mode not supported"): use runc.
# podman's default ulimits (nofile, nproc) are refused in a container host without CAP_SYS_RESOURCE
# ("setrlimit ... Operation not permitted"): inherit the host's limits instead.
conf_dir=/etc/containers/containers.conf.d
conf="$conf_dir/50-casting-defect-stream.conf"
want='# written by scripts/install-compose-deps.sh (casting-defect-stream)
[containers]
default_ulimits = []

[engine]
runtime = "runc"'
if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
  echo "writing $conf"
  $SUDO mkdir -p "$conf_dir"
  printf '%s\n' "$want" | $SUDO tee "$conf" >/dev/null
fi
