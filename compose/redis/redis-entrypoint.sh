#!/bin/sh
# As the official image's entrypoint: `redis-server ...` without a config file gets --protected-mode no.
set -e
if [ "$1" = "redis-server" ]; then
  case "$2" in *.conf) ;; *) shift; set -- redis-server "$@" --protected-mode no ;; esac
fi
exec "$@"
