//! Fused operators for the two models, swapped into tract's graph before it is optimised.
//!
//! Profiling tract's plans (`shared/examples/profile_plan.rs`, BENCHMARKS.md) showed much of
//! the gap to onnxruntime in places that tract 0.23 handles slowly or does not fuse: its 3x3
//! depthwise convolution (and its speed depends on the input's orientation), the separate
//! activation pass after it (ReLU in YuNet, PReLU written as four element-wise ops in
//! MobileFaceNet), PReLU after 1x1 convolutions (two passes), and YuNet's 2x2 max pools, which
//! the converter writes as two 1-D pools. The ops here do each in one pass over the data, with
//! loops written so that the compiler vectorises them (AVX2 and FMA on x86_64, chosen at run
//! time; SIMD128 on wasm32, where the 1x1 block kernel is written with explicit vector
//! instructions: see `ChannelMix`). 1x1 convolutions are fused too, with their activation and
//! mostly with the depthwise convolution after them.
//!
//! [`fuse`] rewrites a decluttered [`TypedModel`] (decluttered by
//! [`declutter_keeping_layout`], so that the graph is the same on every target); everything it
//! does not recognise is left to tract. The rewrites are exact up to float rounding: the tests check whole models against
//! tract's own result (in `rewrite`), and each kernel against sums worked by hand (in
//! `kernels`).
//!
//! The layers, each a module:
//! - `ops`: the fused ops as tract sees them (parameters, `Op`, `EvalOp`, `TypedOp`);
//! - `kernels`: their computations (`conv3x3`, `channel_mix`, `pool`), generic over how they
//!   multiply and add;
//! - `simd`: the CPU dispatch that compiles the kernels for AVX-512, AVX2 + FMA or the
//!   baseline, with the rule that everything under it is inlined (and the test of the rule);
//! - `rewrite`: the graph matching that puts the ops in place of tract's.

mod kernels;
mod ops;
pub mod profile;
mod rewrite;
mod simd;
mod weights;

use std::sync::Arc;

use tract_onnx::prelude::*;

pub use ops::{Act, ChannelAct, Conv3x3Act, MaxPool2x2, PointwiseAct, PointwiseDepthwise};
pub use rewrite::fuse;
pub use weights::load_onnx;

/// Pins the input shape of `model`, then declutters, fuses and optimises it into the plan the
/// pipeline runs. `VISAGE_NO_FUSE=1` skips the fusion (to compare against tract alone).
pub fn optimise(model: InferenceModel, input: [usize; 4]) -> TractResult<Arc<TypedRunnableModel>> {
    optimise_with(model, input, std::env::var_os("VISAGE_NO_FUSE").is_none())
}

fn optimise_with(
    model: InferenceModel,
    input: [usize; 4],
    with_fusion: bool,
) -> TractResult<Arc<TypedRunnableModel>> {
    let mut typed = model
        .with_input_fact(0, f32::fact(input).into())?
        .into_typed()?;
    if with_fusion {
        declutter_keeping_layout(&mut typed)?;
        fuse(&mut typed)?;
    } else {
        typed.declutter()?;
    }
    // `into_optimized` declutters again (now with the layout pass) before it optimises.
    typed.into_optimized()?.into_runnable()
}

/// Runs `f` compiled for the widest vector instructions the CPU has (AVX-512, or AVX2 and FMA;
/// see `simd::dispatch`), for the pipeline's pixel loops outside the models: packing the
/// detector's input and resizing. Compiled for x86_64's baseline (SSE2) they get 4 lanes and
/// no byte shuffles: packing a 640x480 frame took 2.5x as long. `f`, and every function its
/// loops call, must be `#[inline(always)]`, or that code is compiled for the baseline.
#[inline(always)]
pub(crate) fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    simd::dispatch(
        #[inline(always)]
        |_| f(),
    )
}

/// Runs a plan of the pipeline on one input, then leaves the CPU's vector state clean.
///
/// Why the second part: tract-linalg's hand-written AVX-512 kernels (its matrix products, which
/// ran MobileFaceNet's larger 1x1 convolutions when this was found) return without
/// `vzeroupper`, so the upper halves of the vector registers stay dirty, and every instruction
/// of the SSE code after them (the parts of the pipeline compiled for x86_64's baseline:
/// resizing, packing, decoding, alignment) then pays for that state. Measured: a 910x1137
/// photo's detection took 12.4 ms on its own and 18.7 ms right after an embedding, its resize
/// 4x longer (BENCHMARKS.md). Code compiled by rustc clears the state itself where it leaves
/// AVX code; this does it after tract, whichever of its kernels a plan still runs.
pub fn run(plan: &Arc<TypedRunnableModel>, input: Tensor) -> TractResult<TVec<TValue>> {
    let out = plan.run(tvec!(input.into()));
    clear_upper_vector_state();
    out
}

/// `vzeroupper` where the CPU has AVX (see [`run`]); nothing elsewhere.
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        unsafe fn vzeroupper() {
            std::arch::x86_64::_mm256_zeroupper()
        }
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX, the one feature the function is compiled for.
            unsafe { vzeroupper() }
        }
    }
}

/// tract's declutter without its layout pass (`ChangeAxes`), the form of the graph that
/// [`fuse`] rewrites.
///
/// Why: that pass moves 3x3 depthwise convolutions of 16 channels or more to channels-last
/// where tract-linalg has a channels-last depthwise kernel, which it has for wasm32 (and
/// aarch64) but not for x86_64. In the browser the graph [`fuse`] saw was then another one:
/// half of YuNet's and MobileFaceNet's layers channels-last, their 1x1 convolutions left to
/// tract's matrix product with its packing and reshapes, the depthwise ones read and written
/// with a stride. Fusing first gives every target the same graph and the same fused ops; the
/// layout pass then runs in [`TypedModel::into_optimized`]'s declutter, on what is left.
pub fn declutter_keeping_layout(model: &mut TypedModel) -> TractResult<()> {
    let mut optimizer = tract_onnx::tract_core::optim::Optimizer::declutter();
    let before = optimizer.passes.len();
    optimizer
        .passes
        .retain(|pass| !format!("{pass:?}").starts_with("ChangeAxes"));
    // tract names its passes by their type; a rename would silently keep the pass.
    if optimizer.passes.len() + 1 != before {
        return Err(tract_onnx::tract_core::internal::format_err!(
            "tract's declutter has no single ChangeAxes pass to leave out"
        ));
    }
    optimizer.optimize(model)
}
