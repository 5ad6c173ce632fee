//! `cargo xtask web`: build the browser client into `frontend/dist` without extra tools.
//!
//! It does what `trunk build` does with `frontend/index.html`: cargo builds the
//! `visage-frontend` crate for wasm32, the wasm-bindgen library (pinned to the exact version
//! of the `wasm-bindgen` crate in Cargo.lock, which the two must share; in the `xtask-bindgen`
//! binary) writes the JS glue, and the `data-trunk` links of index.html are replaced by plain
//! ones. Output names are stable
//! (`visage-frontend.js`, `visage-frontend_bg.wasm`, as trunk's with `filehash = false`), so a
//! Web Worker can import the same glue; the service serves them with `Cache-Control: no-cache`
//! and revalidation instead of hashed names.
//!
//! Why not trunk here: a fresh machine would need `cargo install trunk` and
//! `wasm-bindgen-cli` first (a quarter of an hour on 2 cores), and trunk's inline boot script
//! is refused by the service's Content-Security-Policy. `trunk serve` still works for
//! development with the same index.html.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use sha2::Digest;

use crate::{cargo, root, run};

/// Name of the bin crate and of the files the glue is written to.
const APP: &str = "visage-frontend";

/// Build options.
pub struct WebArgs {
    /// Cargo's release profile (smaller, faster wasm, no name section) instead of dev.
    pub release: bool,
    /// Also binaryen's `wasm-opt -O3` (from npm, cached by input): a tenth smaller wasm, but
    /// not once compressed, and no faster (BENCHMARKS.md, "First contact (cold build)").
    pub wasm_opt: bool,
    /// Build without wasm SIMD (for the benchmark's comparison), in a separate target dir.
    pub no_simd: bool,
    /// Output directory.
    pub dist: PathBuf,
}

/// Cargo profile of the browser client's release build (Cargo.toml).
const WEB_RELEASE: &str = "web-release";

/// The target the browser client (and the wasm check of the pipeline) is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Installs Rust's standard library for [`WASM_TARGET`] with `rustup target add` when the rustc
/// that cargo runs lacks it (rustup installs only the host's). Without it cargo fails minutes
/// into a build with "can't find crate for `core`".
///
/// The check looks in that rustc's sysroot rather than at `rustup target list --installed`, so
/// it follows the toolchain cargo was started with (rustup passes it on in RUSTUP_TOOLCHAIN)
/// and also accepts a rustc that is not rustup's but has the target.
pub fn ensure_wasm_target() -> Result<()> {
    if wasm_target_installed()? {
        return Ok(());
    }
    if !crate::on_path("rustup") {
        bail!(
            "Rust's standard library for {WASM_TARGET} (the browser client's target) is not \
             installed, and rustup is not on PATH to add it: install Rust with rustup \
             (https://rustup.rs), or with Debian's rustc `apt-get install libstd-rust-dev-wasm32`"
        );
    }
    crate::progress::say(&format!(
        "xtask: the {WASM_TARGET} target is missing: rustup target add {WASM_TARGET}"
    ));
    run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    if !wasm_target_installed()? {
        bail!(
            "`rustup target add {WASM_TARGET}` succeeded, but the rustc on PATH still has no \
             {WASM_TARGET} standard library (is it not rustup's?)"
        );
    }
    Ok(())
}

/// Whether the rustc cargo uses has a `core` library for [`WASM_TARGET`].
fn wasm_target_installed() -> Result<bool> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", WASM_TARGET])
        .output()
        .with_context(|| format!("running {} --print target-libdir", rustc.display()))?;
    if !out.status.success() {
        bail!(
            "{} --print target-libdir --target {WASM_TARGET}: {}",
            rustc.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let libdir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    Ok(std::fs::read_dir(&libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
    }))
}

/// Builds the app into `args.dist` and returns the size of the wasm in bytes.
pub fn build(args: &WebArgs) -> Result<u64> {
    ensure_wasm_target()?;
    let root = root();
    let target_dir = target_dir(args.no_simd)?;
    let mut cmd = cargo();
    cmd.args(["build", "--quiet", "-p", APP, "--target", WASM_TARGET])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target_dir);
    if args.release {
        // The release profile without debug info and with the model loaders at opt-level 3
        // (Cargo.toml: the native release build lowers them, the browser loads models in
        // every worker at page load).
        cmd.args(["--profile", WEB_RELEASE]);
    }
    if args.no_simd {
        // Overrides .cargo/config.toml's target rustflags (which add +simd128).
        cmd.env("RUSTFLAGS", "--cfg getrandom_backend=\"wasm_js\"");
    }
    run(&mut cmd)?;
    let profile = if args.release { WEB_RELEASE } else { "debug" };
    let wasm = target_dir
        .join(WASM_TARGET)
        .join(profile)
        .join(format!("{APP}.wasm"));

    let dist = if args.dist.is_absolute() {
        args.dist.clone()
    } else {
        root.join(&args.dist)
    };
    let out_wasm = dist.join(format!("{APP}_bg.wasm"));
    // wasm-bindgen (and wasm-opt) again only when the wasm or the options changed: a second
    // `serve` then starts in seconds.
    let stamp = target_dir.join("xtask-web").join(format!(
        "{}.key",
        hex::encode(&sha2::Sha256::digest(dist.to_string_lossy().as_bytes())[..8])
    ));
    let key = format!(
        "{} release={} wasm_opt={} no_simd={}",
        crate::sha256_file(&wasm)?,
        args.release,
        args.wasm_opt,
        args.no_simd
    );
    let fresh = out_wasm.exists()
        && dist.join(format!("{APP}.js")).exists()
        && (!args.release || dist.join(format!("{APP}_bg.wasm.br")).exists())
        && std::fs::read_to_string(&stamp).ok().as_deref() == Some(key.as_str());
    if !fresh {
        if dist.exists() {
            std::fs::remove_dir_all(&dist)
                .with_context(|| format!("clearing {}", dist.display()))?;
        }
        std::fs::create_dir_all(&dist)?;
        // The glue generator is a binary of its own (see src/bin/bindgen.rs), built on first
        // use with the native target directory.
        run(cargo()
            .args(["run", "--quiet", "-p", "xtask", "--features", "bindgen"])
            .args(["--bin", "xtask-bindgen", "--"])
            .arg(&wasm)
            .arg(&dist)
            .arg(APP)
            // Function names (2.5 MB of 25) only for debugging builds; wasm-opt drops them too.
            .arg(if args.release {
                "strip-names"
            } else {
                "keep-names"
            })
            .current_dir(&root))
        .context("wasm-bindgen (xtask-bindgen)")?;
        if args.wasm_opt {
            wasm_opt(&out_wasm)?;
        }
        if args.release {
            // The release app is what a first visit downloads (issue 12: <= 4 MB on the wire).
            crate::progress::say(
                "web: brotli quality 11 of the wasm and its glue (about a minute)",
            );
            run(cargo()
                .args(["run", "--quiet", "-p", "xtask", "--features", "bindgen"])
                .args(["--bin", "xtask-bindgen", "--", "brotli"])
                .arg(&out_wasm)
                .arg(dist.join(format!("{APP}.js")))
                .current_dir(&root))
            .context("precompressing the app (xtask-bindgen brotli)")?;
        }
        std::fs::create_dir_all(stamp.parent().context("stamp dir")?)?;
        std::fs::write(&stamp, &key)?;
    }

    let frontend = root.join("frontend");
    let html = std::fs::read_to_string(frontend.join("index.html"))?;
    let (html, copies) = rewrite_index(&html)?;
    for file in copies {
        let from = frontend.join(&file);
        std::fs::copy(&from, dist.join(&file))
            .with_context(|| format!("copying {}", from.display()))?;
    }
    let size = std::fs::metadata(&out_wasm)?.len();
    // The loading bar's total: with compression the response's length is not the wasm's.
    let html = html.replacen(
        "<progress id=\"boot-progress\"",
        &format!("<progress id=\"boot-progress\" data-wasm-bytes=\"{size}\""),
        1,
    );
    std::fs::write(dist.join("index.html"), html)?;
    std::fs::write(dist.join("boot.js"), BOOT_JS)?;
    crate::progress::say(&format!(
        "web: {} ({profile}{}{}), wasm {:.1} MB{}",
        dist.display(),
        if args.wasm_opt { ", wasm-opt -O3" } else { "" },
        if args.no_simd { ", no SIMD" } else { "" },
        size as f64 / 1e6,
        if fresh { " (up to date)" } else { "" }
    ));
    Ok(size)
}

/// Started by index.html as a module file: an inline script would need `unsafe-inline` in the
/// service's Content-Security-Policy.
const BOOT_JS: &str = "// Written by `cargo xtask web`: loads the app's wasm.\n\
import init from './visage-frontend.js';\n\
await init({ module_or_path: new URL('./visage-frontend_bg.wasm', import.meta.url) });\n";

/// binaryen's optimiser, pinned (the version Trunk.toml names), from the npm registry.
const BINARYEN: &str = "binaryen@132.0.0";

/// Optimises the wasm in place with binaryen's `wasm-opt -O3`. The result is cached by the
/// input's sha256 under `.visage/wasm-opt/`: binaryen's JS build takes minutes on 25 MB.
fn wasm_opt(wasm: &Path) -> Result<()> {
    let before = std::fs::metadata(wasm)?.len();
    let cache = root().join(".visage/wasm-opt");
    let key = crate::sha256_file(wasm)?;
    let cached = cache.join(format!("{key}.wasm"));
    if !cached.exists() {
        let bin = binaryen()?;
        std::fs::create_dir_all(&cache)?;
        let tmp = cache.join(format!("{key}.tmp"));
        // The features rustc enables for wasm32 by default, plus SIMD (a build without it
        // simply does not use it).
        run(Command::new(&bin)
            .arg("-O3")
            .args([
                "--enable-simd",
                "--enable-bulk-memory",
                "--enable-sign-ext",
                "--enable-mutable-globals",
                "--enable-nontrapping-float-to-int",
                "--enable-reference-types",
                "--enable-multivalue",
            ])
            .arg(wasm)
            .arg("-o")
            .arg(&tmp))?;
        std::fs::rename(&tmp, &cached)?;
    }
    std::fs::copy(&cached, wasm)?;
    let after = std::fs::metadata(wasm)?.len();
    crate::progress::say(&format!(
        "web: wasm-opt -O3: {:.1} MB -> {:.1} MB",
        before as f64 / 1e6,
        after as f64 / 1e6
    ));
    Ok(())
}

/// The pinned binaryen's `wasm-opt`, installed from npm on first use.
fn binaryen() -> Result<PathBuf> {
    let prefix = root().join(".visage/binaryen");
    let bin = prefix.join("node_modules/.bin/wasm-opt");
    let stamp = prefix.join("version.txt");
    if !bin.exists() || std::fs::read_to_string(&stamp).ok().as_deref() != Some(BINARYEN) {
        std::fs::create_dir_all(&prefix)?;
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
            .arg(&prefix)
            .arg(BINARYEN))?;
        std::fs::write(&stamp, BINARYEN)?;
    }
    Ok(bin)
}

fn target_dir(no_simd: bool) -> Result<PathBuf> {
    let base = match std::env::var_os("CARGO_TARGET_DIR") {
        // Relative to where xtask was started, as cargo reads it; cargo runs from the root here.
        Some(d) => std::env::current_dir()?.join(d),
        None => root().join("target"),
    };
    Ok(if no_simd {
        // Different rustflags would otherwise rebuild every wasm dependency back and forth.
        PathBuf::from(format!("{}-nosimd", base.display()))
    } else {
        base
    })
}

/// Replaces the `<link data-trunk ...>` tags of index.html: `rust` by the boot script,
/// `css` by a stylesheet link, `copy-file` by nothing (the file is copied). Returns the page
/// and the files to copy beside it.
fn rewrite_index(html: &str) -> Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(html.len() + 256);
    let mut copies = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find("<link") {
        let end = start
            + rest[start..]
                .find('>')
                .context("index.html: unterminated <link")?;
        let tag = &rest[start..=end];
        out.push_str(&rest[..start]);
        rest = &rest[end + 1..];
        if !tag.contains("data-trunk") {
            out.push_str(tag);
            continue;
        }
        let rel = attr(tag, "rel").context("data-trunk link without rel")?;
        match rel {
            "rust" => out.push_str(&format!(
                "<link rel=\"modulepreload\" href=\"/{APP}.js\">\
                 <link rel=\"preload\" href=\"/{APP}_bg.wasm\" as=\"fetch\" type=\"application/wasm\" crossorigin>\
                 <script type=\"module\" src=\"/boot.js\"></script>"
            )),
            "css" => {
                let href = attr(tag, "href").context("css link without href")?;
                out.push_str(&format!("<link rel=\"stylesheet\" href=\"/{href}\">"));
                copies.push(href.to_string());
            }
            "copy-file" => {
                let href = attr(tag, "href").context("copy-file link without href")?;
                copies.push(href.to_string());
            }
            other => bail!("index.html: data-trunk rel=\"{other}\" is not supported by xtask web"),
        }
    }
    out.push_str(rest);
    for c in &copies {
        if c.contains("..") || Path::new(c).is_absolute() || c.contains('/') {
            bail!("index.html: {c}: only files beside index.html can be copied");
        }
    }
    Ok((out, copies))
}

/// The value of `name="value"` in a tag.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    let len = tag[at..].find('"')?;
    Some(&tag[at..at + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_links_become_plain_tags() {
        let page = r#"<head><link data-trunk rel="rust" href="Cargo.toml" data-bin="visage-frontend">
<link data-trunk rel="css" href="style.css"><link data-trunk rel="copy-file" href="worker.js">
<link rel="icon" href="x.png"></head>"#;
        let (html, copies) = rewrite_index(page).unwrap();
        assert_eq!(copies, ["style.css", "worker.js"]);
        assert!(!html.contains("data-trunk"), "{html}");
        assert!(html.contains(r#"<script type="module" src="/boot.js"></script>"#));
        assert!(html.contains(r#"<link rel="stylesheet" href="/style.css">"#));
        assert!(html.contains(r#"<link rel="icon" href="x.png">"#));
    }

    #[test]
    fn unknown_links_and_paths_are_refused() {
        assert!(rewrite_index(r#"<link data-trunk rel="sass" href="a.scss">"#).is_err());
        assert!(rewrite_index(r#"<link data-trunk rel="copy-file" href="../secret">"#).is_err());
    }

    #[test]
    fn the_bindgen_library_matches_the_wasm_bindgen_crate() {
        // The glue generator and the crate compiled into the wasm must be the same version,
        // or the generated JS does not fit the wasm's custom sections.
        let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
        let version = |name: &str| {
            let at = lock
                .find(&format!("name = \"{name}\"\nversion = \""))
                .unwrap_or_else(|| panic!("{name} in Cargo.lock"));
            let v = &lock[at..].lines().nth(1).unwrap()["version = ".len()..];
            v.trim_matches('"').to_string()
        };
        assert_eq!(version("wasm-bindgen"), version("wasm-bindgen-cli-support"));
    }
}
