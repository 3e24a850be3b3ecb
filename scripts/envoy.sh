#!/usr/bin/env bash
# `just envoy`: renders an Envoy config template with the defaults of
# envoy/defaults.env (override any of them in the environment) and runs it with
# func-e when it is on PATH, else with the Envoy from the tools cache.
#
#   bash scripts/envoy.sh [envoy/envoy.yaml] [extra envoy args...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh

config=${1:-envoy/envoy.yaml}
shift || true
declare -A given=()
for k in LISTEN_PORT ADMIN_PORT VERIFIER_PORT UPSTREAM_PORT WASM_PATH PLUGIN_CONFIG; do
  [ -n "${!k:-}" ] && given[$k]=${!k}
done
set -a; . envoy/defaults.env; set +a
for k in "${!given[@]}"; do printf -v "$k" '%s' "${given[$k]}"; done
case "$WASM_PATH" in /*) ;; *) WASM_PATH=$PWD/$WASM_PATH ;; esac
plugin_file=envoy/plugin-config.json
[[ "$config" == *istio* ]] && plugin_file=envoy/plugin-config-istio.json
PLUGIN_CONFIG=${PLUGIN_CONFIG:-$(tr -d '\n' < "$plugin_file")}

# The filter reads the signing pass key of envoy/plugin-config*.json from
# Envoy's environment (host_env_keys). It must be the verifier's key: without
# one given, a throwaway key lets Envoy start, and passes the verifier signs
# are not handed out (the filter logs why).
if [ -z "${PAYGRESS_PASS_KEY:-}" ]; then
  echo "envoy: PAYGRESS_PASS_KEY is not set; using a throwaway key (export the verifier's to sell leases)" >&2
  PAYGRESS_PASS_KEY=$(head -c 32 /dev/urandom | base64)
fi
export PAYGRESS_PASS_KEY

rendered=$(mktemp --suffix=.yaml)
python3 scripts/render.py "$config" "$rendered" LISTEN_PORT="$LISTEN_PORT" ADMIN_PORT="$ADMIN_PORT" \
  VERIFIER_PORT="$VERIFIER_PORT" UPSTREAM_PORT="$UPSTREAM_PORT" WASM_PATH="$WASM_PATH" \
  PLUGIN_CONFIG="$PLUGIN_CONFIG"
echo "envoy: $config rendered to $rendered; listening on 127.0.0.1:$LISTEN_PORT (admin :$ADMIN_PORT)"
if command -v func-e >/dev/null; then
  exec func-e run -c "$rendered" --disable-hot-restart "$@"
fi
[ -x "$PAYGRESS_ENVOY" ] || { echo "envoy: no func-e on PATH and no $PAYGRESS_ENVOY: run 'just setup'" >&2; exit 1; }
exec "$PAYGRESS_ENVOY" -c "$rendered" --disable-hot-restart "$@"
