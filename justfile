# Paygress: developer and user entry points. `just --list` shows them all.
# Tools go into a versioned cache outside the checkout (PAYGRESS_TOOLS,
# default ~/.cache/paygress); see scripts/tools.sh.

set shell := ["bash", "-euo", "pipefail", "-c"]

wasm := "target/wasm32-wasip1/wasm-release/paygress_filter.wasm"

# List the recipes.
default:
    @just --list

# Install what the tests and the demo need (Rust targets, protoc, nginx, wrk, Envoy, Traefik, cdk-mintd, wasm-bindgen).
setup:
    bash scripts/setup.sh

# Build the verifier (debug) and the filter (.wasm, release).
build:
    cargo build -p paygress-verifier
    cargo build -p paygress-filter --target wasm32-wasip1 --profile wasm-release
    # binaryen's size pass (docs/performance.md); the features are rustc's wasm32 defaults.
    wasm-opt -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types --enable-extended-const {{wasm}} -o {{wasm}}.opt && mv {{wasm}}.opt {{wasm}}
    @ls -l {{wasm}}

# Formatting and clippy (-D warnings), native and wasm32.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings
    cargo clippy -p paygress-filter --target wasm32-wasip1 --locked -- -D warnings
    cargo clippy -p paygress-core --target wasm32-unknown-unknown --locked -- -D warnings

# Core's tests inside wasm32 (wasm-bindgen-test under Node).
test-wasm:
    source scripts/tools.sh && \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$WASM_BINDGEN_RUNNER" \
      cargo test -p paygress-core --target wasm32-unknown-unknown --locked
    cargo build -p paygress-core --target wasm32-wasip1 --locked

# Every test: lint, native unit and end-to-end tests, and core's tests on wasm32.
test: setup lint build
    source scripts/tools.sh && cargo test --workspace --locked -- --test-threads "${PAYGRESS_TEST_THREADS:-2}"
    just test-wasm

# Render every Envoy config in envoy/ and validate it with the real Envoy.
check-envoy: setup build
    source scripts/tools.sh && cargo test -p paygress-tests --test e2e --locked -- envoy_configs::

# Benchmarks: each number beside a baseline measured in the same run, one table at the end, also as JSON in target/bench/ (`just bench envoy`, `just bench redeem` or `just bench replicas` for one part; scripts/bench.sh lists the cases and knobs).
bench which="all": setup build
    bash scripts/bench.sh {{which}}

# Soak for MINUTES (default 30): PostgreSQL, a mint, two release verifiers on one database, Envoy with the filter; mixed requests at a fixed rate (`just soak 2 --rate 20`); RSS/FD slopes and money invariants (exit 1 when one fails); report in target/soak/.
soak minutes="30" *flags: setup build
    if [ -z "${PAYGRESS_BIN:-}" ]; then CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo build --release -p paygress-verifier --locked --quiet; fi
    source scripts/tools.sh && PAYGRESS_BIN="${PAYGRESS_BIN:-$PWD/target/release/paygress}" cargo run -p paygress-tests --bin soak --locked -- --minutes {{minutes}} {{flags}}

# Run the whole stack locally and walk through a payment and a lease (Ctrl-C stops it).
demo: setup build
    bash scripts/demo.sh

# Run Envoy with the filter (func-e when on PATH, else the Envoy from the tools cache).
envoy: build
    bash scripts/envoy.sh envoy/envoy.yaml

# Write the filter as an OCI image layout for Istio's WasmPlugin (target/oci/paygress-filter); pushing is yours.
oci: build
    bash scripts/wasm-oci.sh

# The pod suites against the real cluster KUBECONFIG names (kind, k3d; namespace PAYGRESS_TEST_NAMESPACE, default paygress-test, must exist).
test-k8s: setup build
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${KUBECONFIG:-}" ]; then
      echo "test-k8s: set KUBECONFIG to the cluster's kubeconfig (kind: kind get kubeconfig > /tmp/kind.yaml)" >&2
      exit 1
    fi
    source scripts/tools.sh
    PAYGRESS_TEST_KUBECONFIG="$KUBECONFIG" cargo test -p paygress-tests --test e2e --locked -- pods::any_cluster:: --test-threads 1
