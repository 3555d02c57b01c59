#!/usr/bin/env bash
# Bundle fetches per second and p50/p99 latency with 64 concurrent
# connections on loopback (ratchetkit-loadgen), on SQLite and on PostgreSQL
# (a throwaway cluster from pg.sh), each beside the floor: the claim
# transaction alone through the storage layer, same concurrency, same run.
# Writes keyserver/BENCHMARKS.md. BENCH_REQUESTS (default 20000) fetches
# per run.
set -euo pipefail
cd "$(dirname "$0")/../.."
CARGO="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-target}"
requests="${BENCH_REQUESTS:-20000}"
bin="$target/release"

if [ "${1:-}" != "--inner" ]; then
    $CARGO build --release -p ratchetkit-keyserver --bins
    results="$(mktemp /tmp/rk-bench-results.XXXXXX)"
    trap 'rm -f "$results"' EXIT
    "$0" --inner sqlite "$results"
    keyserver/scripts/pg.sh "$0" --inner postgres "$results"
    python3 - "$results" "$requests" > keyserver/BENCHMARKS.md <<'PY'
import json, sys, platform, os, subprocess
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
cpu = "unknown"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
print("# Key server benchmark\n")
print("Written by `make keyserver-bench` (keyserver/scripts/bench.sh). Bundle")
print("fetches (`GET /v1/keys/{name}/{device_id}`, each signed, verified and")
print("claiming one one-time EC and one one-time Kyber prekey in one")
print("transaction) by `ratchetkit-loadgen` over 64 concurrent keep-alive")
print("connections on loopback; client and server on the same machine. The")
print("floor is the claim transaction alone (the storage layer called")
print("directly, 64 concurrent callers, no HTTP, no signatures), measured in")
print("the same run. SQLite commits with `synchronous=FULL` (group commit);")
print("PostgreSQL with its defaults (`synchronous_commit=on`).\n")
load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"] * 3
print(f"Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}; {sys.argv[2]} fetches per run;")
print(f"load average (1/5/15 min) when the report was written: {' / '.join(load)}.\n")
print("| Backend | What | Requests | Errors | Per second | p50 (ms) | p99 (ms) |")
print("|---|---|---:|---:|---:|---:|---:|")
for r in rows:
    what = "HTTP bundle fetch" if r["kind"] == "http" else "floor (claim transaction alone)"
    print(f"| {r['label']} | {what} | {r['requests']} | {r['errors']} | {r['per_second']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |")
PY
    cat keyserver/BENCHMARKS.md
    exit 0
fi

backend="$2"
results="$3"
work="$(mktemp -d /tmp/rk-bench.XXXXXX)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

if [ "$backend" = sqlite ]; then
    db="sqlite:$work/keys.db"
    floor="sqlite:$work/floor.db"
else
    psql "$KEYSERVER_PG_URL/postgres" -q -c "CREATE DATABASE bench" -c "CREATE DATABASE floor"
    db="$KEYSERVER_PG_URL/bench"
    floor="$KEYSERVER_PG_URL/floor"
fi

RUST_LOG=warn "$bin/ratchetkit-keyserver" --listen 127.0.0.1:0 --database "$db" \
    --requester-rate 0 --target-rate 0 --registration-rate 0 --max-prekeys-per-device 1000000 --pg-pool-size 32 \
    >"$work/out" 2>"$work/log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/out" 2>/dev/null && break
    sleep 0.1
done
addr="$(sed -n 's/^ratchetkit-keyserver listening on //p' "$work/out")"
[ -n "$addr" ] || { cat "$work/log" >&2; echo "bench.sh: the server did not start" >&2; exit 1; }

"$bin/ratchetkit-loadgen" --url "http://$addr" --connections 64 --requests "$requests" \
    --label "$backend" | tee -a "$results"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=""
"$bin/ratchetkit-loadgen" --floor "$floor" --connections 64 --requests "$requests" \
    --label "$backend" | tee -a "$results"
