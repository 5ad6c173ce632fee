//! `xtask-bindgen WASM DIST NAME keep-names|strip-names`: writes the JS glue of the browser
//! client (wasm-bindgen, `--target web`, no TypeScript) into DIST.
//!
//! A binary of its own, behind xtask's `bindgen` feature, so that `cargo xtask` itself compiles
//! in about a minute on a fresh clone: the wasm parsers under wasm-bindgen's library are two
//! thirds of xtask's build (BENCHMARKS.md, "First contact"), and `cargo xtask serve` builds
//! them only after the service already answers.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wasm, dist, name, names] = args.as_slice() else {
        bail!("usage: xtask-bindgen WASM DIST NAME keep-names|strip-names");
    };
    let remove_names = match names.as_str() {
        "keep-names" => false,
        "strip-names" => true,
        other => bail!("expected keep-names or strip-names, got {other:?}"),
    };
    let (wasm, dist) = (PathBuf::from(wasm), PathBuf::from(dist));
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name(name)
        .web(true)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen: {e}"))?
        .typescript(false)
        // Function names (2.5 MB of 25) only for debugging builds.
        .remove_name_section(remove_names)
        .generate(&dist)
        .map_err(|e| anyhow::anyhow!("wasm-bindgen on {}: {e}", wasm.display()))
        .with_context(|| format!("writing the glue into {}", dist.display()))
}
