//! CPU dispatch: each kernel is compiled for AVX-512, for AVX2 and FMA, and for the target's
//! baseline, and [`dispatch`] picks one at run time.
//!
//! The rule that makes this work: everything that runs under [`dispatch`] is inlined into it
//! (`#[inline(always)]`), because a `#[target_feature]` function only compiles with its
//! features the code inlined into it. A kernel function left out of line is compiled for the
//! baseline: there `f32::mul_add` is a software fallback hundreds of times slower, and the
//! loops get SSE2's 4 lanes. The test `inlined_under_dispatch` below checks the rule on the
//! sources.

use tract_onnx::prelude::*;

use super::ops::output_tensor;

/// An op's computation, generic over how it multiplies and adds, so that [`run_kernel`] can
/// compile it for the CPU at hand.
pub(super) trait Kernel {
    /// Computes the whole output (every element) from the whole input.
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]);
}

/// Allocates the output of `shape` and fills it with `kernel`, compiled for AVX-512, AVX2 + FMA
/// or the baseline, as the CPU allows.
pub(super) fn run_kernel<K: Kernel>(
    kernel: &K,
    input: &[f32],
    shape: &[usize],
) -> TractResult<TVec<TValue>> {
    let mut t = output_tensor(shape)?;
    let mut view = t.try_as_plain_ram_mut()?;
    let out = view.as_slice_mut::<f32>()?;
    dispatch(
        #[inline(always)]
        |level| match level {
            Level::Avx512 => kernel.run::<FusedWide>(input, out),
            Level::Fma => kernel.run::<Fused>(input, out),
            Level::Baseline => kernel.run::<Separate>(input, out),
        },
    );
    Ok(tvec!(t.into_tvalue()))
}

/// How the kernels multiply-add: one fused instruction where the CPU has it (x86_64 with FMA,
/// chosen at run time), else a multiply and an add (`f32::mul_add` would be a slow library
/// call on wasm32).
pub(super) trait MulAdd {
    /// Whether [`ChannelMix`](super::kernels::ChannelMix) should compute 8 outputs at a time
    /// instead of 4 (AVX-512 has 32 registers of 16 lanes; AVX2's 16 registers of 8 are full
    /// at 4).
    const WIDE: bool = false;
    fn mul_add(a: f32, b: f32, c: f32) -> f32;
}

struct Fused;
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// [`Fused`] for AVX-512.
struct FusedWide;
impl MulAdd for FusedWide {
    const WIDE: bool = true;
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

pub(super) struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// What [`dispatch`] compiled its function for.
#[derive(Clone, Copy)]
// Off x86_64 only the baseline exists.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(super) enum Level {
    Avx512,
    /// AVX2 and FMA.
    Fma,
    /// The target's baseline: SSE2 on x86_64, SIMD128 on wasm32 (this crate's build).
    Baseline,
}

/// Runs `f` compiled for AVX-512, or for AVX2 and FMA, where the CPU has them, telling it which:
/// the kernels' loops are written for the compiler to vectorise, and x86_64's baseline (SSE2)
/// gives it only 4 lanes and no fused multiply-add. `f`, and everything it calls, must be
/// `#[inline(always)]` (see the module's documentation).
#[inline(always)]
pub(super) fn dispatch<R>(f: impl FnOnce(Level) -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce(Level) -> R) -> R {
            f(Level::Avx512)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce(Level) -> R) -> R {
            f(Level::Fma)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { avx512(f) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { avx2(f) };
        }
    }
    f(Level::Baseline)
}

#[cfg(test)]
mod tests {
    /// The sources of the code that runs under `dispatch`: the kernels, and this file (the
    /// `MulAdd` implementations, and `dispatch` itself).
    const UNDER_DISPATCH: [(&str, &str); 6] = [
        ("kernels/mod.rs", include_str!("kernels/mod.rs")),
        ("kernels/conv3x3.rs", include_str!("kernels/conv3x3.rs")),
        (
            "kernels/channel_mix.rs",
            include_str!("kernels/channel_mix.rs"),
        ),
        ("kernels/pool.rs", include_str!("kernels/pool.rs")),
        ("kernels/pw_dw.rs", include_str!("kernels/pw_dw.rs")),
        ("simd.rs", include_str!("simd.rs")),
    ];

    /// The functions in those files that do not run under `dispatch`.
    const OUTSIDE: [(&str, &str); 5] = [
        // Lays out the weights, once, when the graph is rewritten.
        ("kernels/channel_mix.rs", "new"),
        // Chooses the pair's kernel, before `dispatch`.
        ("kernels/pw_dw.rs", "in_place"),
        // Calls `dispatch`.
        ("simd.rs", "run_kernel"),
        // The `#[target_feature]` functions that `dispatch` compiles its argument into (which
        // cannot be `#[inline(always)]`).
        ("simd.rs", "avx512"),
        ("simd.rs", "avx2"),
    ];

    /// The part of a source file before its tests.
    fn code(src: &str) -> &str {
        src.split("#[cfg(test)]\nmod tests").next().unwrap_or(src)
    }

    /// The functions defined (with a body, not trait declarations) in `src`, each with whether
    /// `#[inline(always)]` is among the attributes right above it.
    fn functions(src: &str) -> Vec<(String, bool)> {
        let lines: Vec<&str> = src.lines().collect();
        let mut found = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let mut rest = line.trim_start();
            if let Some(vis) = rest.strip_prefix("pub") {
                rest = match vis.strip_prefix('(') {
                    Some(scoped) => scoped.split_once(") ").map_or("", |(_, r)| r),
                    None => vis.trim_start(),
                };
            }
            for qualifier in ["const ", "unsafe "] {
                rest = rest.strip_prefix(qualifier).unwrap_or(rest);
            }
            let Some(rest) = rest.strip_prefix("fn ") else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // A body (`{`) or a declaration (`;`), whichever comes first outside the
            // parameters (`[f32; 9]` has a `;`).
            let mut depth = 0i32;
            let body = lines[i..]
                .iter()
                .flat_map(|l| l.chars())
                .find_map(|c| match c {
                    '(' | '[' => {
                        depth += 1;
                        None
                    }
                    ')' | ']' => {
                        depth -= 1;
                        None
                    }
                    '{' if depth == 0 => Some(true),
                    ';' if depth == 0 => Some(false),
                    _ => None,
                });
            if body != Some(true) {
                continue;
            }
            let inlined = lines[..i]
                .iter()
                .rev()
                .map(|l| l.trim())
                .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
                .any(|l| l == "#[inline(always)]");
            found.push((name, inlined));
        }
        found
    }

    /// The calls of `dispatch` in `src`, each with its line number and whether the closure
    /// passed to it is marked `#[inline(always)]`.
    fn dispatch_calls(src: &str) -> Vec<(usize, bool)> {
        let mut calls = Vec::new();
        for (i, line) in src.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("//") {
                continue;
            }
            for (at, _) in line.match_indices("dispatch(") {
                let before = &line[..at];
                if before.ends_with("fn ")
                    || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
                {
                    continue;
                }
                let after = src.lines().skip(i).collect::<Vec<_>>().join("\n");
                let after = &after[at + "dispatch(".len()..];
                calls.push((i + 1, after.trim_start().starts_with("#[inline(always)]")));
            }
        }
        calls
    }

    /// Everything under `dispatch` is `#[inline(always)]`: the kernel functions, the
    /// multiply-adds, and the closures handed to `dispatch`. (The closures inside a kernel,
    /// such as the 3x3 convolution's `fill`, are not checked.)
    #[test]
    fn inlined_under_dispatch() {
        let mut seen = Vec::new();
        for (file, src) in UNDER_DISPATCH {
            for (name, inlined) in functions(code(src)) {
                if !OUTSIDE.contains(&(file, name.as_str())) {
                    assert!(
                        inlined,
                        "{file}: fn {name} runs under dispatch but is not #[inline(always)]"
                    );
                }
                seen.push((file, name));
            }
        }
        // The scan sees the kernels (a scan that saw nothing would pass), and the exceptions
        // name functions that exist.
        for name in [
            "activate",
            "slope",
            "activate_in_place",
            "in_channels",
            "run",
            "band",
            "put_row",
            "band_out",
            "taps_flat",
            "store",
            "blocks",
            "mul_add",
            "dispatch",
        ] {
            assert!(seen.iter().any(|(_, n)| n == name), "fn {name} not found");
        }
        for (file, name) in OUTSIDE {
            assert!(
                seen.iter().any(|(f, n)| *f == file && n == name),
                "{file}: fn {name} not found"
            );
        }
        let mut calls = 0;
        for (file, src) in [
            ("ops.rs", include_str!("ops.rs")),
            ("simd.rs", include_str!("simd.rs")),
        ] {
            for (line, inlined) in dispatch_calls(code(src)) {
                assert!(
                    inlined,
                    "{file}:{line}: the closure given to dispatch is not #[inline(always)]"
                );
                calls += 1;
            }
        }
        // `run_kernel`, and the activation on its own (which works in place).
        assert_eq!(calls, 2, "calls of dispatch found");
    }

    /// The scan tells a function with the attribute from one without, and skips declarations.
    #[test]
    fn the_scan_sees_a_missing_attribute() {
        let src = "/// Doc.\n#[inline(always)]\n// Why.\nfn a<F: MulAdd>(x: [f32; 9]) {}\n\
                   #[inline]\npub(super) fn b() -> f32 {\n    0.0\n}\n\
                   trait T {\n    fn c(&self, x: [f32; 2]);\n}\n";
        assert_eq!(
            functions(src),
            [("a".to_string(), true), ("b".to_string(), false)]
        );
        let src = "dispatch(|l| f(l));\nfn dispatch(f: F) {}\ndispatch(\n    #[inline(always)]\n    |_| g(),\n);\n";
        assert_eq!(dispatch_calls(src), [(1, false), (3, true)]);
    }
}
