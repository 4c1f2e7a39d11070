#!/usr/bin/env bash
# A throw-away PostgreSQL 15 cluster for the test suite, from the machine's server binaries.
#   postgres.sh start DIR   initdb in DIR (as the `postgres` user when run as root), start it on
#                           a free loopback port, print its URL (postgres://…/postgres)
#   postgres.sh stop DIR    stop it and delete DIR
# Installs Debian's `postgresql` package when the binaries are missing (apt-get update first).
set -euo pipefail
action="${1:?usage: postgres.sh start|stop DIR}"
dir="${2:?usage: postgres.sh start|stop DIR}"

bin=""
for candidate in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$candidate/initdb" ]; then bin="$candidate"; break; fi
done

# Runs a server binary as the cluster's owner: never root (PostgreSQL refuses it).
as_owner() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$action" in
start)
    if [ -z "$bin" ]; then
        echo "[postgres] installing postgresql" >&2
        apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
        for candidate in /usr/lib/postgresql/*/bin; do
            if [ -x "$candidate/initdb" ]; then bin="$candidate"; break; fi
        done
    fi
    [ -n "$bin" ] || { echo "[postgres] no initdb found" >&2; exit 1; }
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale >/dev/null
    # A free loopback port: ask the kernel for one.
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    # Sized for the suite: many test databases and connections at once, no durability needed
    # beyond a killed test (fsync off keeps 2 cores on the tests). TESSERA_PG_DURABLE=1 keeps
    # PostgreSQL's defaults (every commit flushed): for benchmarks.
    speed="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${TESSERA_PG_DURABLE:-0}" = 1 ] && speed=""
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=400 -c shared_buffers=256MB $speed" \
        start >/dev/null
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: postgres.sh start|stop DIR" >&2
    exit 2
    ;;
esac
