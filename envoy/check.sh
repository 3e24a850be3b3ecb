#!/usr/bin/env bash
# Renders every Envoy config template in envoy/ with the defaults of
# envoy/defaults.env (and the plugin configuration that goes with each file),
# then runs `envoy --mode validate` on each. Exit status 0 when all pass.
#
#   bash envoy/check.sh            # WASM_PATH from defaults.env (build it first)
#   WASM_PATH=/abs/x.wasm bash envoy/check.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
# shellcheck source=scripts/tools.sh
. scripts/tools.sh
wasm_override=${WASM_PATH:-}
set -a
# shellcheck source=envoy/defaults.env
. envoy/defaults.env
set +a
WASM_PATH=${wasm_override:-$root/$WASM_PATH}

envoy_bin=${PAYGRESS_ENVOY:-}
[ -x "$envoy_bin" ] || envoy_bin=$(command -v envoy || true)
[ -n "$envoy_bin" ] || { echo "check.sh: no envoy: run 'just setup'" >&2; exit 1; }
[ -f "$WASM_PATH" ] || {
  echo "check.sh: $WASM_PATH is missing: cargo build -p paygress-filter --target wasm32-wasip1 --profile wasm-release" >&2
  exit 1
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for template in envoy/*.yaml; do
  name=$(basename "$template" .yaml)
  plugin_config=envoy/plugin-config.json
  case "$name" in *istio*) plugin_config=envoy/plugin-config-istio.json ;; esac
  python3 scripts/render.py "$template" "$out/$name.yaml" \
    LISTEN_PORT="$LISTEN_PORT" ADMIN_PORT="$ADMIN_PORT" VERIFIER_PORT="$VERIFIER_PORT" \
    UPSTREAM_PORT="$UPSTREAM_PORT" WASM_PATH="$WASM_PATH" \
    PLUGIN_CONFIG="$(tr -d '\n' < "$plugin_config")"
  if "$envoy_bin" --mode validate -c "$out/$name.yaml" --log-level error > "$out/$name.log" 2>&1; then
    echo "ok    $template"
  else
    echo "FAIL  $template" >&2
    cat "$out/$name.log" >&2
    status=1
  fi
done
exit "$status"
