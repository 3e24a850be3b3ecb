#!/usr/bin/env bash
# Writes an OCI image layout holding the Paygress filter (.wasm) in a form
# that Istio's WasmPlugin (and Envoy Gateway, Kuadrant, ...) can pull, with
# plain files and sha256: no docker, no registry, no network.
#
#   scripts/wasm-oci.sh [--wasm FILE] [--out DIR] [--tag TAG] [--variant compat|oci]
#
# Defaults: the release build of the filter, target/oci/paygress-filter, the
# workspace version as tag, the compat variant.
#
# Variants (https://github.com/solo-io/wasm/tree/master/spec), both read by
# Istio's fetcher (pkg/wasm/imagefetcher.go):
#   compat  one layer, application/vnd.oci.image.layer.v1.tar+gzip, holding
#           plugin.wasm; an ordinary OCI image that every registry and every
#           tool (crane, skopeo, oras, docker) handles. The default.
#   oci     the Wasm artifact form: a runtime-config layer
#           (application/vnd.module.wasm.config.v1+json) and the module itself
#           as application/vnd.module.wasm.content.layer.v1+wasm. Needs a
#           registry that accepts custom media types (most do today).
#
# The output is deterministic: the same .wasm gives the same digests.
# It prints the manifest digest: that is what WasmPlugin's `sha256` must be
# for an oci:// url (Istio compares the image manifest's digest, without the
# "sha256:" prefix), or pin the url itself: oci://REGISTRY/REPO@sha256:DIGEST.
#
# Pushing is yours (any of these keeps the manifest, hence the digest, as is):
#   oras cp --from-oci-layout target/oci/paygress-filter:TAG REGISTRY/REPO:TAG
#   skopeo copy --preserve-digests oci:target/oci/paygress-filter:TAG docker://REGISTRY/REPO:TAG
#   crane push target/oci/paygress-filter REGISTRY/REPO:TAG
set -euo pipefail

root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
wasm="$root_dir/target/wasm32-wasip1/wasm-release/paygress_filter.wasm"
out="$root_dir/target/oci/paygress-filter"
tag=""
variant="compat"

die() { printf 'wasm-oci: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --wasm) wasm=${2:?--wasm needs a file}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --variant) variant=${2:?--variant needs compat or oci}; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done

case "$variant" in compat|oci) ;; *) die "--variant must be compat or oci, not $variant" ;; esac
[ -f "$wasm" ] || die "no .wasm at $wasm: build it first (just build)"
# A Wasm module starts with "\0asm".
[ "$(head -c 4 "$wasm" | od -An -tx1 | tr -d ' \n')" = "0061736d" ] || die "$wasm is not a Wasm module"
if [ -z "$tag" ]; then
  tag=$(awk -F'"' '/^version *= *"/{print $2; exit}' "$root_dir/Cargo.toml")
  tag=${tag:-latest}
fi
for tool in sha256sum tar gzip; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c < "$1" | tr -d ' '; }

rm -rf "$out"
mkdir -p "$out/blobs/sha256"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Moves a file into the blob store; prints its hex digest.
put_blob() {
  local d
  d=$(sha "$1")
  cp "$1" "$out/blobs/sha256/$d"
  printf '%s' "$d"
}

wasm_sha=$(sha "$wasm")
created="1970-01-01T00:00:00Z"

if [ "$variant" = compat ]; then
  mkdir -p "$work/layer"
  cp "$wasm" "$work/layer/plugin.wasm"
  chmod 0644 "$work/layer/plugin.wasm"
  # Reproducible tar: fixed order, owner and time; gzip without name or time.
  tar --sort=name --mtime="@0" --owner=0 --group=0 --numeric-owner \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$work/layer" -cf "$work/layer.tar" plugin.wasm
  gzip -9 -n -c "$work/layer.tar" > "$work/layer.tar.gz"
  diff_id=$(sha "$work/layer.tar")
  layer_digest=$(put_blob "$work/layer.tar.gz")
  layer_size=$(size "$work/layer.tar.gz")

  printf '{"architecture":"wasm","os":"wasip1","created":"%s","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$created" "$diff_id" > "$work/config.json"
  config_media="application/vnd.oci.image.config.v1+json"
  config_digest=$(put_blob "$work/config.json")
  config_size=$(size "$work/config.json")

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"%s","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}],"annotations":{"module.wasm.image/variant":"compat","org.opencontainers.image.title":"paygress-filter","org.opencontainers.image.version":"%s","org.opencontainers.image.created":"%s"}}' \
    "$config_media" "$config_digest" "$config_size" "$layer_digest" "$layer_size" "$tag" "$created" > "$work/manifest.json"
else
  # The runtime config of the Wasm artifact spec: an Envoy (proxy-wasm) module.
  printf '{"type":"envoy_proxy","abiVersions":["proxy_abi_version_0_2_1"],"config":{"root_ids":[]}}' > "$work/runtime-config.json"
  config_media="application/vnd.module.wasm.config.v1+json"
  config_digest=$(put_blob "$work/runtime-config.json")
  config_size=$(size "$work/runtime-config.json")
  wasm_digest=$(put_blob "$wasm")
  wasm_size=$(size "$wasm")

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"%s","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"%s","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"runtime-config.json"}},{"mediaType":"application/vnd.module.wasm.content.layer.v1+wasm","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"plugin.wasm"}}],"annotations":{"org.opencontainers.image.title":"paygress-filter","org.opencontainers.image.version":"%s","org.opencontainers.image.created":"%s"}}' \
    "$config_media" "$config_digest" "$config_size" "$config_media" "$config_digest" "$config_size" "$wasm_digest" "$wasm_size" "$tag" "$created" > "$work/manifest.json"
fi

manifest_digest=$(put_blob "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")

printf '{"imageLayoutVersion":"1.0.0"}' > "$out/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
  "$manifest_digest" "$manifest_size" "$tag" > "$out/index.json"

cat <<EOF
OCI image layout ($variant variant) written to $out
  tag:             $tag
  manifest digest: sha256:$manifest_digest
  wasm sha256:     $wasm_sha

In the WasmPlugin (wasm-plugins/paygress-wasmplugin.yaml):
  url: oci://REGISTRY/REPO:$tag
  sha256: $manifest_digest
or pinned:
  url: oci://REGISTRY/REPO@sha256:$manifest_digest
(serving the .wasm over https instead? then sha256 is the wasm's: $wasm_sha)

Push it (the digest stays the same):
  oras cp --from-oci-layout $out:$tag REGISTRY/REPO:$tag
  skopeo copy --preserve-digests oci:$out:$tag docker://REGISTRY/REPO:$tag
EOF
