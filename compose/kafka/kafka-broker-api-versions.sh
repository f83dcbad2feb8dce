#!/usr/bin/env bash
# The official image's tool of this name (docker-compose.yml's Kafka health check runs it).
exec java -Xmx128m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*' \
  org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
