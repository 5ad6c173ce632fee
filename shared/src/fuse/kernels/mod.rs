//! The computations of the fused ops, one module per kind, each generic over
//! [`MulAdd`](super::simd::MulAdd) so that [`dispatch`](super::simd::dispatch) can compile it
//! for the CPU at hand. Everything here runs under `dispatch`, so is `#[inline(always)]` (see
//! [`super::simd`]), except what says it runs outside.

mod channel_mix;
mod conv3x3;
mod pool;
mod pw_dw;

pub(super) use channel_mix::ChannelMix;
pub(super) use pw_dw::PairInPlace;

use super::ops::{Act, ChannelAct};

impl Act {
    /// The slope for negative values in channel `c` (see [`activate`]).
    #[inline(always)]
    fn slope(&self, c: usize) -> f32 {
        match self {
            Act::Linear => 1.0,
            Act::Relu => 0.0,
            Act::PRelu(s) => s[c],
        }
    }
}

/// `max(v, 0) + min(v, 0) * slope` (the graphs' form), written as a select: ReLU with slope
/// 0, PReLU, and the identity with slope 1.
#[inline(always)]
fn activate(v: f32, slope: f32) -> f32 {
    if v > 0.0 { v } else { v * slope }
}

/// The larger of `a` and `b`, written as a comparison: `f32::max` must return the number
/// when the other is NaN, which costs a comparison and a blend after each maximum on x86_64
/// and a sequence of several instructions in the browser (wasm's `f32x4.max`), where this
/// form is one instruction (`maxps`, wasm's `f32x4.pmax`). The activations hold no NaN.
#[inline(always)]
pub(super) fn larger(a: f32, b: f32) -> f32 {
    if b > a { b } else { a }
}

impl ChannelAct {
    /// The whole op, in place: each channel's plane with its slope.
    #[inline(always)]
    pub(super) fn activate_in_place(&self, data: &mut [f32]) {
        let plane = data.len() / self.channels;
        for (c, chunk) in data.chunks_exact_mut(plane).enumerate() {
            let slope = self.act.slope(c);
            for v in chunk.iter_mut() {
                *v = activate(*v, slope);
            }
        }
    }
}
