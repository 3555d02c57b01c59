#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL cluster:
#   keyserver/scripts/pg.sh COMMAND [ARGS...]
# Creates a cluster in a temporary directory (as the current user, or as
# `postgres` through su when run as root), listening on a free loopback
# port and on a unix socket in that directory, runs COMMAND with
# KEYSERVER_PG_URL=postgres://postgres@127.0.0.1:PORT (no database: append
# /DBNAME), then stops the cluster and removes the directory.
# Needs the PostgreSQL server binaries (Debian: apt-get install postgresql).
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi

bindir=""
for d in /usr/lib/postgresql/*/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then bindir="$d"; fi
done
if [ -z "$bindir" ]; then
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        bindir="$(dirname "$(command -v initdb)")"
    else
        echo "pg.sh: PostgreSQL server binaries (initdb, pg_ctl) not found; install the postgresql package" >&2
        exit 1
    fi
fi

dir="$(mktemp -d /tmp/rk-pg.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        su postgres -s /bin/sh -c "$*"
    else
        sh -c "$*"
    fi
}

if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
fi
chmod 700 "$dir"

stop() {
    as_owner "'$bindir/pg_ctl' -D '$dir/data' -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

as_owner "'$bindir/initdb' -D '$dir/data' -U postgres --auth=trust --no-sync -E UTF8" >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
as_owner "'$bindir/pg_ctl' -D '$dir/data' -l '$dir/server.log' -w -t 60 start \
    -o \"-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$dir' -c max_connections=200\"" >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }

export KEYSERVER_PG_URL="postgres://postgres@127.0.0.1:$port"
echo "pg.sh: PostgreSQL ($bindir) on 127.0.0.1:$port, socket in $dir" >&2
set +e
"$@"
status=$?
set -e
exit $status
