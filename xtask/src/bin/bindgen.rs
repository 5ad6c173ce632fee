//! `xtask-bindgen WASM DIST NAME keep-names|strip-names`: writes the JS glue of the browser
//! client (wasm-bindgen, `--target web`, no TypeScript) into DIST.
//! `xtask-bindgen brotli FILE...`: writes `FILE.br` beside each file (quality 11), which the
//! service sends to browsers that accept brotli instead of compressing on the fly.
//!
//! A binary of its own, behind xtask's `bindgen` feature, so that `cargo xtask` itself compiles
//! in about a minute on a fresh clone: the wasm parsers under wasm-bindgen's library are two
//! thirds of xtask's build (BENCHMARKS.md, "First contact"), and `cargo xtask serve` builds
//! them only after the service already answers.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(("brotli", files)) = args.split_first().map(|(a, r)| (a.as_str(), r)) {
        return files.iter().try_for_each(|f| precompress(Path::new(f)));
    }
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

/// Writes `file.br`: brotli at its best quality with a 16 MB window (the whole wasm), which
/// sends a sixth fewer bytes than the on-the-fly quality 4 (3.45 against 4.10 MB on a
/// size-optimised build; the shipped wasm is 3.76 MB). Written to a
/// temporary name first, so the service never sends half a file.
fn precompress(file: &Path) -> Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let out = file.with_extension(format!(
        "{}.br",
        file.extension().unwrap_or_default().to_string_lossy()
    ));
    let tmp = out.with_extension("br.tmp");
    {
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        let mut w = brotli::CompressorWriter::new(f, 1 << 16, 11, 24);
        w.write_all(&data)?;
        w.flush()?;
    }
    std::fs::rename(&tmp, &out)?;
    Ok(())
}
