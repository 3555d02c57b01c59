#!/usr/bin/env bash
# Fuzzes the HTTP API from its OpenAPI document with schemathesis (pinned in
# keyserver/requirements.txt, installed into a venv under the target
# directory) against a server on a fresh SQLite database, for about
# FUZZ_SECONDS (default 75). Fails on any 5xx answer, on a schemathesis
# failure, and when the server crashed or does not stop cleanly.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-target}"
seconds="${FUZZ_SECONDS:-75}"
venv="$target/keyserver-venv"
req=keyserver/requirements.txt

if [ ! -x "$venv/bin/st" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q -r "$req"
    cp "$req" "$venv/requirements.txt"
fi

$CARGO build --release -p ratchetkit-keyserver --bin ratchetkit-keyserver
work="$(mktemp -d /tmp/rk-fuzz.XXXXXX)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

"$target/release/ratchetkit-keyserver" --listen 127.0.0.1:0 --database "sqlite:$work/keys.db" \
    --registration-rate 0 \
    >"$work/out" 2>"$work/log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/out" 2>/dev/null && break
    sleep 0.1
done
addr="$(sed -n 's/^ratchetkit-keyserver listening on //p' "$work/out")"
if [ -z "$addr" ]; then
    cat "$work/log" >&2
    echo "fuzz.sh: the server did not start" >&2
    exit 1
fi

status=0
# The coverage phase is left out: schemathesis 4.32.5 stops with an internal
# error of its own there on Python 3.11 ("AST constructor recursion depth
# mismatch" in hypothesis' lambda description), before sending anything.
"$venv/bin/st" run keyserver/openapi.json --url "http://$addr" \
    --checks not_a_server_error --max-time "$seconds" --workers 2 \
    --phases examples,fuzzing,stateful \
    --suppress-health-check all --no-color || status=$?

if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "fuzz.sh: the server crashed" >&2
    tail -50 "$work/log" >&2
    exit 1
fi
if grep -q '"status":5\|status=5[0-9][0-9]' "$work/log"; then
    echo "fuzz.sh: the server answered 5xx" >&2
    grep 'status=5[0-9][0-9]' "$work/log" | head >&2
    exit 1
fi
kill -TERM "$server_pid"
wait "$server_pid" || { echo "fuzz.sh: the server did not stop cleanly" >&2; exit 1; }
server_pid=""
if [ "$status" != 0 ]; then
    echo "fuzz.sh: schemathesis failed ($status)" >&2
    exit "$status"
fi
echo "fuzz.sh: no 5xx and no crash in ${seconds}s of schemathesis"
