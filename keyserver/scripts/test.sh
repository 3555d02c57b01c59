#!/usr/bin/env bash
# The whole key server suite, on SQLite and then on PostgreSQL (a throwaway
# cluster from pg.sh), then the OpenAPI-driven fuzz run (fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
here=keyserver/scripts

echo "== keyserver suite on SQLite"
KEYSERVER_TEST_PG= $CARGO test --release -p ratchetkit-keyserver -- --test-threads 2

echo "== keyserver suite on PostgreSQL"
# shellcheck disable=SC2016
$here/pg.sh bash -c 'KEYSERVER_TEST_PG="$KEYSERVER_PG_URL" '"$CARGO"' test --release -p ratchetkit-keyserver -- --test-threads 2'

echo "== keyserver fuzz (schemathesis)"
$here/fuzz.sh
