#!/usr/bin/env bash
# `just bench`: every number beside a baseline measured in the same run on
# the same machine. Goals are printed beside the figures (met or not); they
# are measurements, not failures. What does fail the bench (exit 1, naming
# the case): a case answering any status but its own, a tool or build
# missing, a part of the stack not coming up.
#
#   bash scripts/bench.sh [all|envoy|redeem|replicas]      (default all)
#
# At the end, one table of every part that ran (grouped by section: case,
# median, min-max, unit, ratio, vs, goal, met), also written as JSON to
# target/bench/bench-<UTC yyyymmddThhmmss>.json and target/bench/latest.json
# (under CARGO_TARGET_DIR when set):
# {"meta": {date, commit: {sha, dirty}, nproc, loadavg_start, loadavg_end,
# envoy_version, rounds, duration, connections}, "rows": [...]}, the row
# format of scripts/bench/rows.py. Each part writes its rows as a JSON array
# to $BENCH_PARTS/<part>.json (BENCH_PARTS is exported: a directory in the
# run's temporary directory); scripts/bench/report.py merges whatever parts
# wrote. On a failure the run's logs and configs are kept in
# target/bench/failed-<stamp>/.
#
# 1. envoy: throughput with wrk (-t2 -c$PAYGRESS_BENCH_CONNECTIONS, loopback),
#    every proxy in front of one fixed-200 nginx upstream
#    (scripts/bench/nginx-upstream.conf), each Envoy with --concurrency 1 and
#    the NGINX gateway with one worker. The filter's, the noop filter's,
#    the plain and the direct_response Envoys are envoy/envoy.yaml as
#    shipped or derived from it (scripts/bench/envoy_variant.py), so they
#    share its listener, connection manager options and rate-limit filter;
#    ext_authz is envoy/envoy-ext-authz.yaml as shipped. The rate limits of
#    every Envoy are switched off through its admin runtime
#    (paygress_rate_limit.enabled=0 and .enforced=0, read back); NGINX is
#    nginx/paygress.conf.template rendered as its end-to-end tests render
#    it, without its limit_req/limit_conn lines and with access_log off
#    (scripts/bench/nginx_gateway.py). wrk runs scripts/bench/status.lua,
#    which counts every answer by status: free and pass cases must answer
#    only 2xx, 402 cases only 402, 400 cases only 400, with no socket
#    errors; the ext_authz and NGINX cases must have asked the verifier once
#    per answer (its paygress_payments_total{outcome="free"} and
#    paygress_passes_total{result="accepted"}), and no case of the filter
#    may call the verifier (paygress_callouts_total). The cases, in
#    interleaved rounds (A B C ...
#    A B C ...) so that drift of the machine touches all alike; each case's
#    median, min and max over the rounds, ratios of medians:
#    - free path, GET /free/x: plain Envoy (envoy.yaml without the wasm
#      filter; the baseline); a do-nothing Rust proxy-wasm filter on the
#      same SDK (filter/examples/noop_filter.rs: the floor of any wasm
#      filter) vs plain; the Paygress filter vs plain and vs noop; Envoy
#      ext_authz -> the verifier's /auth (envoy/envoy-ext-authz.yaml) and
#      NGINX auth_request -> /auth, each vs plain;
#    - 402, GET /premium/x without a token: the filter's 402 in-proxy vs
#      Envoy answering the very same status, headers and body with
#      direct_response (captured from the filter at run time and compared
#      byte for byte; goal >= 0.90x);
#    - 400, GET /premium/x with X-Cashu: a real 1 sat token from the payer's
#      wallet, below the tier's price: the filter's pre-check 400
#      (insufficient_amount, checked, and no callout: paygress_callouts_total
#      unchanged) vs direct_response with the same answer (goal >= 0.90x).
#      Envoy closes the connection after both 400s (connection: close), so
#      this case includes wrk's reconnections;
#    - pass path, GET /compute/x with X-Paygress-Pass (a lease's pass,
#      bought once through the filter and checked on every gateway): plain
#      Envoy sent the same request (baseline); the filter checking the pass
#      in-proxy (goal >= 0.90x); ext_authz and NGINX, each vs plain; the
#      filter vs ext_authz (goal >= 3x) and vs NGINX;
#    - the verifier's /auth at fixed rates (PAYGRESS_BENCH_RATES req/s),
#      straight to a verifier started for these cases alone, by
#      tests/src/bin/rate_load.rs (open loop, keep-alive): a cycle of an
#      unpaid and a pass request in ext_authz's shape (GET /auth/<path>,
#      402 and 200) and in NGINX's (X-Original-URL, X-Paygress-Mode: nginx;
#      401 and 200); the achieved rate, latency p50/p99 (from each request's
#      due time), the verifier's CPU (utime+stime from /proc/PID/stat over
#      the run; 100% = one core) and VmRSS (sampled every 0.1 s: peak and at
#      the end; goal <= 50 MiB at 500 req/s), and its RSS before the load;
#    - the size of paygress_filter.wasm as built by `just build` (goal <=
#      307200 bytes) and of the noop filter after the same wasm-opt -Oz.
#    Set up once: a cdk-mintd (fake Lightning), the release verifier with
#    envoy/plugin-config.json (its lease tier; pass key PAYGRESS_PASS_KEY,
#    random unless set), a funded wallet, `paygress pay` for the lease,
#    `paygress wallet send` for the 1 sat token.
# 2. redeem: redemption latency p50 and p99, through Envoy with the filter
#    (its callout included), through the verifier's /auth, and by a bare cdk
#    `receive` at the same mint with the verifier's receive options (the
#    baseline), interleaved in a rotating order, PAYGRESS_BENCH_N (100)
#    tokens each; then PAYGRESS_BENCH_FILL (1000) more through /auth, the
#    last eighth's p50 against the first's (a redemption must not slow down
#    as the wallet fills). verifier/benches/redeem_latency.rs, built with the
#    verifier it starts in the bench profile; rows in $BENCH_PARTS/redeem.json.
# 3. replicas: redemptions per second through /auth with 1, 2 and 3 verifier
#    replicas on one PostgreSQL database and one mint, beside one replica on
#    SQLite (the ratio's baseline), with the CPU of the verifiers, the mint
#    and PostgreSQL during the load (tests/src/bin/replica_bench.rs; prints
#    its own table). PAYGRESS_BENCH_REDEMPTIONS (300 tokens per case),
#    PAYGRESS_BENCH_IN_FLIGHT (32), PAYGRESS_BENCH_WARMUP (5 per replica),
#    PAYGRESS_BENCH_REPLICAS (1,2,3) and PAYGRESS_BENCH_REPLICA_ROUNDS (3
#    interleaved rounds, medians) tune it.
#
# Environment (envoy part): PAYGRESS_BENCH_DURATION (10s: each wrk run and
# each fixed-rate run), PAYGRESS_BENCH_CONNECTIONS (32: wrk's connections),
# PAYGRESS_BENCH_ROUNDS (5 interleaved rounds), PAYGRESS_BENCH_RATES
# (100,250,500: the fixed rates of /auth, req/s), PAYGRESS_PASS_KEY (the pass
# key; random unless set). PAYGRESS_BENCH_VERIFIER names a verifier binary to
# use (envoy and replicas parts) instead of building one (release, without
# LTO). PAYGRESS_BENCH_WASM names another filter .wasm to measure (to
# compare two builds of the filter, one run each). Tools come from `just setup` (scripts/tools.sh: Envoy, cdk-mintd;
# nginx, wrk, wasm-opt on PATH); the filter's .wasm from `just build`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
which=${1:-all}
case "$which" in
  all | envoy | redeem | replicas) ;;
  *) echo "bench: unknown part '$which': all, envoy, redeem or replicas" >&2; exit 1 ;;
esac

DURATION=${PAYGRESS_BENCH_DURATION:-10s}
CONNECTIONS=${PAYGRESS_BENCH_CONNECTIONS:-32}
ROUNDS=${PAYGRESS_BENCH_ROUNDS:-5}
RATES=${PAYGRESS_BENCH_RATES:-100,250,500}
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
WASM=${PAYGRESS_BENCH_WASM:-$TARGET/wasm32-wasip1/wasm-release/paygress_filter.wasm}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
STAMP=$(date -u +%Y%m%dT%H%M%S)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
# The code measured: HEAD and whether the tree differs from it, at the start.
COMMIT=$(git rev-parse HEAD 2>/dev/null || true)
DIRTY=$([ -n "$(git status --porcelain 2>/dev/null)" ] && echo true || echo false)

run=$(mktemp -d)
export BENCH_PARTS=$run/parts
mkdir -p "$BENCH_PARTS"
pids=()
stop_all() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; pids=(); }
cleanup() {
  local status=$?
  stop_all
  if [ "$status" -ne 0 ]; then
    local keep=$TARGET/bench/failed-$STAMP
    mkdir -p "$keep"
    (cd "$run" && find . -maxdepth 2 -type f \( -name '*.log' -o -name '*.yaml' -o -name '*.conf' -o -name 'answer-*.json' -o -name 'rate-*.json' \) \
      -exec cp --parents {} "$keep/" \;) 2>/dev/null || true
    echo "bench: failed; the run's logs and configs are in $keep" >&2
  fi
  rm -rf "$run"
}
trap cleanup EXIT

fail() { echo "bench: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "bench: $1 did not come up${2:+; the end of $2:}" >&2; [ -n "${2:-}" ] && tail -n 30 "$2" >&2; exit 1; }
# A filter counter from an Envoy admin port (printed as `name{} value`).
counter() { # admin_port name
  curl -sS "http://127.0.0.1:$1/stats/prometheus" | awk -v n="$2" '{sub(/\{\}$/, "", $1)} $1==n{print $2; f=1} END{if(!f) print 0}'
}

if [ "$which" = all ] || [ "$which" = envoy ]; then
# --- tools and builds ---------------------------------------------------------
command -v wrk >/dev/null || fail "wrk is missing: run 'just setup' (Debian: apt-get install wrk)"
command -v wasm-opt >/dev/null || fail "wasm-opt is missing: run 'just setup' (Debian: apt-get install binaryen)"
[ -x "$NGINX" ] || fail "nginx is missing: run 'just setup' (Debian: apt-get install nginx-light)"
[ -x "$PAYGRESS_ENVOY" ] || fail "Envoy is missing ($PAYGRESS_ENVOY): run 'just setup'"
[ -x "$CDK_MINTD" ] || fail "$CDK_MINTD is missing: run 'just setup'"
[ -f "$WASM" ] || fail "$WASM is missing: run 'just build'"
VERIFIER_BIN=${PAYGRESS_BENCH_VERIFIER:-}
if [ -z "$VERIFIER_BIN" ]; then
  echo "bench: building the verifier (release profile, without LTO) ..."
  # Full LTO of cdk takes very long on small machines; the verifier's /auth on
  # a pass is HTTP and an HMAC, which LTO does not change much.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release -p paygress-verifier --locked --quiet
  VERIFIER_BIN=$TARGET/release/paygress
fi
[ -x "$VERIFIER_BIN" ] || fail "$VERIFIER_BIN is missing (PAYGRESS_BENCH_VERIFIER, or unset it to build one)"
echo "bench: building the noop filter and the fixed-rate load generator ..."
cargo build -p paygress-filter --example noop_filter --target wasm32-wasip1 --profile wasm-release --locked --quiet
# The noop filter gets the size pass `just build` gives the filter.
wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int \
  --enable-multivalue --enable-reference-types --enable-extended-const \
  "$TARGET/wasm32-wasip1/wasm-release/examples/noop_filter.wasm" -o "$run/noop_filter.wasm"
NOOP_WASM=$run/noop_filter.wasm
# A debug build: it sends at most a few hundred requests a second.
cargo build -p paygress-tests --bin rate_load --locked --quiet
RATE_LOAD=$TARGET/debug/rate_load

# The pass key: the verifier signs with it, the filter checks with it.
export PAYGRESS_PASS_KEY=${PAYGRESS_PASS_KEY:-$(head -c 32 /dev/urandom | base64)}

UP=$(free_port); MINT_PORT=$(free_port); VER=$(free_port); VR=$(free_port); NG=$(free_port)
PLAIN=$(free_port); PLAIN_ADMIN=$(free_port); NOOP=$(free_port); NOOP_ADMIN=$(free_port)
PG=$(free_port); PG_ADMIN=$(free_port); EA=$(free_port); EA_ADMIN=$(free_port)
D402=$(free_port); D402_ADMIN=$(free_port); D400=$(free_port); D400_ADMIN=$(free_port)
MINT_URL="http://127.0.0.1:$MINT_PORT"

# --- a mint with a fake Lightning backend --------------------------------------
mkdir -p "$run/mint" "$run/nginx" "$run/gateway"
export PAYGRESS_BENCH_MINT_MNEMONIC="abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
cat > "$run/mint/mint.toml" <<TOML
[info]
url = "$MINT_URL"
listen_host = "127.0.0.1"
listen_port = $MINT_PORT
mnemonic = "env:PAYGRESS_BENCH_MINT_MNEMONIC"
input_fee_ppk = 0
enable_info_page = false

[info.logging]
output = "stderr"
console_level = "warn"

[mint_info]
name = "paygress bench mint"
description = "A throwaway mint with a fake Lightning backend"

[database]
engine = "sqlite"

[payment_backend]
backend = "fakewallet"
unit = "sat"
min_mint = 1
max_mint = 1000000

[fake_wallet]
supported_units = ["sat"]
min_delay_time = 0
max_delay_time = 0
custom_payment_methods = []
TOML
env -u CDK_MINTD_DATABASE "$CDK_MINTD" --work-dir "$run/mint" config init --new-mint --file "$run/mint/mint.toml" \
  > "$run/mint-init.log" 2>&1 || { cat "$run/mint-init.log" >&2; fail "cdk-mintd config init failed"; }
env -u CDK_MINTD_DATABASE "$CDK_MINTD" --work-dir "$run/mint" > "$run/mint.log" 2>&1 & pids+=($!)

# --- one config for the verifier and the filter: envoy/plugin-config.json -----
python3 - envoy/plugin-config.json "$run/config.json" "$MINT_URL" <<'PY'
import json, sys
src, dst, mint = sys.argv[1:]
config = json.load(open(src))
config["mints"] = [mint]
json.dump(config, open(dst, "w"))
PY
read -r LEASE_PREFIX LEASE_PRICE < <(python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1]))["tiers"] if "lease" in t][0]; print(t["path_prefix"], t["amount"])' "$run/config.json")
read -r PAID_PREFIX PAID_PRICE < <(python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1]))["tiers"] if t["path_prefix"]=="/premium"][0]; print(t["path_prefix"], t["amount"])' "$run/config.json")
FREE_PREFIX=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["free_paths"][0])' "$run/config.json")

# --- the upstream, the verifier, the Envoys, the NGINX gateway -----------------
python3 scripts/render.py scripts/bench/nginx-upstream.conf "$run/nginx.conf" RUN_DIR="$run/nginx" UPSTREAM_PORT="$UP"
"$NGINX" -c "$run/nginx.conf" -e "$run/nginx/error.log" & pids+=($!)
# The filter: envoy/envoy.yaml as shipped. The noop: the same file with the
# noop .wasm. Plain: the same file without the wasm filter.
render_envoy() { # name listen_port admin_port wasm plugin_config
  python3 scripts/render.py envoy/envoy.yaml "$run/$1.yaml" LISTEN_PORT="$2" ADMIN_PORT="$3" \
    VERIFIER_PORT="$VER" UPSTREAM_PORT="$UP" WASM_PATH="$4" PLUGIN_CONFIG="$5"
}
render_envoy paygress "$PG" "$PG_ADMIN" "$WASM" "$(cat "$run/config.json")"
render_envoy noop "$NOOP" "$NOOP_ADMIN" "$NOOP_WASM" "{}"
render_envoy plain-shipped "$PLAIN" "$PLAIN_ADMIN" "$WASM" "{}"
python3 scripts/bench/envoy_variant.py "$run/plain-shipped.yaml" "$run/plain.yaml" plain
python3 scripts/render.py envoy/envoy-ext-authz.yaml "$run/ext-authz.yaml" LISTEN_PORT="$EA" ADMIN_PORT="$EA_ADMIN" \
  VERIFIER_PORT="$VER" UPSTREAM_PORT="$UP"
declare -A proc_of # process name -> pid, for the CPU each case costs
start_envoy() { # name
  "$PAYGRESS_ENVOY" -c "$run/$1.yaml" --concurrency 1 --log-level error --disable-hot-restart > "$run/$1.log" 2>&1 & pids+=($!)
  proc_of[$1]=$!
}
for name in paygress noop plain ext-authz; do start_envoy "$name"; done
# NGINX auth_request as the NGINX end-to-end tests render it, limits off.
python3 scripts/render.py nginx/paygress.conf.template "$run/gateway/shipped.conf" \
  LISTEN_PORT="$NG" VERIFIER_ADDR="127.0.0.1:$VER" UPSTREAM_ADDR="127.0.0.1:$UP"
python3 scripts/bench/nginx_gateway.py "$run/gateway/shipped.conf" "$run/gateway/nginx.conf"
"$NGINX" -t -q -p "$run/gateway" -c nginx.conf -e stderr 2> "$run/gateway.log" \
  || { cat "$run/gateway.log" >&2; fail "nginx -t refused the NGINX gateway's config"; }
"$NGINX" -p "$run/gateway" -c nginx.conf -e stderr > "$run/gateway.log" 2>&1 & pids+=($!)
proc_of[gateway]=$!

wait_up "$MINT_URL/v1/info" "$run/mint.log"
PAYGRESS_LOG=warn "$VERIFIER_BIN" serve --config "$run/config.json" --listen "127.0.0.1:$VER" \
  --data-dir "$run/verifier" > "$run/verifier.log" 2>&1 & pids+=($!)
proc_of[verifier]=$!
wait_up "http://127.0.0.1:$VER/readyz" "$run/verifier.log"
wait_up "http://127.0.0.1:$UP/"
wait_up "http://127.0.0.1:$PG/" "$run/paygress.log"; wait_up "http://127.0.0.1:$NOOP/" "$run/noop.log"
wait_up "http://127.0.0.1:$PLAIN/" "$run/plain.log"; wait_up "http://127.0.0.1:$EA/" "$run/ext-authz.log"
wait_up "http://127.0.0.1:$NG/" "$run/gateway.log"

# Every Envoy's rate limits off (wrk from one address would measure 429s),
# through the admin runtime, read back.
limits_off() { # admin_port name
  local answer
  answer=$(curl -sS -X POST "http://127.0.0.1:$1/runtime_modify?paygress_rate_limit.enabled=0&paygress_rate_limit.enforced=0") \
    || fail "$2: the admin interface on :$1 cannot be reached"
  [ "$answer" = OK ] || fail "$2: runtime_modify answered '$answer' (does its config still have the admin runtime layer?)"
  curl -sS "http://127.0.0.1:$1/runtime?format=json" | python3 -c '
import json, sys
entries = json.load(sys.stdin)["entries"]
values = {k: entries.get(k, {}).get("final_value") for k in ("paygress_rate_limit.enabled", "paygress_rate_limit.enforced")}
sys.exit(0 if all(v == "0" for v in values.values()) else f"runtime reads {values}")' \
    || fail "$2: the rate limits did not switch off"
}
limits_off "$PG_ADMIN" "Envoy with the filter"; limits_off "$NOOP_ADMIN" "Envoy with the noop filter"
limits_off "$PLAIN_ADMIN" "plain Envoy"; limits_off "$EA_ADMIN" "Envoy ext_authz"
# The noop filter really runs (a VM per worker), plain Envoy runs none.
[ "$(counter "$NOOP_ADMIN" envoy_wasm_envoy_wasm_runtime_v8_active)" -gt 0 ] \
  || fail "the noop filter is not running in its Envoy (no active wasm VM); see $run/noop.log"
[ "$(counter "$PLAIN_ADMIN" envoy_wasm_envoy_wasm_runtime_v8_active)" = 0 ] \
  || fail "plain Envoy runs a wasm VM: scripts/bench/envoy_variant.py did not remove the filter"

# --- buy one lease through the filter; its pass is what the pass cases send ---
# Funds for the lease and for the 1 sat token of the 400 cases.
"$VERIFIER_BIN" wallet fund --data-dir "$run/payer" --mint "$MINT_URL" --amount "$((LEASE_PRICE + 1))" > "$run/fund.log" 2>&1 \
  || { cat "$run/fund.log" >&2; fail "funding the payer's wallet failed"; }
"$VERIFIER_BIN" pay --data-dir "$run/payer" --max-amount "$LEASE_PRICE" "http://127.0.0.1:$PG$LEASE_PREFIX/bench" > "$run/buy.log" 2>&1 \
  || { cat "$run/buy.log" >&2; fail "buying the lease failed"; }
pass=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["passes"][0]["pass"])' "$run/payer/passes.json")
PASS_HEADER="X-Paygress-Pass: $pass"
accepted_before=$(counter "$PG_ADMIN" paygress_pass_accepted_total)
for gateway in "$PG" "$EA" "$NG"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "$PASS_HEADER" "http://127.0.0.1:$gateway$LEASE_PREFIX/x")
  [ "$status" = 200 ] || fail "the pass is not accepted on :$gateway ($status)"
done
[ "$(counter "$PG_ADMIN" paygress_pass_accepted_total)" -gt "$accepted_before" ] \
  || fail "the filter let the pass through without counting it in paygress_pass_accepted_total"

# A real token the filter refuses without a callout: 1 sat, below the price
# of $PAID_PREFIX.
token=$("$VERIFIER_BIN" wallet send --data-dir "$run/payer" --mint "$MINT_URL" --amount 1 2> "$run/send.log") \
  || { cat "$run/send.log" >&2; fail "paygress wallet send failed"; }
[ "$PAID_PRICE" -gt 1 ] || fail "the $PAID_PREFIX tier costs $PAID_PRICE: a 1 sat token is not below its price"
TOKEN_HEADER="X-Cashu: $token"

# --- the filter's 402 and 400, and Envoys answering exactly those --------------
callouts_before=$(counter "$PG_ADMIN" paygress_callouts_total)
python3 scripts/bench/answer.py get "http://127.0.0.1:$PG$PAID_PREFIX/x" "$run/answer-402.json"
python3 scripts/bench/answer.py get "http://127.0.0.1:$PG$PAID_PREFIX/x" "$run/answer-400.json" "$TOKEN_HEADER"
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$run/answer-402.json")" = 402 ] \
  || fail "the filter answered $PAID_PREFIX/x without a token with $(head -c 300 "$run/answer-402.json"), not 402"
code=$(python3 scripts/bench/answer.py code "$run/answer-400.json")
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["status"])' "$run/answer-400.json")" = 400 ] && [ "$code" = insufficient_amount ] \
  || fail "the filter answered the 1 sat token with $(head -c 300 "$run/answer-400.json"), not its pre-check 400 (insufficient_amount)"
[ "$(counter "$PG_ADMIN" paygress_callouts_total)" = "$callouts_before" ] \
  || fail "the filter called the verifier for the 1 sat token: its 400 is not the in-proxy pre-check"
render_envoy direct-402-shipped "$D402" "$D402_ADMIN" "$WASM" "{}"
python3 scripts/bench/envoy_variant.py "$run/direct-402-shipped.yaml" "$run/direct-402.yaml" direct "$run/answer-402.json"
render_envoy direct-400-shipped "$D400" "$D400_ADMIN" "$WASM" "{}"
python3 scripts/bench/envoy_variant.py "$run/direct-400-shipped.yaml" "$run/direct-400.yaml" direct "$run/answer-400.json"
start_envoy direct-402; start_envoy direct-400
wait_up "http://127.0.0.1:$D402/" "$run/direct-402.log"; wait_up "http://127.0.0.1:$D400/" "$run/direct-400.log"
limits_off "$D402_ADMIN" "Envoy direct_response 402"; limits_off "$D400_ADMIN" "Envoy direct_response 400"
python3 scripts/bench/answer.py get "http://127.0.0.1:$D402$PAID_PREFIX/x" "$run/answer-direct-402.json"
python3 scripts/bench/answer.py get "http://127.0.0.1:$D400$PAID_PREFIX/x" "$run/answer-direct-400.json" "$TOKEN_HEADER"
python3 scripts/bench/answer.py same "$run/answer-402.json" "$run/answer-direct-402.json" >&2 \
  || fail "Envoy's direct_response 402 is not the filter's 402 (above)"
python3 scripts/bench/answer.py same "$run/answer-400.json" "$run/answer-direct-400.json" >&2 \
  || fail "Envoy's direct_response 400 is not the filter's 400 (above)"
echo "bench: the filter's 402, answered alike by direct_response: $(python3 scripts/bench/answer.py describe "$run/answer-402.json")"
echo "bench: the filter's 400 ($code), answered alike by direct_response: $(python3 scripts/bench/answer.py describe "$run/answer-400.json")"

# --- the wrk rounds ----------------------------------------------------------------
# One wrk run of a case; every answer must have the case's status. Sets RPS
# and ANSWERS.
measure() { # name expect(2xx|402|400) url [header]
  local name=$1 expect=$2 url=$3 header=${4:-} out statuses errors bad="" total=0 kv s n
  local args=(-t2 -c"$CONNECTIONS" -d"$DURATION" -s scripts/bench/status.lua)
  [ -n "$header" ] && args+=(-H "$header")
  out=$(wrk "${args[@]}" "$url") || fail "case '$name': wrk failed on $url: $out"
  statuses=$(sed -n 's/^STATUS //p' <<<"$out")
  errors=$(sed -n 's/^ERRORS //p' <<<"$out")
  RPS=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
  for kv in $statuses; do
    s=${kv%%=*}; n=${kv#*=}; total=$((total + n))
    case $expect in
      2xx) [[ $s == 2?? ]] || bad+=" $kv" ;;
      *) [ "$s" = "$expect" ] || bad+=" $kv" ;;
    esac
  done
  [ "$total" -gt 0 ] || bad+=" (no answers)"
  [ "$errors" = "connect=0 read=0 write=0 timeout=0" ] || bad+=" (socket errors: $errors)"
  [ -n "$RPS" ] || bad+=" (no Requests/sec in wrk's output)"
  [ -z "$bad" ] || fail "case '$name' ($url) must answer only $expect; unexpected:$bad (every answer: ${statuses:-none})"
  ANSWERS=$total
}
# The CPU time (utime + stime, clock ticks) of processes and their children
# (NGINX's workers), and which processes serve each case: the proxy, and the
# verifier for the peers that ask it. CPU per request is the figure a noisy
# machine disturbs least: it does not count time the proxy waited for a CPU.
cpu_ticks() { # pid...
  local p total=0 t
  for p in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
    t=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    total=$((total + t))
  done
  echo "$total"
}
serving() { # case -> pids
  case $1 in
    plain | plain_pass) echo "${proc_of[plain]}" ;;
    noop) echo "${proc_of[noop]}" ;;
    free | filter402 | filter400 | pass) echo "${proc_of[paygress]}" ;;
    direct402) echo "${proc_of[direct-402]}" ;;
    direct400) echo "${proc_of[direct-400]}" ;;
    ext_*) echo "${proc_of[ext-authz]} ${proc_of[verifier]}" ;;
    nginx_*) echo "${proc_of[gateway]} ${proc_of[verifier]}" ;;
  esac
}
TICK=$(getconf CLK_TCK)
# A counter of the verifier's /metrics (`name{labels} value`).
verifier_count() { # name{labels}
  curl -sS "http://127.0.0.1:$VER/metrics" | awk -v n="$1" '$1==n{print $2; f=1} END{if(!f) print 0}'
}
# What the verifier must have answered once per request of a peer's case.
asked_for() { # case
  case $1 in
    ext_free | nginx_free) echo 'paygress_payments_total{outcome="free"}' ;;
    ext_pass | nginx_pass) echo 'paygress_passes_total{result="accepted"}' ;;
  esac
}
#         name|expect|url|header
cases=(
  "plain|2xx|http://127.0.0.1:$PLAIN$FREE_PREFIX/x|"
  "noop|2xx|http://127.0.0.1:$NOOP$FREE_PREFIX/x|"
  "free|2xx|http://127.0.0.1:$PG$FREE_PREFIX/x|"
  "ext_free|2xx|http://127.0.0.1:$EA$FREE_PREFIX/x|"
  "nginx_free|2xx|http://127.0.0.1:$NG$FREE_PREFIX/x|"
  "direct402|402|http://127.0.0.1:$D402$PAID_PREFIX/x|"
  "filter402|402|http://127.0.0.1:$PG$PAID_PREFIX/x|"
  "direct400|400|http://127.0.0.1:$D400$PAID_PREFIX/x|$TOKEN_HEADER"
  "filter400|400|http://127.0.0.1:$PG$PAID_PREFIX/x|$TOKEN_HEADER"
  "plain_pass|2xx|http://127.0.0.1:$PLAIN$LEASE_PREFIX/x|$PASS_HEADER"
  "pass|2xx|http://127.0.0.1:$PG$LEASE_PREFIX/x|$PASS_HEADER"
  "ext_pass|2xx|http://127.0.0.1:$EA$LEASE_PREFIX/x|$PASS_HEADER"
  "nginx_pass|2xx|http://127.0.0.1:$NG$LEASE_PREFIX/x|$PASS_HEADER"
)
echo "== envoy: wrk -t2 -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds of ${#cases[@]} cases, Envoy --concurrency 1, $(nproc) CPUs"
samples=$run/samples.tsv
: > "$samples"
accepted_before=$(counter "$PG_ADMIN" paygress_pass_accepted_total)
callouts_before=$(counter "$PG_ADMIN" paygress_callouts_total)
for round in $(seq 1 "$ROUNDS"); do
  line="round $round:"
  for c in "${cases[@]}"; do
    IFS='|' read -r name expect url header <<<"$c"
    before=$(counter "$PG_ADMIN" paygress_callouts_total)
    asked=$(asked_for "$name"); [ -z "$asked" ] || asked_before=$(verifier_count "$asked")
    procs=$(serving "$name")
    ticks_before=$(cpu_ticks $procs)
    measure "$name" "$expect" "$url" "$header"
    ticks=$(( $(cpu_ticks $procs) - ticks_before ))
    if [ "$name" = filter400 ]; then
      after=$(counter "$PG_ADMIN" paygress_callouts_total)
      [ "$after" = "$before" ] || fail "case 'filter400': the filter called the verifier $((after - before)) times; its 400 must be the in-proxy pre-check"
    fi
    if [ -n "$asked" ]; then
      n=$(( $(verifier_count "$asked") - asked_before ))
      [ "$n" -ge "$ANSWERS" ] || fail "case '$name': $ANSWERS answers, but the verifier counted only $n in $asked: the gateway did not ask it for each request"
    fi
    printf '%s\t%s\n' "$name" "$RPS" >> "$samples"
    # CPU microseconds per answer.
    printf 'cpu:%s\t%s\n' "$name" "$(python3 -c 'import sys; t,hz,n=map(float,sys.argv[1:]); print(t/hz*1e6/n)' "$ticks" "$TICK" "$ANSWERS")" >> "$samples"
    line+=" $name $(printf '%.0f' "$RPS")"
  done
  echo "$line"
done
accepted=$(( $(counter "$PG_ADMIN" paygress_pass_accepted_total) - accepted_before ))
callouts=$(( $(counter "$PG_ADMIN" paygress_callouts_total) - callouts_before ))
echo "during the rounds: $accepted passes accepted by the filter in-proxy, $callouts callouts to the verifier"
[ "$callouts" = 0 ] || fail "the filter called the verifier $callouts times during the rounds: no case should need a callout"
[ "$accepted" -gt 0 ] || fail "case 'pass': the filter counted no accepted pass"

# --- the verifier's /auth at fixed rates ------------------------------------------
# A verifier of its own, started now, so that its memory is this load's alone.
PAYGRESS_LOG=warn "$VERIFIER_BIN" serve --config "$run/config.json" --listen "127.0.0.1:$VR" \
  --data-dir "$run/verifier-rate" > "$run/verifier-rate.log" 2>&1 & VR_PID=$!; pids+=("$VR_PID")
wait_up "http://127.0.0.1:$VR/readyz" "$run/verifier-rate.log"
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; } # utime + stime
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN{printf "%.3f", k / 1024}'; }
# Unpaid and pass, as ext_authz asks (the path after /auth) and as NGINX does.
requests=(
  --request "402|http://127.0.0.1:$VR/auth$PAID_PREFIX/x|X-Forwarded-Proto: http"
  --request "200|http://127.0.0.1:$VR/auth$LEASE_PREFIX/x|X-Forwarded-Proto: http|$PASS_HEADER"
  --request "401|http://127.0.0.1:$VR/auth|X-Paygress-Mode: nginx|X-Original-URL: http://127.0.0.1:$NG$PAID_PREFIX/x|X-Original-Method: GET|X-Forwarded-Proto: http|X-Paygress-Deadline-Ms: 10000"
  --request "200|http://127.0.0.1:$VR/auth|X-Paygress-Mode: nginx|X-Original-URL: http://127.0.0.1:$NG$LEASE_PREFIX/x|X-Original-Method: GET|X-Forwarded-Proto: http|X-Paygress-Deadline-Ms: 10000|$PASS_HEADER"
)
# A few of each first: the answers are right, and nothing is measured cold.
"$RATE_LOAD" --rate 20 --duration 1s "${requests[@]}" > "$run/rate-warmup.json" 2> "$run/rate_load.log" \
  || { cat "$run/rate_load.log" >&2; fail "rate_load failed"; }
rate_check() { # name file
  python3 - "$1" "$2" <<'PY' || exit 1
import json, sys
name, path = sys.argv[1:]
r = json.load(open(path))
if r["unexpected"] or r["errors"] or not r["answered"]:
    per = "; ".join(f"{q['url']} expects {q['expect']}: {q['statuses']}" for q in r["requests"])
    sys.exit(f"bench: case '{name}' must answer each request its own status; "
             f"{r['unexpected']} unexpected, {r['errors']} without an answer ({r['first_error']}): {per}")
PY
}
rate_check "auth warm-up" "$run/rate-warmup.json"
printf 'rss_idle\t%s\n' "$(mib "$(rss_kib "$VR_PID")")" >> "$samples"
IFS=, read -r -a rates <<<"$RATES"
echo "== verifier /auth at fixed rates (${RATES} req/s, $DURATION each, $ROUNDS interleaved rounds)"
for round in $(seq 1 "$ROUNDS"); do
  line="round $round:"
  for rate in "${rates[@]}"; do
    out=$run/rate-$rate.json
    t0=$(date +%s.%N); c0=$(cpu_ticks "$VR_PID"); peak=0
    "$RATE_LOAD" --rate "$rate" --duration "$DURATION" "${requests[@]}" > "$out" 2> "$run/rate_load.log" & load=$!
    while kill -0 "$load" 2>/dev/null; do
      kill -0 "$VR_PID" 2>/dev/null || fail "case 'auth $rate/s': the verifier exited; the end of $run/verifier-rate.log: $(tail -n 20 "$run/verifier-rate.log")"
      rss=$(rss_kib "$VR_PID"); [ "$rss" -gt "$peak" ] && peak=$rss
      sleep 0.1
    done
    wait "$load" || { cat "$run/rate_load.log" >&2; fail "case 'auth $rate/s': rate_load failed"; }
    t1=$(date +%s.%N); c1=$(cpu_ticks "$VR_PID"); end=$(rss_kib "$VR_PID")
    [ "$end" -gt "$peak" ] && peak=$end
    rate_check "auth $rate/s" "$out"
    read -r achieved p50 p99 < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["achieved_rate"], r["p50_ms"], r["p99_ms"])' "$out")
    cpu=$(awk -v c="$((c1 - c0))" -v hz="$CLK_TCK" -v t0="$t0" -v t1="$t1" 'BEGIN{printf "%.2f", 100 * c / hz / (t1 - t0)}')
    printf 'auth%s_rate\t%s\nauth%s_cpu\t%s\nauth%s_rss_peak\t%s\nauth%s_rss_end\t%s\nauth%s_p50\t%s\nauth%s_p99\t%s\n' \
      "$rate" "$achieved" "$rate" "$cpu" "$rate" "$(mib "$peak")" "$rate" "$(mib "$end")" "$rate" "$p50" "$rate" "$p99" >> "$samples"
    line+=" ${rate}/s: ${achieved} req/s, cpu ${cpu}%, rss $(mib "$peak") MiB, p99 ${p99} ms;"
  done
  echo "$line"
done

printf 'size_filter\t%s\nsize_noop\t%s\n' "$(stat -c %s "$WASM")" "$(stat -c %s "$NOOP_WASM")" >> "$samples"
python3 scripts/bench/envoy_rows.py "$samples" "$BENCH_PARTS/envoy.json" "$RATES"
stop_all
fi

if [ "$which" = all ] || [ "$which" = redeem ]; then
echo
echo "== Redemption latency (Envoy + filter, /auth, bare cdk receive; same mint)"
# Full LTO of cdk takes very long on small machines and changes nothing here:
# the time is the mint's swap and the stores' writes. The bench and the
# verifier it starts are built together, in the bench profile (release
# without LTO), into $TARGET/release.
export CARGO_PROFILE_BENCH_LTO=false CARGO_PROFILE_BENCH_CODEGEN_UNITS=16
cargo bench -p paygress-verifier --bench redeem_latency --locked --no-run --quiet
PAYGRESS_BIN=$TARGET/release/paygress PAYGRESS_BENCH_FILL=${PAYGRESS_BENCH_FILL:-1000} \
  cargo bench -p paygress-verifier --bench redeem_latency --locked --quiet
fi

if [ "$which" = all ] || [ "$which" = replicas ]; then
echo
echo "== Replicas: redemptions per second, 1-3 verifiers on one PostgreSQL database and one mint, beside SQLite x1"
REPLICA_VERIFIER=${PAYGRESS_BENCH_VERIFIER:-}
if [ -z "$REPLICA_VERIFIER" ]; then
  echo "bench: building the verifier (release profile, without LTO) ..."
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release -p paygress-verifier --locked --quiet
  REPLICA_VERIFIER=$PWD/target/release/paygress
fi
[ -x "$REPLICA_VERIFIER" ] || { echo "bench: $REPLICA_VERIFIER is missing" >&2; exit 1; }
# The driver is a debug build (the tests crate in release takes long to
# build on a small machine); the verifiers it measures are the release build.
PAYGRESS_BIN=$REPLICA_VERIFIER cargo run -p paygress-tests --bin replica_bench --locked --quiet
fi

# --- one table of every part that wrote rows, and the JSON ----------------------
BENCH_STAMP=$STAMP BENCH_LOADAVG_START=$LOADAVG_START BENCH_COMMIT=$COMMIT BENCH_DIRTY=$DIRTY \
  BENCH_ROUNDS=$ROUNDS BENCH_DURATION=$DURATION BENCH_CONNECTIONS=$CONNECTIONS BENCH_ENVOY=$PAYGRESS_ENVOY \
  python3 scripts/bench/report.py "$BENCH_PARTS" "$TARGET/bench"
