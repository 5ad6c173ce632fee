//! The product of a small weight matrix with a set of input rows ([`ChannelMix`]): 1x1
//! convolutions ([`PointwiseAct`]), and the full 3x3 convolution's taps.

use std::sync::Arc;

use super::activate;
use crate::fuse::ops::{Act, PointwiseAct};
use crate::fuse::simd::{Kernel, MulAdd};

/// `out[o][p] = act(bias[o] + sum over i of w[o][i] * x[i][p])`: the product of a small
/// weight matrix with a set of input rows, for 1x1 convolutions (the rows are the input
/// channels) and for the full 3x3 convolution (the rows are each input channel's plane at
/// each tap's offset).
#[derive(Debug, Clone, PartialEq)]
pub(in crate::fuse) struct ChannelMix {
    pub(in crate::fuse) inputs: usize,
    pub(in crate::fuse) outputs: usize,
    /// Weights in blocks of [`PW_CO`] outputs: `[O / PW_CO, I, PW_CO]`, then the remaining
    /// outputs as `[O % PW_CO, I]`.
    weights: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    act: Act,
}

/// Outputs and positions a [`ChannelMix`] block computes at once: 4 x 16 floats are 8 AVX2
/// (4 AVX-512) registers of accumulators.
const PW_CO: usize = 4;
const PW_P: usize = 16;

impl ChannelMix {
    /// From `[O, I]` row-major weights. Runs once, when the graph is rewritten (not under
    /// `dispatch`).
    pub(in crate::fuse) fn new(
        inputs: usize,
        outputs: usize,
        w: &[f32],
        bias: Vec<f32>,
        act: Act,
    ) -> Self {
        let blocks = outputs / PW_CO;
        let mut weights = Vec::with_capacity(w.len());
        for b in 0..blocks {
            for i in 0..inputs {
                for r in 0..PW_CO {
                    weights.push(w[(b * PW_CO + r) * inputs + i]);
                }
            }
        }
        weights.extend_from_slice(&w[blocks * PW_CO * inputs..]);
        Self {
            inputs,
            outputs,
            weights: Arc::new(weights),
            bias: Arc::new(bias),
            act,
        }
    }

    /// Whether `n` positions are whole blocks (no zero-padded remainder block).
    #[inline(always)]
    pub(super) fn whole_blocks(&self, n: usize) -> bool {
        n.is_multiple_of(PW_P)
    }

    /// The first `n` positions of the input rows into `out`, output `o` at `o * pitch`; input
    /// row `i` is `x[rows[i]..]`. Blocks of [`PW_P`] positions (see [`ChannelMix::blocks`]);
    /// the positions past the last whole block are copied into one zero-padded block and
    /// computed the same way (one at a time, they cost as much as hundreds of positions in
    /// blocks: the 1x1 convolutions computed in bands of rows have such remainders).
    #[inline(always)]
    pub(super) fn run<F: MulAdd>(
        &self,
        x: &[f32],
        rows: &[usize],
        n: usize,
        out: &mut [f32],
        pitch: usize,
    ) {
        let full_p = n - n % PW_P;
        self.blocks::<F>(x, rows, full_p, out, pitch);
        let rest = n - full_p;
        if rest == 0 {
            return;
        }
        let mut tail_x = vec![0f32; rows.len() * PW_P];
        for (block, at) in tail_x.chunks_exact_mut(PW_P).zip(rows) {
            block[..rest].copy_from_slice(&x[at + full_p..at + n]);
        }
        let tail_rows: Vec<usize> = (0..rows.len()).map(|i| i * PW_P).collect();
        let mut tail_out = vec![0f32; self.outputs * PW_P];
        self.blocks::<F>(&tail_x, &tail_rows, PW_P, &mut tail_out, PW_P);
        for (co, block) in tail_out.chunks_exact(PW_P).enumerate() {
            out[co * pitch + full_p..co * pitch + n].copy_from_slice(&block[..rest]);
        }
    }

    /// [`ChannelMix::run`] for `n`, a multiple of [`PW_P`]: blocks of [`PW_P`] positions
    /// (the input block, `I x PW_P` floats, stays in L1 while every output reads it),
    /// [`PW_CO`] outputs at a time, accumulators in registers; then the remaining outputs one
    /// by one.
    #[inline(always)]
    fn blocks<F: MulAdd>(
        &self,
        x: &[f32],
        rows: &[usize],
        n: usize,
        out: &mut [f32],
        pitch: usize,
    ) {
        let (ci_n, co_n) = (self.inputs, self.outputs);
        let blocks = co_n / PW_CO;
        let tail_w = &self.weights[blocks * PW_CO * ci_n..];
        for p0 in (0..n).step_by(PW_P) {
            // wasm32 with SIMD128 computes the whole blocks its own way (`block_4x8`).
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            let mut b = {
                for b in 0..blocks {
                    let w = &self.weights[b * ci_n * PW_CO..(b + 1) * ci_n * PW_CO];
                    for p in (p0..p0 + PW_P).step_by(8) {
                        self.block_4x8(x, rows, p, w, b * PW_CO, out, pitch);
                    }
                }
                blocks
            };
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            let mut b = 0;
            // Two blocks at once where registers allow: each input load then serves 8 outputs.
            while F::WIDE && b + 1 < blocks {
                let w = &self.weights[b * ci_n * PW_CO..(b + 2) * ci_n * PW_CO];
                let (w0, w1) = w.split_at(ci_n * PW_CO);
                let mut acc = [[0f32; PW_P]; 2 * PW_CO];
                for (r, row) in acc.iter_mut().enumerate() {
                    *row = [self.bias[b * PW_CO + r]; PW_P];
                }
                for (ci, at) in rows.iter().enumerate() {
                    let xs = &x[at + p0..at + p0 + PW_P];
                    let ws0 = &w0[ci * PW_CO..ci * PW_CO + PW_CO];
                    let ws1 = &w1[ci * PW_CO..ci * PW_CO + PW_CO];
                    for r in 0..PW_CO {
                        for l in 0..PW_P {
                            acc[r][l] = F::mul_add(xs[l], ws0[r], acc[r][l]);
                            acc[PW_CO + r][l] = F::mul_add(xs[l], ws1[r], acc[PW_CO + r][l]);
                        }
                    }
                }
                self.store(&acc, b * PW_CO, p0, out, pitch);
                b += 2;
            }
            for b in b..blocks {
                let w = &self.weights[b * ci_n * PW_CO..(b + 1) * ci_n * PW_CO];
                let mut acc = [[0f32; PW_P]; PW_CO];
                for (r, row) in acc.iter_mut().enumerate() {
                    *row = [self.bias[b * PW_CO + r]; PW_P];
                }
                for (ci, at) in rows.iter().enumerate() {
                    let xs = &x[at + p0..at + p0 + PW_P];
                    let ws = &w[ci * PW_CO..ci * PW_CO + PW_CO];
                    for r in 0..PW_CO {
                        for l in 0..PW_P {
                            acc[r][l] = F::mul_add(xs[l], ws[r], acc[r][l]);
                        }
                    }
                }
                self.store(&acc, b * PW_CO, p0, out, pitch);
            }
            // Outputs past the last whole block.
            for co in blocks * PW_CO..co_n {
                let w = &tail_w[(co - blocks * PW_CO) * ci_n..][..ci_n];
                let mut acc = [self.bias[co]; PW_P];
                for (at, wv) in rows.iter().zip(w) {
                    let xs = &x[at + p0..at + p0 + PW_P];
                    for l in 0..PW_P {
                        acc[l] = F::mul_add(xs[l], *wv, acc[l]);
                    }
                }
                let slope = self.act.slope(co);
                for (l, v) in acc.iter().enumerate() {
                    out[co * pitch + p0 + l] = activate(*v, slope);
                }
            }
        }
    }

    /// wasm32 with SIMD128: one block of [`PW_CO`] outputs by 8 positions from `p`, written
    /// with explicit vector instructions, activated and stored; `w` is the block's weights.
    ///
    /// Why not the portable loop: the compiler vectorises its 4 x 16 block into 16 vectors of
    /// accumulators, and the browser's code for x86_64 has 16 vector registers in all, so the
    /// accumulators went to the stack and back for every input channel. How fast those spills
    /// ran depended on where the stack happened to be: the embedding job took 1.3x longer
    /// whenever V8 recompiled one of its callers (BENCHMARKS.md). 4 x 8 keeps 8 accumulators,
    /// 2 inputs and a weight in registers. (Written with the portable loop, 8 positions are
    /// 2.2x slower: the compiler then vectorises it badly.)
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn block_4x8(
        &self,
        x: &[f32],
        rows: &[usize],
        p: usize,
        w: &[f32],
        co0: usize,
        out: &mut [f32],
        pitch: usize,
    ) {
        use core::arch::wasm32::*;
        let bias = &self.bias[co0..co0 + PW_CO];
        let mut acc: [[v128; 2]; PW_CO] = std::array::from_fn(|r| [f32x4_splat(bias[r]); 2]);
        for (ci, at) in rows.iter().enumerate() {
            let xs = &x[at + p..at + p + 8];
            // SAFETY: `xs` holds 8 floats; wasm's loads need no alignment.
            let (x0, x1) = unsafe {
                (
                    v128_load(xs.as_ptr().cast()),
                    v128_load(xs.as_ptr().add(4).cast()),
                )
            };
            let ws = &w[ci * PW_CO..ci * PW_CO + PW_CO];
            for (r, halves) in acc.iter_mut().enumerate() {
                let wr = f32x4_splat(ws[r]);
                halves[0] = f32x4_add(halves[0], f32x4_mul(x0, wr));
                halves[1] = f32x4_add(halves[1], f32x4_mul(x1, wr));
            }
        }
        let zero = f32x4_splat(0.0);
        for (r, halves) in acc.iter().enumerate() {
            let co = co0 + r;
            let slope = f32x4_splat(self.act.slope(co));
            let o = &mut out[co * pitch + p..co * pitch + p + 8];
            for (h, v) in halves.iter().enumerate() {
                // `activate`, lane by lane.
                let a = v128_bitselect(*v, f32x4_mul(*v, slope), f32x4_gt(*v, zero));
                // SAFETY: `o` holds 8 floats; wasm's stores need no alignment.
                unsafe { v128_store(o.as_mut_ptr().add(4 * h).cast(), a) };
            }
        }
    }

    /// Activates and stores a block of accumulators: outputs from `co0`, positions from `p0`.
    #[inline(always)]
    fn store(&self, acc: &[[f32; PW_P]], co0: usize, p0: usize, out: &mut [f32], pitch: usize) {
        for (r, row) in acc.iter().enumerate() {
            let co = co0 + r;
            let slope = self.act.slope(co);
            let o = &mut out[co * pitch + p0..co * pitch + p0 + PW_P];
            for l in 0..PW_P {
                o[l] = activate(row[l], slope);
            }
        }
    }
}

impl Kernel for PointwiseAct {
    /// The whole op: the input channels are the rows of one [`ChannelMix`]. A channels-last
    /// output is computed channels-first, then transposed (it has few channels).
    #[inline(always)]
    fn run<F: MulAdd>(&self, x: &[f32], out: &mut [f32]) {
        let p_n = x.len() / self.mix.inputs;
        let rows: Vec<usize> = (0..self.mix.inputs).map(|i| i * p_n).collect();
        if !self.channels_last {
            self.mix.run::<F>(x, &rows, p_n, out, p_n);
            return;
        }
        let co_n = self.mix.outputs;
        let mut planar = vec![0f32; co_n * p_n];
        self.mix.run::<F>(x, &rows, p_n, &mut planar, p_n);
        for (p, px) in out.chunks_exact_mut(co_n).enumerate() {
            for (co, v) in px.iter_mut().enumerate() {
                *v = planar[co * p_n + p];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::internal::*;

    use crate::fuse::ops::{Act, PointwiseAct, f32s};
    use crate::fuse::simd::{Kernel, Separate};

    /// 5 output channels (a block of 4 and one more) over 17 positions (a block of 16 and one
    /// more), so that every path of the kernel runs: out = co + (co + 1) * x0 + 0.5 * x1.
    #[test]
    fn pointwise_by_hand() {
        let p_n = 17;
        let input: Vec<f32> = (0..2 * p_n)
            .map(|i| (i % p_n + 100 * (i / p_n)) as f32)
            .collect();
        let w: Vec<f32> = (0..5).flat_map(|co| [co as f32 + 1.0, 0.5]).collect();
        let op = PointwiseAct::new(
            2,
            5,
            &w,
            (0..5).map(|co| co as f32).collect(),
            Act::PRelu(Arc::new(vec![1.0; 5])),
            tvec!(5, 1, p_n),
            false,
        );
        let out = op
            .eval(
                &EvalContext::out_of_plan(),
                tvec!(Tensor::from_shape(&[2, 1, p_n], &input).expect("t").into()),
            )
            .expect("eval");
        let expected: Vec<f32> = (0..5 * p_n)
            .map(|i| {
                let (co, p) = ((i / p_n) as f32, (i % p_n) as f32);
                co + (co + 1.0) * p + 0.5 * (p + 100.0)
            })
            .collect();
        assert_eq!(f32s(&out[0]).expect("f32"), &expected[..]);
        // The path of CPUs without FMA and of wasm32, which `eval` does not take here.
        let mut plain = vec![0f32; 5 * p_n];
        op.run::<Separate>(&input, &mut plain);
        assert_eq!(plain, expected);
    }
}
