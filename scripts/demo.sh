#!/usr/bin/env bash
# `just demo`: the whole Paygress stack on loopback, walked through step by step.
#
#   cdk-mintd (fake Lightning) ◄── paygress verifier ◄── Envoy + paygress filter ──► echo upstream
#
# Everything it starts is stopped on Ctrl-C. State lives in .demo/ (delete it
# to start over). Ports can be moved with PAYGRESS_DEMO_*_PORT.
#
# The config is envoy/plugin-config.json (its mint URL set to the demo's), for
# the verifier and for the filter alike. Its lease tier (/compute) signs passes
# with the key in PAYGRESS_PASS_KEY (base64 of 32 bytes or more): a random one
# per run unless it is set, handed to the verifier and to Envoy (the filter
# reads it through vm_config.environment_variables.host_env_keys).
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

# The pass key: the verifier signs passes with it, the filter checks them.
if [ -z "${PAYGRESS_PASS_KEY:-}" ]; then
  PAYGRESS_PASS_KEY=$(head -c 32 /dev/urandom | base64)
  pass_key_origin="a random key made for this run"
else
  pass_key_origin="the key given in the environment"
fi
export PAYGRESS_PASS_KEY

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
# envoy/plugin-config.json with the demo's mint: the verifier's config and the
# filter's plugin configuration.
python3 - envoy/plugin-config.json "$DEMO/paygress.json" "$MINT_URL" <<'PY'
import json, sys
src, dst, mint = sys.argv[1:]
with open(src) as f:
    config = json.load(f)
config["mints"] = [mint]
with open(dst, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
lease_tier=$(python3 -c 'import json,sys; t=[t for t in json.load(open(sys.argv[1]))["tiers"] if "lease" in t][0]; print(t["path_prefix"], t["amount"], t["lease"]["seconds"])' "$DEMO/paygress.json")
read -r LEASE_PREFIX LEASE_PRICE LEASE_SECONDS <<<"$lease_tier"
# The walk-through buys a lease: passes kept by an earlier run are dropped (a
# pass signed with another run's key would be refused, 400 pass_invalid).
rm -f "$DEMO/payer/passes.json"
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
printf 'Lease passes are signed with PAYGRESS_PASS_KEY: %s, exported to the verifier and to Envoy.\n' "$pass_key_origin"

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

# The filter's counters, from Envoy's admin interface.
# (Envoy prints them with empty labels: `paygress_pass_accepted_total{} 6`.)
counter() { curl -sS "http://127.0.0.1:$ADMIN_PORT/stats/prometheus" | awk -v n="$1" '{sub(/\{\}$/, "", $1)} $1==n{print $2; f=1} END{if(!f) print 0}'; }
# A response header's value (the last one of that name).
header_of() { tr -d '\r' | awk -F': ' -v n="$1" 'tolower($1)==n{v=$2} END{print v}'; }

LEASE_URL="$GATEWAY$LEASE_PREFIX/job"
step "6. A lease tier sells time: $LEASE_PRICE sat buys $LEASE_SECONDS s of $LEASE_PREFIX"
show "curl -i $LEASE_URL"
headers=$(curl -sS -D - -o "$DEMO/402-lease.json" "$LEASE_URL")
printf '%s\n' "$headers" | tr -d '\r' | grep -iE '^(HTTP|x-cashu|content-type)'
cat "$DEMO/402-lease.json"; echo

step "7. paygress pay buys the lease: the answer carries a pass, which it keeps"
show "paygress pay --data-dir $DEMO/payer $LEASE_URL"
"$PAYGRESS" pay --data-dir "$DEMO/payer" "$LEASE_URL"
pass=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["passes"][0]["pass"])' "$DEMO/payer/passes.json")
echo "The pass (kept in $DEMO/payer/passes.json): ${pass:0:40}…"

step "8. The pass opens $LEASE_PREFIX: checked inside Envoy, no token, no call to the verifier"
accepted_before=$(counter paygress_pass_accepted_total)
callouts_before=$(counter paygress_callouts_total)
show "paygress pay --data-dir $DEMO/payer $LEASE_URL   # uses the kept pass, pays nothing"
"$PAYGRESS" pay --data-dir "$DEMO/payer" "$LEASE_URL" | sed -n 1p
for i in 1 2 3; do
  show "curl -H \"X-Paygress-Pass: \$PASS\" $GATEWAY$LEASE_PREFIX/job/$i"
  curl -sS -o /dev/null -w 'HTTP %{http_code}\n' -H "X-Paygress-Pass: $pass" "$GATEWAY$LEASE_PREFIX/job/$i"
done
show "curl -H \"Authorization: Bearer \$PASS\" $GATEWAY$LEASE_PREFIX/job/4"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' -H "Authorization: Bearer $pass" "$GATEWAY$LEASE_PREFIX/job/4"
show "curl -H \"X-Paygress-Pass: \$PASS\" $GATEWAY/premium/report   # another tier's path"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' -H "X-Paygress-Pass: $pass" "$GATEWAY/premium/report"
show "curl -s http://127.0.0.1:$ADMIN_PORT/stats/prometheus | grep -E '^paygress_(pass_accepted|callouts)_total'"
curl -sS "http://127.0.0.1:$ADMIN_PORT/stats/prometheus" | grep -E '^paygress_(pass_accepted|callouts)_total'
printf 'In this step: %s passes accepted by the filter, %s callouts to the verifier.\n' \
  "$(( $(counter paygress_pass_accepted_total) - accepted_before ))" "$(( $(counter paygress_callouts_total) - callouts_before ))"

step "9. What the pass says: offline (decoded, not checked) and as the verifier sees it"
show "paygress lease show \$PASS"
"$PAYGRESS" lease show "$pass"
show "paygress lease show \$PASS --verifier http://127.0.0.1:$VERIFIER_PORT"
"$PAYGRESS" lease show "$pass" --verifier "http://127.0.0.1:$VERIFIER_PORT"

step "10. Topping up: a token sent together with the pass extends the lease"
show "TOKEN=\$(paygress wallet send --data-dir $DEMO/payer --mint $MINT_URL --amount $LEASE_PRICE)"
token=$("$PAYGRESS" wallet send --data-dir "$DEMO/payer" --mint "$MINT_URL" --amount "$LEASE_PRICE")
show "curl -i -H \"X-Cashu: \$TOKEN\" -H \"X-Paygress-Pass: \$PASS\" $LEASE_URL"
headers=$(curl -sS -D - -o /dev/null -H "X-Cashu: $token" -H "X-Paygress-Pass: $pass" "$LEASE_URL")
printf '%s\n' "$headers" | tr -d '\r' | grep -iE '^(HTTP|x-paygress-pass|set-cookie)' | cut -c1-100
topped=$(printf '%s\n' "$headers" | header_of x-paygress-pass)
[ -n "$topped" ] || die "the top-up handed out no pass"
show "paygress lease show \$NEW_PASS"
"$PAYGRESS" lease show "$topped"
show "curl -H \"X-Paygress-Pass: \$NEW_PASS\" $LEASE_URL"
curl -sS -o /dev/null -w 'HTTP %{http_code}\n' -H "X-Paygress-Pass: $topped" "$LEASE_URL"

step "11. What the verifier's wallet holds now"
show "paygress wallet balance --data-dir $DEMO/verifier"
"$PAYGRESS" wallet balance --data-dir "$DEMO/verifier" || true

cat <<EOF

${bold}The stack stays up. Try:${reset}
  curl -i $GATEWAY/free/x
  curl -i $GATEWAY/premium-plus/x
  $PAYGRESS pay --data-dir $DEMO/payer --max-amount 5000 $GATEWAY/premium-plus/x
  $PAYGRESS pay --data-dir $DEMO/payer $LEASE_URL      # on the kept pass
  $PAYGRESS lease show --verifier http://127.0.0.1:$VERIFIER_PORT $topped
  curl -s http://127.0.0.1:$VERIFIER_PORT/metrics | grep ^paygress
  curl -s http://127.0.0.1:$ADMIN_PORT/stats/prometheus | grep paygress
Ctrl-C stops everything the demo started.
EOF
wait
