#!/usr/bin/env bash
# `just demo`: the whole Paygress stack on loopback, walked through step by step.
#
#   cdk-mintd (fake Lightning) ◄── paygress verifier ◄── Envoy + paygress filter ──► echo upstream
#
# Everything it starts is stopped on Ctrl-C. State lives in .demo/ (delete it
# to start over). Ports can be moved with PAYGRESS_DEMO_*_PORT.
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/tools.sh
. scripts/tools.sh

# The Envoy configs' defaults (ports, the .wasm path), shared with `just envoy`.
# shellcheck source=envoy/defaults.env
. envoy/defaults.env
MINT_PORT=${PAYGRESS_DEMO_MINT_PORT:-3338}
VERIFIER_PORT=${PAYGRESS_DEMO_VERIFIER_PORT:-$VERIFIER_PORT}
UPSTREAM_PORT=${PAYGRESS_DEMO_UPSTREAM_PORT:-$UPSTREAM_PORT}
LISTEN_PORT=${PAYGRESS_DEMO_ENVOY_PORT:-$LISTEN_PORT}
ADMIN_PORT=${PAYGRESS_DEMO_ADMIN_PORT:-$ADMIN_PORT}
DEMO=${PAYGRESS_DEMO_DIR:-$PWD/.demo}
PAYGRESS=${PAYGRESS_BIN:-$PWD/target/debug/paygress}
WASM=$PWD/$WASM_PATH
MINT_URL="http://127.0.0.1:$MINT_PORT"
GATEWAY="http://127.0.0.1:$LISTEN_PORT"

bold=$'\e[1m'; dim=$'\e[2m'; reset=$'\e[0m'
[ -t 1 ] || { bold=; dim=; reset=; }
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$reset"; }
show() { printf '%s$ %s%s\n' "$dim" "$*" "$reset"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for bin in "$CDK_MINTD" "$PAYGRESS_ENVOY" "$PAYGRESS" ; do
  [ -x "$bin" ] || die "$bin is missing: run 'just setup' and 'just build' (or just 'just demo')"
done
[ -f "$WASM" ] || die "$WASM is missing: run 'just build'"
command -v curl >/dev/null || die "curl is missing: install it (Debian: apt-get install curl)"

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$MINT_PORT" "$VERIFIER_PORT" "$UPSTREAM_PORT" "$LISTEN_PORT" "$ADMIN_PORT"; do
  port_free "$p" || die "port $p is in use (another demo running?); set PAYGRESS_DEMO_*_PORT to move it"
done

mkdir -p "$DEMO/logs"
pids=()
cleanup() {
  trap - EXIT INT TERM
  printf '\nstopping the demo...\n'
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
# Ctrl-C (or SIGTERM) is how the demo ends: stop everything, exit 0.
stop() { cleanup; exit 0; }
trap cleanup EXIT
trap stop INT TERM

wait_ok() { # name url log
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$2" 2>/dev/null && return 0
    sleep 0.2
  done
  echo "--- $1 did not come up; the end of $3:" >&2
  tail -n 30 "$3" >&2
  exit 1
}

# --- the mint -----------------------------------------------------------------
export PAYGRESS_DEMO_MINT_MNEMONIC
if [ -f "$DEMO/mint/mnemonic" ]; then
  PAYGRESS_DEMO_MINT_MNEMONIC=$(cat "$DEMO/mint/mnemonic")
else
  mkdir -p "$DEMO/mint"
  # A fixed test phrase is fine for a fake-Lightning demo mint, never for money.
  PAYGRESS_DEMO_MINT_MNEMONIC="abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
  echo "$PAYGRESS_DEMO_MINT_MNEMONIC" > "$DEMO/mint/mnemonic"
  cat > "$DEMO/mint/mint.toml" <<EOF
[info]
url = "$MINT_URL"
listen_host = "127.0.0.1"
listen_port = $MINT_PORT
mnemonic = "env:PAYGRESS_DEMO_MINT_MNEMONIC"
input_fee_ppk = 0
enable_info_page = false

[info.logging]
output = "stderr"
console_level = "info"

[mint_info]
name = "paygress demo mint"
description = "A local mint with a fake Lightning backend: its invoices pay themselves"

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
  env -u CDK_MINTD_DATABASE "$CDK_MINTD" --work-dir "$DEMO/mint" config init --new-mint --file "$DEMO/mint/mint.toml" \
    > "$DEMO/logs/mint-init.log" 2>&1 || { cat "$DEMO/logs/mint-init.log" >&2; die "cdk-mintd config init failed"; }
fi
"$CDK_MINTD" --work-dir "$DEMO/mint" > "$DEMO/logs/mint.log" 2>&1 &
pids+=($!)
wait_ok mint "$MINT_URL/v1/info" "$DEMO/logs/mint.log"

# --- the verifier ---------------------------------------------------------------
cat > "$DEMO/paygress.json" <<EOF
{
  "unit": "sat",
  "mints": ["$MINT_URL"],
  "default_amount": 1000,
  "free_paths": ["/free", "/healthz"],
  "tiers": [
    { "id": "premium-plus", "path_prefix": "/premium-plus", "amount": 5000 },
    { "id": "premium",      "path_prefix": "/premium",      "amount": 1000 }
  ],
  "verifier": { "cluster": "paygress-verifier", "authority": "paygress-verifier", "timeout_ms": 5000 },
  "failure_mode": "deny"
}
EOF
"$PAYGRESS" serve --config "$DEMO/paygress.json" --listen "127.0.0.1:$VERIFIER_PORT" \
  --data-dir "$DEMO/verifier" > "$DEMO/logs/verifier.log" 2>&1 &
pids+=($!)
wait_ok verifier "http://127.0.0.1:$VERIFIER_PORT/readyz" "$DEMO/logs/verifier.log"

# --- the upstream and Envoy -----------------------------------------------------
python3 scripts/echo_upstream.py "$UPSTREAM_PORT" > "$DEMO/logs/upstream.log" 2>&1 &
pids+=($!)
python3 scripts/render.py envoy/envoy.yaml "$DEMO/envoy.yaml" \
  LISTEN_PORT="$LISTEN_PORT" ADMIN_PORT="$ADMIN_PORT" VERIFIER_PORT="$VERIFIER_PORT" \
  UPSTREAM_PORT="$UPSTREAM_PORT" WASM_PATH="$WASM" PLUGIN_CONFIG="$(tr -d '\n' < "$DEMO/paygress.json")"
"$PAYGRESS_ENVOY" -c "$DEMO/envoy.yaml" --disable-hot-restart --log-level warn > "$DEMO/logs/envoy.log" 2>&1 &
pids+=($!)
wait_ok envoy "$GATEWAY/free" "$DEMO/logs/envoy.log"

printf '%sPaygress demo is up%s: mint %s, verifier :%s, upstream :%s, Envoy %s (logs in %s)\n' \
  "$bold" "$reset" "$MINT_URL" "$VERIFIER_PORT" "$UPSTREAM_PORT" "$GATEWAY" "$DEMO/logs"

step "1. A free path goes straight to the upstream"
show "curl $GATEWAY/free/hello"
curl -sS "$GATEWAY/free/hello"; echo

step "2. A paid path without a token: 402, answered inside Envoy"
show "curl -i $GATEWAY/premium/report"
headers=$(curl -sS -D - -o "$DEMO/402.json" "$GATEWAY/premium/report")
printf '%s\n' "$headers" | tr -d '\r' | grep -iE '^(HTTP|x-cashu|content-type)'
cat "$DEMO/402.json"; echo
creq=$(printf '%s\n' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cashu"{print $2}')
echo "The X-Cashu header is a NUT-18 payment request; decoded:"
show "paygress token decode ${creq:0:24}…"
"$PAYGRESS" token decode "$creq"

step "3. A payer funds a wallet at the mint (fake Lightning pays the invoice by itself)"
show "paygress wallet fund --data-dir $DEMO/payer --mint $MINT_URL --amount 5000"
"$PAYGRESS" wallet fund --data-dir "$DEMO/payer" --mint "$MINT_URL" --amount 5000

step "4. paygress pay: request, read the 402, pay with a cashuB token in X-Cashu, retry"
show "paygress pay --data-dir $DEMO/payer $GATEWAY/premium/report"
"$PAYGRESS" pay --data-dir "$DEMO/payer" "$GATEWAY/premium/report"

step "5. The same token twice: the second use is refused"
show "TOKEN=\$(paygress wallet send --data-dir $DEMO/payer --mint $MINT_URL --amount 1000)"
token=$("$PAYGRESS" wallet send --data-dir "$DEMO/payer" --mint "$MINT_URL" --amount 1000)
show "curl -H \"X-Cashu: \$TOKEN\" $GATEWAY/premium/again   # first use"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' -H "X-Cashu: $token" "$GATEWAY/premium/again"
show "curl -H \"X-Cashu: \$TOKEN\" $GATEWAY/premium/again   # replay"
curl -sS -w '\nHTTP %{http_code}\n' -H "X-Cashu: $token" "$GATEWAY/premium/again"

step "6. What the verifier's wallet holds now"
show "paygress wallet balance --data-dir $DEMO/verifier"
"$PAYGRESS" wallet balance --data-dir "$DEMO/verifier" || true

cat <<EOF

${bold}The stack stays up. Try:${reset}
  curl -i $GATEWAY/free/x
  curl -i $GATEWAY/premium-plus/x
  $PAYGRESS pay --data-dir $DEMO/payer --max-amount 5000 $GATEWAY/premium-plus/x
  curl -s http://127.0.0.1:$VERIFIER_PORT/metrics | grep ^paygress
  curl -s http://127.0.0.1:$ADMIN_PORT/stats/prometheus | grep paygress
Ctrl-C stops everything the demo started.
EOF
wait
