#!/usr/bin/env bash
# Starts a KRaft broker configured as the official apache/kafka image is: every environment variable
# KAFKA_<NAME> becomes the property <name> (_ -> ".", __ -> "_", ___ -> "-"); CLUSTER_ID names the
# cluster; KAFKA_HEAP_OPTS sets the heap. The storage is formatted on first start only.
set -euo pipefail
props=/opt/kafka/config/server.properties
: > "$props"
while IFS='=' read -r var _; do
  case "$var" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  name="${var#KAFKA_}"
  name="${name,,}"
  name="${name//___/-}"
  name="${name//__/@}"
  name="${name//_/.}"
  name="${name//@/_}"
  printf '%s=%s\n' "$name" "${!var}" >> "$props"
done < <(env)
grep -q '^log.dirs=' "$props" || echo "log.dirs=/var/lib/kafka/data" >> "$props"

java_cmd=(java -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*')
log_dir="$(sed -n 's/^log.dirs=//p' "$props" | cut -d, -f1)"
if [ ! -f "$log_dir/meta.properties" ]; then
  "${java_cmd[@]}" -Xmx256m kafka.tools.StorageTool format -t "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" -c "$props"
fi
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS holds several JVM options
exec "${java_cmd[@]}" ${KAFKA_HEAP_OPTS:--Xmx512m -Xms512m} kafka.Kafka "$props"
