#!/usr/bin/env bash
# `just bench`: every number is printed beside a baseline measured in the same
# run on the same machine, as a ratio. No thresholds: these are measurements
# (the goals are printed beside them, never checked).
#
# 1. Envoy throughput (wrk, loopback, one fixed-200 nginx upstream for all):
#    plain Envoy without the filter (baseline); Envoy with the filter on a
#    free path; the filter answering 402 in-proxy; a lease's pass checked by
#    the filter in-proxy (beside plain Envoy sent the same request); the same
#    pass checked by Envoy ext_authz -> the verifier's /auth
#    (envoy/envoy-ext-authz.yaml). The cases run in interleaved rounds
#    (A B C ... A B C ...) so that drift of the machine touches all alike; each
#    case's figure is its median over the rounds.
#    The pass is bought once, honestly: a cdk-mintd (fake Lightning), the
#    verifier with envoy/plugin-config.json (its lease tier, the pass key from
#    PAYGRESS_PASS_KEY, random unless set), a funded wallet, `paygress pay`.
# 2. Redemption latency: p50 of a payment through the verifier's /auth beside
#    a bare cdk `receive` at the same mint (cargo bench -p paygress-verifier).
# 3. Replicas: redemptions per second through /auth with 1, 2 and 3 verifier
#    replicas on one PostgreSQL database and one mint, beside one replica on
#    SQLite (the ratio's baseline), with the CPU of the verifiers, the mint
#    and PostgreSQL during the load (tests/src/bin/replica_bench.rs).
#    PAYGRESS_BENCH_REDEMPTIONS (300 tokens per case), PAYGRESS_BENCH_IN_FLIGHT
#    (32), PAYGRESS_BENCH_WARMUP (5 per replica), PAYGRESS_BENCH_REPLICAS
#    (1,2,3) and PAYGRESS_BENCH_REPLICA_ROUNDS (3 interleaved rounds, medians)
#    tune it.
#
#   bash scripts/bench.sh [all|envoy|redeem|replicas]      (default all)
#
# PAYGRESS_BENCH_DURATION (10s), PAYGRESS_BENCH_CONNECTIONS (32) and
# PAYGRESS_BENCH_ROUNDS (3) tune wrk; PAYGRESS_BENCH_VERIFIER names a verifier
# binary to use instead of building one (release, without LTO).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh
which=${1:-all}

DURATION=${PAYGRESS_BENCH_DURATION:-10s}
CONNECTIONS=${PAYGRESS_BENCH_CONNECTIONS:-32}
ROUNDS=${PAYGRESS_BENCH_ROUNDS:-3}
WASM=$PWD/target/wasm32-wasip1/wasm-release/paygress_filter.wasm
command -v wrk >/dev/null || { echo "bench: wrk is missing: run 'just setup' (Debian: apt-get install wrk)" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

run=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 150); do curl -s -o /dev/null "$1" && return 0; sleep 0.2; done; echo "bench: $1 did not come up${2:+; the end of $2:}" >&2; [ -n "${2:-}" ] && tail -n 30 "$2" >&2; exit 1; }
# One wrk run: "<requests/s> <non-2xx/3xx answers>".
rps() { # url [header]
  local out
  if [ -n "${2:-}" ]; then out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -H "$2" "$1"); else out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$1"); fi
  awk '/Requests\/sec/{r=$2} /Non-2xx or 3xx responses/{n=$NF} END{print r, n+0}' <<<"$out"
}
# A filter counter from an Envoy admin port (printed as `name{} value`).
counter() { # admin_port name
  curl -sS "http://127.0.0.1:$1/stats/prometheus" | awk -v n="$2" '{sub(/\{\}$/, "", $1)} $1==n{print $2; f=1} END{if(!f) print 0}'
}

if [ "$which" = all ] || [ "$which" = envoy ]; then
# --- the verifier, built as it is deployed (optimised) ------------------------
VERIFIER_BIN=${PAYGRESS_BENCH_VERIFIER:-}
if [ -z "$VERIFIER_BIN" ]; then
  echo "bench: building the verifier (release profile, without LTO) ..."
  # Full LTO of cdk takes very long on small machines; the verifier's /auth on
  # a pass is HTTP and an HMAC, which LTO does not change much.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release -p paygress-verifier --locked --quiet
  VERIFIER_BIN=$PWD/target/release/paygress
fi
[ -x "$VERIFIER_BIN" ] || { echo "bench: $VERIFIER_BIN is missing" >&2; exit 1; }
[ -x "$CDK_MINTD" ] || { echo "bench: $CDK_MINTD is missing: run 'just setup'" >&2; exit 1; }

# The pass key: the verifier signs with it, the filter checks with it.
export PAYGRESS_PASS_KEY=${PAYGRESS_PASS_KEY:-$(head -c 32 /dev/urandom | base64)}

UP=$(free_port); BASE=$(free_port); BASE_ADMIN=$(free_port); PG=$(free_port); PG_ADMIN=$(free_port)
MINT_PORT=$(free_port); VER=$(free_port); EA=$(free_port); EA_ADMIN=$(free_port)
MINT_URL="http://127.0.0.1:$MINT_PORT"

# --- a mint with a fake Lightning backend --------------------------------------
mkdir -p "$run/mint" "$run/nginx"
export PAYGRESS_BENCH_MINT_MNEMONIC="abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
cat > "$run/mint/mint.toml" <<EOF
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
EOF
env -u CDK_MINTD_DATABASE "$CDK_MINTD" --work-dir "$run/mint" config init --new-mint --file "$run/mint/mint.toml" \
  > "$run/mint-init.log" 2>&1 || { cat "$run/mint-init.log" >&2; echo "bench: cdk-mintd config init failed" >&2; exit 1; }
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

# --- the upstream, plain Envoy, Envoy with the filter, Envoy with ext_authz ---
python3 scripts/render.py scripts/bench/nginx-upstream.conf "$run/nginx.conf" RUN_DIR="$run/nginx" UPSTREAM_PORT="$UP"
"$NGINX" -c "$run/nginx.conf" -e "$run/nginx/error.log" & pids+=($!)
python3 scripts/render.py scripts/bench/envoy-baseline.yaml "$run/baseline.yaml" LISTEN_PORT="$BASE" ADMIN_PORT="$BASE_ADMIN" UPSTREAM_PORT="$UP"
"$PAYGRESS_ENVOY" -c "$run/baseline.yaml" --concurrency 1 --log-level error --disable-hot-restart > "$run/baseline.log" 2>&1 & pids+=($!)
python3 scripts/render.py envoy/envoy.yaml "$run/paygress.yaml" LISTEN_PORT="$PG" ADMIN_PORT="$PG_ADMIN" \
  VERIFIER_PORT="$VER" UPSTREAM_PORT="$UP" WASM_PATH="$WASM" PLUGIN_CONFIG="$(cat "$run/config.json")"
"$PAYGRESS_ENVOY" -c "$run/paygress.yaml" --concurrency 1 --log-level error --disable-hot-restart > "$run/paygress.log" 2>&1 & pids+=($!)
python3 scripts/render.py envoy/envoy-ext-authz.yaml "$run/ext-authz.yaml" LISTEN_PORT="$EA" ADMIN_PORT="$EA_ADMIN" \
  VERIFIER_PORT="$VER" UPSTREAM_PORT="$UP"
"$PAYGRESS_ENVOY" -c "$run/ext-authz.yaml" --concurrency 1 --log-level error --disable-hot-restart > "$run/ext-authz.log" 2>&1 & pids+=($!)

wait_up "$MINT_URL/v1/info" "$run/mint.log"
PAYGRESS_LOG=warn "$VERIFIER_BIN" serve --config "$run/config.json" --listen "127.0.0.1:$VER" \
  --data-dir "$run/verifier" > "$run/verifier.log" 2>&1 & pids+=($!)
wait_up "http://127.0.0.1:$VER/readyz" "$run/verifier.log"
wait_up "http://127.0.0.1:$UP/"; wait_up "http://127.0.0.1:$BASE/" "$run/baseline.log"
wait_up "http://127.0.0.1:$PG/free" "$run/paygress.log"; wait_up "http://127.0.0.1:$EA/free" "$run/ext-authz.log"

# --- buy one lease through the filter; its pass is what the pass cases send ---
"$VERIFIER_BIN" wallet fund --data-dir "$run/payer" --mint "$MINT_URL" --amount "$LEASE_PRICE" > "$run/fund.log" 2>&1 \
  || { cat "$run/fund.log" >&2; echo "bench: funding the payer's wallet failed" >&2; exit 1; }
"$VERIFIER_BIN" pay --data-dir "$run/payer" --max-amount "$LEASE_PRICE" "http://127.0.0.1:$PG$LEASE_PREFIX/bench" > "$run/buy.log" 2>&1 \
  || { cat "$run/buy.log" >&2; echo "bench: buying the lease failed" >&2; exit 1; }
pass=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["passes"][0]["pass"])' "$run/payer/passes.json")
PASS_HEADER="X-Paygress-Pass: $pass"
for gateway in "$PG" "$EA"; do
  status=$(curl -s -o /dev/null -w '%{http_code}' -H "$PASS_HEADER" "http://127.0.0.1:$gateway$LEASE_PREFIX/x")
  [ "$status" = 200 ] || { echo "bench: the pass is not accepted on :$gateway ($status)" >&2; exit 1; }
done

echo "== Envoy throughput: wrk -t2 -c$CONNECTIONS -d$DURATION, $ROUNDS interleaved rounds, Envoy --concurrency 1, $(wc -c < "$WASM") byte filter, $(nproc) CPUs"
#         name|url|header
cases=(
  "base|http://127.0.0.1:$BASE/free/x|"
  "free|http://127.0.0.1:$PG/free/x|"
  "paid|http://127.0.0.1:$PG/premium/x|"
  "base_pass|http://127.0.0.1:$BASE$LEASE_PREFIX/x|$PASS_HEADER"
  "pass|http://127.0.0.1:$PG$LEASE_PREFIX/x|$PASS_HEADER"
  "ext_pass|http://127.0.0.1:$EA$LEASE_PREFIX/x|$PASS_HEADER"
)
accepted_before=$(counter "$PG_ADMIN" paygress_pass_accepted_total)
callouts_before=$(counter "$PG_ADMIN" paygress_callouts_total)
results=()
for round in $(seq 1 "$ROUNDS"); do
  line="round $round:"
  for c in "${cases[@]}"; do
    IFS='|' read -r name url header <<<"$c"
    read -r r n < <(rps "$url" "$header")
    results+=("$name $r $n")
    line+=" $name $(printf '%.0f' "$r")"
  done
  echo "$line"
done
accepted=$(( $(counter "$PG_ADMIN" paygress_pass_accepted_total) - accepted_before ))
callouts=$(( $(counter "$PG_ADMIN" paygress_callouts_total) - callouts_before ))

python3 - "$accepted" "$callouts" "${results[@]}" <<'PY'
import statistics, sys
accepted, callouts = map(int, sys.argv[1:3])
runs = {}
for row in sys.argv[3:]:
    name, r, n = row.split()
    runs.setdefault(name, []).append((float(r), int(n)))
med = {k: statistics.median(r for r, _ in v) for k, v in runs.items()}
spread = {k: (min(r for r, _ in v), max(r for r, _ in v)) for k, v in runs.items()}
non2xx = {k: sum(n for _, n in v) for k, v in runs.items()}
print(f"{'case (median of the rounds)':<48}{'req/s':>10}{'min-max':>16}{'ratio':>9}   vs / goal")
def row(name, key, ratio=None, against="", goal=""):
    lo, hi = spread[key]
    ratio_text = f"{ratio:>8.2f}x" if ratio is not None else f"{'':>9}"
    print(f"{name:<48}{med[key]:>10.0f}{f'{lo:.0f}-{hi:.0f}':>16}{ratio_text}   {against}{goal}")
row("plain Envoy -> upstream (baseline)", "base")
row("filter, free path -> upstream", "free", med["free"] / med["base"], "vs baseline")
row("filter, paid path, 402 in-proxy", "paid", med["paid"] / med["base"], "vs baseline")
row("plain Envoy, same request with the pass", "base_pass")
row("filter, pass checked in-proxy -> upstream", "pass", med["pass"] / med["base_pass"],
    "vs plain Envoy with the pass", "   (goal >= 0.90x)")
row("ext_authz -> verifier /auth, pass -> upstream", "ext_pass", med["ext_pass"] / med["base_pass"],
    "vs plain Envoy with the pass")
print(f"{'filter pass path / ext_authz pass path':<48}{'':>10}{'':>16}{med['pass'] / med['ext_pass']:>8.2f}x"
      f"   filter / ext_authz   (goal >= 3x)")
print(f"during the filter's pass runs: {accepted} passes accepted in-proxy, {callouts} callouts to the verifier")
bad = {k: n for k, n in non2xx.items() if n and k != "paid"}
if bad:
    print(f"NOTE: non-2xx answers where 200 was expected: {bad} (see the logs; the figures above include them)")
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
