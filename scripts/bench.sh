#!/usr/bin/env bash
# `just bench`: every number is printed beside a baseline measured in the same
# run on the same machine, as a ratio. No thresholds: these are measurements.
#
# 1. Envoy throughput (wrk, loopback): plain Envoy without the filter → a fixed
#    200 upstream (baseline); Envoy with the filter on a free path (same
#    upstream); Envoy with the filter answering 402 in-proxy.
# 2. Redemption latency: p50 of a payment through the verifier's /auth beside
#    a bare cdk `receive` at the same mint (cargo bench -p paygress-verifier).
#
#   bash scripts/bench.sh [all|envoy|redeem]      (default all)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
which=${1:-all}

DURATION=${PAYGRESS_BENCH_DURATION:-10s}
CONNECTIONS=${PAYGRESS_BENCH_CONNECTIONS:-32}
WASM=$PWD/target/wasm32-wasip1/wasm-release/paygress_filter.wasm
command -v wrk >/dev/null || { echo "bench: wrk is missing: run 'just setup' (Debian: apt-get install wrk)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

run=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -s -o /dev/null "$1" && return 0; sleep 0.1; done; echo "bench: $1 did not come up" >&2; exit 1; }
rps() { # url [header]
  local out
  if [ -n "${2:-}" ]; then out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -H "$2" "$1"); else out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$1"); fi
  awk '/Requests\/sec/{print $2}' <<<"$out"
}

if [ "$which" = all ] || [ "$which" = envoy ]; then
UP=$(free_port); BASE=$(free_port); BASE_ADMIN=$(free_port); PG=$(free_port); PG_ADMIN=$(free_port)
mkdir -p "$run/nginx"
python3 scripts/render.py scripts/bench/nginx-upstream.conf "$run/nginx.conf" RUN_DIR="$run/nginx" UPSTREAM_PORT="$UP"
"$NGINX" -c "$run/nginx.conf" -e "$run/nginx/error.log" & pids+=($!)
python3 scripts/render.py scripts/bench/envoy-baseline.yaml "$run/baseline.yaml" LISTEN_PORT="$BASE" ADMIN_PORT="$BASE_ADMIN" UPSTREAM_PORT="$UP"
"$PAYGRESS_ENVOY" -c "$run/baseline.yaml" --concurrency 1 --log-level error --disable-hot-restart > "$run/baseline.log" 2>&1 & pids+=($!)
python3 scripts/render.py envoy/envoy.yaml "$run/paygress.yaml" LISTEN_PORT="$PG" ADMIN_PORT="$PG_ADMIN" \
  VERIFIER_PORT="$(free_port)" UPSTREAM_PORT="$UP" WASM_PATH="$WASM" PLUGIN_CONFIG="$(tr -d '\n' < envoy/plugin-config.json)"
"$PAYGRESS_ENVOY" -c "$run/paygress.yaml" --concurrency 1 --log-level error --disable-hot-restart > "$run/paygress.log" 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$UP/"; wait_up "http://127.0.0.1:$BASE/"; wait_up "http://127.0.0.1:$PG/free"

echo "== Envoy throughput: wrk -t2 -c$CONNECTIONS -d$DURATION, Envoy --concurrency 1, $(wc -c < "$WASM") byte filter"
base=$(rps "http://127.0.0.1:$BASE/free/x")
free=$(rps "http://127.0.0.1:$PG/free/x")
paid=$(rps "http://127.0.0.1:$PG/premium/x")
python3 - "$base" "$free" "$paid" <<'PY'
import sys
base, free, paid = map(float, sys.argv[1:])
print(f"{'case':<42}{'req/s':>12}{'vs baseline':>14}")
for name, v in [("plain Envoy -> upstream (baseline)", base),
                ("filter, free path -> upstream", free),
                ("filter, paid path, 402 in-proxy", paid)]:
    print(f"{name:<42}{v:>12.0f}{v / base:>13.2f}x")
PY
fi

if [ "$which" = all ] || [ "$which" = redeem ]; then
echo
echo "== Redemption latency (verifier /auth vs bare cdk receive, same mint)"
# Full LTO of cdk takes very long on small machines and changes nothing here:
# the time is the mint's swap and the stores' writes.
CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16 \
  cargo bench -p paygress-verifier --bench redeem_latency --locked
fi
