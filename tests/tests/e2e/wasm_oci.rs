//! `scripts/wasm-oci.sh` writes an OCI image layout that Istio's Wasm
//! fetcher accepts: checked blob by blob (every digest and size), in both
//! variants Istio reads (compat: one tar+gzip layer holding `plugin.wasm`;
//! oci: the Wasm artifact layers), and deterministic (the same module gives
//! the same manifest digest, which is what WasmPlugin's `sha256` pins).

use std::path::Path;
use std::process::Command;

use paygress_tests::process::run_checked;
use paygress_tests::tools;
use serde_json::Value;

/// A minimal valid Wasm module header plus a payload, so the test does not
/// need the filter's build.
fn fake_module(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("filter.wasm");
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(b"paygress test payload");
    std::fs::write(&path, &bytes).unwrap_or_else(|err| panic!("{err}"));
    path
}

fn sha256_hex(path: &Path) -> String {
    let mut command = Command::new("sha256sum");
    command.arg(path);
    let output = run_checked("sha256sum", command);
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// Runs the script; returns the stdout.
fn write_layout(wasm: &Path, out: &Path, variant: &str) -> String {
    let mut command = Command::new("bash");
    command
        .arg(tools::workspace_root().join("scripts").join("wasm-oci.sh"))
        .arg("--wasm")
        .arg(wasm)
        .arg("--out")
        .arg(out)
        .arg("--tag")
        .arg("9.9.9")
        .arg("--variant")
        .arg(variant);
    let output = run_checked("wasm-oci.sh", command);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Checks a descriptor against its blob; returns the blob's path.
fn blob(out: &Path, descriptor: &Value) -> std::path::PathBuf {
    let digest = descriptor["digest"].as_str().unwrap_or_default();
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest} is not sha256"));
    let path = out.join("blobs").join("sha256").join(hex);
    assert!(path.is_file(), "blob {digest} is missing");
    assert_eq!(sha256_hex(&path), hex, "blob {digest} has another digest");
    let size = std::fs::metadata(&path)
        .map(|m| m.len())
        .unwrap_or_default();
    assert_eq!(descriptor["size"].as_u64(), Some(size), "size of {digest}");
    path
}

/// Checks the layout; returns (manifest digest, manifest).
fn check_layout(out: &Path) -> (String, Value) {
    assert_eq!(
        read_json(&out.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = read_json(&out.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
    assert_eq!(manifests.len(), 1, "{index}");
    let descriptor = &manifests[0];
    assert_eq!(
        descriptor["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        descriptor["annotations"]["org.opencontainers.image.ref.name"],
        "9.9.9"
    );
    let manifest_path = blob(out, descriptor);
    let manifest = read_json(&manifest_path);
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    blob(out, &manifest["config"]);
    for layer in manifest["layers"].as_array().cloned().unwrap_or_default() {
        blob(out, &layer);
    }
    let digest = descriptor["digest"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (digest, manifest)
}

#[test]
fn the_compat_layout_holds_plugin_wasm_and_is_deterministic() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let wasm = fake_module(dir.path());
    let out = dir.path().join("layout");
    let printed = write_layout(&wasm, &out, "compat");
    let (digest, manifest) = check_layout(&out);

    // Istio: a single application/vnd.oci.image.layer.v1.tar+gzip layer with
    // plugin.wasm; the compat annotation.
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(layers.len(), 1, "{manifest}");
    assert_eq!(
        layers[0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(
        manifest["annotations"]["module.wasm.image/variant"],
        "compat"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let config = read_json(&blob(&out, &manifest["config"]));
    let layer_path = blob(&out, &layers[0]);
    let extracted = dir.path().join("extracted");
    std::fs::create_dir_all(&extracted).unwrap_or_else(|err| panic!("{err}"));
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&layer_path).arg("-C").arg(&extracted);
    run_checked("tar", tar);
    let plugin = std::fs::read(extracted.join("plugin.wasm"))
        .unwrap_or_else(|err| panic!("the layer has no plugin.wasm: {err}"));
    assert_eq!(plugin, std::fs::read(&wasm).unwrap_or_default());
    // The config's diff_id is the uncompressed layer's digest.
    let mut gunzip = Command::new("gzip");
    gunzip.arg("-dc").arg(&layer_path);
    let tar_bytes = run_checked("gzip -dc", gunzip).stdout;
    let tar_path = dir.path().join("layer.tar");
    std::fs::write(&tar_path, tar_bytes).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar_path))
    );

    // What the user copies into the WasmPlugin.
    let hex = digest.trim_start_matches("sha256:");
    assert!(printed.contains(&format!("sha256: {hex}")), "{printed}");
    assert!(printed.contains(&sha256_hex(&wasm)), "{printed}");

    // Deterministic: a second run gives the same manifest digest.
    let again = dir.path().join("again");
    write_layout(&wasm, &again, "compat");
    assert_eq!(check_layout(&again).0, digest);
}

#[test]
fn the_oci_variant_has_the_wasm_artifact_layers() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let wasm = fake_module(dir.path());
    let out = dir.path().join("layout");
    write_layout(&wasm, &out, "oci");
    let (_, manifest) = check_layout(&out);
    // Istio's fetcher wants exactly two layers, one of them the module.
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    assert_eq!(layers.len(), 2, "{manifest}");
    let module = layers
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm")
        .unwrap_or_else(|| panic!("no wasm content layer: {manifest}"));
    assert_eq!(
        std::fs::read(blob(&out, module)).unwrap_or_default(),
        std::fs::read(&wasm).unwrap_or_default()
    );
    assert!(layers
        .iter()
        .any(|l| l["mediaType"] == "application/vnd.module.wasm.config.v1+json"));
}

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let dir = tempfile::tempdir().unwrap_or_else(|err| panic!("{err}"));
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, b"#!/bin/sh\necho hi\n").unwrap_or_else(|err| panic!("{err}"));
    let status = Command::new("bash")
        .arg(tools::workspace_root().join("scripts").join("wasm-oci.sh"))
        .arg("--wasm")
        .arg(&not_wasm)
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(!status.status.success());
    assert!(String::from_utf8_lossy(&status.stderr).contains("not a Wasm module"));
}
