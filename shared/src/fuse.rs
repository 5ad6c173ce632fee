//! Fused operators for the two models, swapped into tract's graph before it is optimised.
//!
//! Profiling tract's plans (`shared/examples/profile_plan.rs`, BENCHMARKS.md) showed much of
//! the gap to onnxruntime in places that tract 0.23 handles slowly or does not fuse: its 3x3
//! depthwise convolution (and its speed depends on the input's orientation), the separate
//! activation pass after it (ReLU in YuNet, PReLU written as four element-wise ops in
//! MobileFaceNet), PReLU after 1x1 convolutions (two passes), and YuNet's 2x2 max pools, which
//! the converter writes as two 1-D pools. The ops here do each in one pass over the data, with
//! loops written so that the compiler vectorises them (AVX2 and FMA on x86_64, chosen at run
//! time; SIMD128 on wasm32). 1x1 convolutions (matrix products) stay with tract.
//!
//! [`fuse`] rewrites a decluttered [`TypedModel`]; everything it does not recognise is left to
//! tract. The rewrites are exact up to float rounding: the tests below check whole models
//! against tract's own result, and each kernel against sums worked by hand.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::DataFormat;

/// The activation applied after a fused operator, per channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// None (the identity).
    Linear,
    /// `max(x, 0)`.
    Relu,
    /// `max(x, 0) + min(x, 0) * slope[c]`: the PReLU of MobileFaceNet.
    PRelu(Arc<Vec<f32>>),
}

impl Act {
    /// The slope for negative values in channel `c` (see [`activate`]).
    fn slope(&self, c: usize) -> f32 {
        match self {
            Act::Linear => 1.0,
            Act::Relu => 0.0,
            Act::PRelu(s) => s[c],
        }
    }
}

/// A 3x3 convolution with bias and activation, stride 1 or 2, on a `[C, H, W]` or
/// `[1, C, H, W]` tensor: depthwise (each output channel reads its own input channel), or
/// full with few input channels (the first layer of each model, on RGB).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv3x3Act {
    /// Output channels.
    channels: usize,
    /// Input channels each output channel reads: 1 (depthwise), or all of them.
    group_in: usize,
    in_hw: (usize, usize),
    out_hw: (usize, usize),
    stride: usize,
    /// Zero rows and columns before the first input row and column.
    pad_top_left: (usize, usize),
    /// Channels last (`[H, W, C]`, as tract lays out YuNet's small head convolutions).
    channels_last: bool,
    /// `[C, group_in, 9]`, row-major taps.
    weights: Arc<Vec<f32>>,
    bias: Arc<Vec<f32>>,
    act: Act,
    out_shape: TVec<usize>,
    /// For a full convolution, the same weights, bias and activation in the layout of the
    /// matrix product that computes it (set by [`Conv3x3Act::prepared`]).
    full: Option<ChannelMix>,
}

impl Eq for Conv3x3Act {}

impl Op for Conv3x3Act {
    fn name(&self) -> StaticName {
        "VisageConv3x3Act".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{}x{}x{:?} stride {} act {}",
            self.channels,
            self.group_in,
            self.in_hw,
            self.stride,
            match self.act {
                Act::Linear => "linear",
                Act::Relu => "relu",
                Act::PRelu(_) => "prelu",
            }
        )])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for Conv3x3Act {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        let (h, w) = self.in_hw;
        ensure!(
            input.len() == self.in_channels() * h * w,
            "convolution input size"
        );
        ensure!(
            self.group_in == 1 || self.full.is_some(),
            "full convolution not prepared"
        );
        run_kernel(self, input, &self.out_shape)
    }
}

impl TypedOp for Conv3x3Act {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

impl Conv3x3Act {
    /// Sets [`Conv3x3Act::full`] for a full convolution.
    fn prepared(mut self) -> Self {
        if self.group_in > 1 {
            self.full = Some(ChannelMix::new(
                self.group_in * 9,
                self.channels,
                &self.weights,
                self.bias.to_vec(),
                self.act.clone(),
            ));
        }
        self
    }

    fn in_channels(&self) -> usize {
        if self.group_in == 1 {
            self.channels
        } else {
            self.group_in
        }
    }
}

impl Kernel for Conv3x3Act {
    /// The whole op. Each input channel is copied once into a zero-padded plane (for stride 2,
    /// split into its four even/odd row/column phases), so that every tap is the same plane
    /// read at a fixed offset. A depthwise output channel is then one long loop of 9
    /// multiply-adds over the flattened plane (the few columns computed between rows are
    /// dropped), with bias and activation: narrow planes (14x14 in MobileFaceNet) vectorise as
    /// well as wide ones. A full convolution is one [`ChannelMix`] product whose rows are the
    /// input planes at the 9 taps' offsets.
    #[inline(always)]
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]) {
        let (h, w) = self.in_hw;
        let (oh, ow) = self.out_hw;
        let (pt, pl) = self.pad_top_left;
        let s = self.stride;
        // The padded input: rows -pt..(oh-1)*s+3-pt, columns likewise.
        let (ph, pw) = ((oh - 1) * s + 3, (ow - 1) * s + 3);
        // Layout of the plane(s) that the taps read: pitch, rows, planes.
        let (pitch, rows) = if s == 1 {
            (pw, ph)
        } else {
            (pw.div_ceil(2), ph.div_ceil(2))
        };
        let plane_len = pitch * rows;
        let group_len = plane_len * s * s;
        // Positions never written below (the padding) stay zero for every channel.
        let mut planes = vec![0f32; group_len * self.group_in];
        let cin = self.in_channels();
        // One padded input row, for stride 2 (then split into even and odd columns).
        let mut padded = vec![0f32; 2 * pitch];
        let mut fill = |planes: &mut [f32], c: usize| {
            if self.channels_last {
                for y in 0..h.min(ph - pt) {
                    for x in 0..w.min(pw - pl) {
                        let (py, px) = (y + pt, x + pl);
                        let at = if s == 1 {
                            py * pitch + px
                        } else {
                            ((py & 1) * 2 + (px & 1)) * plane_len + (py >> 1) * pitch + (px >> 1)
                        };
                        planes[at] = input[(y * w + x) * cin + c];
                    }
                }
                return;
            }
            let src = &input[c * h * w..(c + 1) * h * w];
            for y in 0..h.min(ph - pt) {
                let py = y + pt;
                let srow = &src[y * w..y * w + w.min(pw - pl)];
                if s == 1 {
                    planes[py * pitch + pl..][..srow.len()].copy_from_slice(srow);
                } else {
                    // Copy, then deinterleave pairs: both loops vectorise, a scatter does not.
                    padded[pl..pl + srow.len()].copy_from_slice(srow);
                    let base = (py & 1) * 2 * plane_len + (py >> 1) * pitch;
                    for (phase, start) in [base, base + plane_len].into_iter().enumerate() {
                        let dst = &mut planes[start..start + pitch];
                        for (d, pair) in dst.iter_mut().zip(padded.chunks_exact(2)) {
                            *d = pair[phase];
                        }
                    }
                }
            }
        };
        if self.group_in > 1 {
            for (c, group) in planes.chunks_exact_mut(group_len).enumerate() {
                fill(group, c);
            }
        }
        // Output rows are computed in bands whose flat span stays in L1.
        let band = (BAND_FLOATS / pitch).clamp(1, oh);
        let mut full = vec![0f32; (band - 1) * pitch + ow];
        let layout = Layout {
            pitch,
            plane_len,
            // (plane, offset) of each tap.
            taps: std::array::from_fn(|t| {
                let (ky, kx) = (t / 3, t % 3);
                if s == 1 {
                    (0, ky * pitch + kx)
                } else {
                    ((ky & 1) * 2 + (kx & 1), (ky >> 1) * pitch + (kx >> 1))
                }
            }),
        };
        if self.group_in == 1 {
            // Depthwise: one channel's plane at a time.
            for c in 0..self.channels {
                fill(&mut planes, c);
                for y0 in (0..oh).step_by(band) {
                    let y1 = (y0 + band).min(oh);
                    self.rows::<F>(&layout, &planes, out, &mut full, c, y0..y1);
                }
            }
        } else if let Some(mix) = &self.full {
            // Full: all input planes are filled; per band, the planes at the 9 taps' offsets
            // are the rows of one matrix product, with bias and activation.
            let band_len = full.len();
            let mut bands = vec![0f32; self.channels * band_len];
            for y0 in (0..oh).step_by(band) {
                let y1 = (y0 + band).min(oh);
                let n = (y1 - y0 - 1) * pitch + ow;
                let rows: Vec<usize> = (0..self.group_in)
                    .flat_map(|j| layout.taps.iter().map(move |&(p, off)| (j, p, off)))
                    .map(|(j, p, off)| j * group_len + p * plane_len + off + y0 * pitch)
                    .collect();
                mix.run::<F>(&planes, &rows, n, &mut bands, band_len);
                for (c, band) in bands.chunks_exact(band_len).enumerate() {
                    self.band_out(out, band, c, y0..y1, pitch);
                }
            }
        }
    }
}

/// Where [`Conv3x3Act::run`] keeps its padded input planes.
struct Layout {
    /// Floats per plane row.
    pitch: usize,
    plane_len: usize,
    /// (plane, offset) of each of the 9 taps.
    taps: [(usize, usize); 9],
}

impl Conv3x3Act {
    /// Depthwise output channel `c`, rows `ys`: its 9 taps into `full`, then out.
    /// Inlined, as everything under [`dispatch`] must be: compiled outside the FMA function,
    /// `f32::mul_add` is a software fallback hundreds of times slower.
    #[inline(always)]
    fn rows<F: MulAdd>(
        &self,
        l: &Layout,
        planes: &[f32],
        out: &mut [f32],
        full: &mut [f32],
        c: usize,
        ys: std::ops::Range<usize>,
    ) {
        let n = (ys.len() - 1) * l.pitch + self.out_hw.1;
        let full = &mut full[..n];
        let k: [f32; 9] = std::array::from_fn(|i| self.weights[c * 9 + i]);
        let src: [&[f32]; 9] = std::array::from_fn(|t| {
            let (p, off) = l.taps[t];
            &planes[p * l.plane_len + off + ys.start * l.pitch..][..n]
        });
        taps_flat::<F>(full, src, &k, self.bias[c], self.act.slope(c));
        self.band_out(out, full, c, ys, l.pitch);
    }

    /// Copies output channel `c`'s rows `ys`, computed flat with row pitch `pitch` in `band`,
    /// to the output tensor.
    #[inline(always)]
    fn band_out(
        &self,
        out: &mut [f32],
        band: &[f32],
        c: usize,
        ys: std::ops::Range<usize>,
        pitch: usize,
    ) {
        let (oh, ow) = self.out_hw;
        for y in ys.clone() {
            let from = &band[(y - ys.start) * pitch..][..ow];
            if self.channels_last {
                let co = self.channels;
                for (x, v) in from.iter().enumerate() {
                    out[(y * ow + x) * co + c] = *v;
                }
            } else {
                out[(c * oh + y) * ow..][..ow].copy_from_slice(from);
            }
        }
    }
}

/// How many floats of flattened output a band holds: 16 KB, a third of L1.
const BAND_FLOATS: usize = 4096;

/// `o[i] = act(bias + sum of k[t] * src[t][i])`: the 9 taps of a 3x3 depthwise convolution,
/// each input already shifted to its tap's offset.
#[inline(always)]
fn taps_flat<F: MulAdd>(o: &mut [f32], src: [&[f32]; 9], k: &[f32; 9], bias: f32, slope: f32) {
    let n = o.len();
    let [s0, s1, s2, s3, s4, s5, s6, s7, s8] = src.map(|s| &s[..n]);
    for i in 0..n {
        // Written out: a loop over the taps is not unrolled, and then not vectorised well.
        let mut v = F::mul_add(s0[i], k[0], bias);
        v = F::mul_add(s1[i], k[1], v);
        v = F::mul_add(s2[i], k[2], v);
        v = F::mul_add(s3[i], k[3], v);
        v = F::mul_add(s4[i], k[4], v);
        v = F::mul_add(s5[i], k[5], v);
        v = F::mul_add(s6[i], k[6], v);
        v = F::mul_add(s7[i], k[7], v);
        v = F::mul_add(s8[i], k[8], v);
        o[i] = activate(v, slope);
    }
}

/// An op's computation, generic over how it multiplies and adds, so that [`run_kernel`] can
/// compile it for the CPU at hand.
trait Kernel {
    /// Computes the whole output (every element) from the whole input.
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]);
}

/// Allocates the output of `shape` and fills it with `kernel`, compiled for AVX-512, AVX2 + FMA
/// or the baseline, as the CPU allows.
fn run_kernel<K: Kernel>(kernel: &K, input: &[f32], shape: &[usize]) -> TractResult<TVec<TValue>> {
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
trait MulAdd {
    /// Whether [`ChannelMix`] should compute 8 outputs at a time instead of 4 (AVX-512 has
    /// 32 registers of 16 lanes; AVX2's 16 registers of 8 are full at 4).
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

struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

/// `max(v, 0) + min(v, 0) * slope` (the graphs' form), written as a select: ReLU with slope
/// 0, PReLU, and the identity with slope 1.
#[inline(always)]
fn activate(v: f32, slope: f32) -> f32 {
    if v > 0.0 { v } else { v * slope }
}

/// A 1x1 convolution with bias and activation on a `[C, H, W]` or `[1, C, H, W]` tensor, for
/// few input channels (YuNet's 16 to 64): tract runs these as matrix products that first
/// copy ("pack") the whole input, which cost as much as the products themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct PointwiseAct {
    mix: ChannelMix,
    out_shape: TVec<usize>,
    /// The output is `[H, W, O]` (YuNet's head, laid out for its reshape to `[HW, O]`).
    channels_last: bool,
}

impl Eq for PointwiseAct {}

/// `out[o][p] = act(bias[o] + sum over i of w[o][i] * x[i][p])`: the product of a small
/// weight matrix with a set of input rows, for 1x1 convolutions (the rows are the input
/// channels) and for the full 3x3 convolution (the rows are each input channel's plane at
/// each tap's offset).
#[derive(Debug, Clone, PartialEq)]
struct ChannelMix {
    inputs: usize,
    outputs: usize,
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
    /// From `[O, I]` row-major weights.
    fn new(inputs: usize, outputs: usize, w: &[f32], bias: Vec<f32>, act: Act) -> Self {
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

    /// The first `n` positions of the input rows into `out`, output `o` at `o * pitch`; input
    /// row `i` is `x[rows[i]..]`. Blocks of [`PW_P`] positions (the input block, `I x 16`
    /// floats, stays in L1 while every output reads it), [`PW_CO`] outputs at a time,
    /// accumulators in registers; then the remaining outputs and positions one by one.
    #[inline(always)]
    fn run<F: MulAdd>(&self, x: &[f32], rows: &[usize], n: usize, out: &mut [f32], pitch: usize) {
        let (ci_n, co_n) = (self.inputs, self.outputs);
        let blocks = co_n / PW_CO;
        let tail_w = &self.weights[blocks * PW_CO * ci_n..];
        let full_p = n - n % PW_P;
        for p0 in (0..full_p).step_by(PW_P) {
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
        // Positions past the last whole block.
        for p in full_p..n {
            for co in 0..co_n {
                let mut v = self.bias[co];
                for (ci, at) in rows.iter().enumerate() {
                    v = F::mul_add(x[at + p], self.weight(co, ci), v);
                }
                out[co * pitch + p] = activate(v, self.act.slope(co));
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

    /// The weight of input `ci` for output `co`, in the blocked layout.
    #[inline(always)]
    fn weight(&self, co: usize, ci: usize) -> f32 {
        let blocks = self.outputs / PW_CO;
        if co < blocks * PW_CO {
            self.weights[(co / PW_CO) * self.inputs * PW_CO + ci * PW_CO + co % PW_CO]
        } else {
            self.weights[blocks * PW_CO * self.inputs + (co - blocks * PW_CO) * self.inputs + ci]
        }
    }
}

impl Op for PointwiseAct {
    fn name(&self) -> StaticName {
        "VisagePointwiseAct".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{} -> {}", self.mix.inputs, self.mix.outputs)])
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for PointwiseAct {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        ensure!(
            !input.is_empty() && input.len() % self.mix.inputs == 0,
            "pointwise input size"
        );
        ensure!(
            self.out_shape.iter().product::<usize>() / self.mix.outputs
                == input.len() / self.mix.inputs,
            "pointwise output size"
        );
        run_kernel(self, input, &self.out_shape)
    }
}

impl TypedOp for PointwiseAct {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

impl PointwiseAct {
    fn new(
        in_channels: usize,
        out_channels: usize,
        w: &[f32],
        bias: Vec<f32>,
        act: Act,
        out_shape: TVec<usize>,
        channels_last: bool,
    ) -> Self {
        Self {
            mix: ChannelMix::new(in_channels, out_channels, w, bias, act),
            out_shape,
            channels_last,
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

/// A per-channel activation on its own (PReLU after a 1x1 convolution), one pass instead of
/// tract's two.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelAct {
    channels: usize,
    act: Act,
}

impl Eq for ChannelAct {}

impl Op for ChannelAct {
    fn name(&self) -> StaticName {
        "VisageChannelAct".into()
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelAct {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let mut t = args_1!(inputs).into_tensor();
        let mut view = t.try_as_plain_ram_mut()?;
        let data = view.as_slice_mut::<f32>()?;
        let plane = data.len() / self.channels;
        dispatch(
            #[inline(always)]
            |_| {
                for (c, chunk) in data.chunks_exact_mut(plane).enumerate() {
                    let slope = self.act.slope(c);
                    for v in chunk.iter_mut() {
                        *v = activate(*v, slope);
                    }
                }
            },
        );
        Ok(tvec!(t.into_tvalue()))
    }
}

impl TypedOp for ChannelAct {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

/// A 2x2 max pool with stride 2 (YuNet's, which the converter writes as two 1-D pools).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2x2 {
    channels: usize,
    in_hw: (usize, usize),
    out_shape: TVec<usize>,
}

impl Op for MaxPool2x2 {
    fn name(&self) -> StaticName {
        "VisageMaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for MaxPool2x2 {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = f32s(&inputs[0])?;
        let (h, w) = self.in_hw;
        ensure!(input.len() == self.channels * h * w, "max pool input size");
        run_kernel(self, input, &self.out_shape)
    }
}

impl Kernel for MaxPool2x2 {
    /// Each output row: the max of two input rows, then of each pair of columns.
    #[inline(always)]
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]) {
        let (h, w) = self.in_hw;
        let (oh, ow) = (h / 2, w / 2);
        let mut pair = vec![0f32; 2 * ow];
        for c in 0..self.channels {
            let src = &input[c * h * w..(c + 1) * h * w];
            for oy in 0..oh {
                let r0 = &src[2 * oy * w..2 * oy * w + 2 * ow];
                let r1 = &src[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
                for ((p, a), b) in pair.iter_mut().zip(r0).zip(r1) {
                    *p = a.max(*b);
                }
                let o = &mut out[(c * oh + oy) * ow..(c * oh + oy + 1) * ow];
                for (x, v) in o.iter_mut().enumerate() {
                    *v = pair[2 * x].max(pair[2 * x + 1]);
                }
            }
        }
    }
}

impl TypedOp for MaxPool2x2 {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].datum_type.fact(&*self.out_shape)))
    }

    as_op!();
}

/// What [`dispatch`] compiled its function for.
#[derive(Clone, Copy)]
// Off x86_64 only the baseline exists.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Level {
    Avx512,
    /// AVX2 and FMA.
    Fma,
    /// The target's baseline: SSE2 on x86_64, SIMD128 on wasm32 (this crate's build).
    Baseline,
}

/// Runs `f` compiled for AVX-512, or for AVX2 and FMA, where the CPU has them, telling it which:
/// the loops above are written for the compiler to vectorise, and x86_64's baseline (SSE2)
/// gives it only 4 lanes and no fused multiply-add.
#[inline(always)]
fn dispatch(f: impl FnOnce(Level)) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx2,fma")]
        unsafe fn avx512(f: impl FnOnce(Level)) {
            f(Level::Avx512)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(f: impl FnOnce(Level)) {
            f(Level::Fma)
        }
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { avx512(f) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            unsafe { avx2(f) };
            return;
        }
    }
    f(Level::Baseline)
}

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
        .into_typed()?
        .into_decluttered()?;
    if with_fusion {
        fuse(&mut typed)?;
    }
    typed.into_optimized()?.into_runnable()
}

/// Rewrites `model` (decluttered) in place with the fused ops above. Returns how many
/// rewrites it made.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    let mut count = 0;
    // Each rewrite changes the graph, so look again from the start after each one.
    loop {
        let mut done = false;
        for id in model.eval_order()? {
            if let Some(patch) = rewrite_at(model, id)? {
                patch.apply(model)?;
                // Drop the replaced nodes, so that they no longer count as successors.
                model.compact()?;
                count += 1;
                done = true;
                break;
            }
        }
        if !done {
            break;
        }
    }
    Ok(count)
}

/// The concrete shape of an outlet.
fn shape_of(model: &TypedModel, o: OutletId) -> Option<TVec<usize>> {
    model
        .outlet_fact(o)
        .ok()
        .and_then(|f| f.shape.as_concrete().map(|s| s.into()))
}

/// `[C, H, W]` of a `[H, W, C]` or `[1, H, W, C]` shape.
fn hwc(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [h, w, c] | [1, h, w, c] => Some((*c, *h, *w)),
        _ => None,
    }
}

/// Whether tensors in this format are `[C, H, W]` or `[1, C, H, W]`.
fn channels_first(f: DataFormat) -> bool {
    matches!(f, DataFormat::NCHW | DataFormat::CHW)
}

/// `[C, H, W]` of a `[C, H, W]` or `[1, C, H, W]` shape.
fn chw(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [c, h, w] | [1, c, h, w] => Some((*c, *h, *w)),
        _ => None,
    }
}

/// An f32 tensor of `shape` for an op to fill: left uninitialised, as tract's own operators
/// do, because zeroing the activations cost a tenth of a run (profiled). Every op here writes
/// every element of its output before returning it.
fn output_tensor(shape: &[usize]) -> TractResult<Tensor> {
    // SAFETY: f32 has no invalid bit patterns, and the callers overwrite every element
    // before the tensor is read.
    unsafe { Tensor::uninitialized::<f32>(shape) }
}

fn f32s(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

fn konst(model: &TypedModel, o: OutletId) -> Option<Arc<Tensor>> {
    model.outlet_fact(o).ok().and_then(|f| f.konst.clone())
}

fn is_zero_const(model: &TypedModel, o: OutletId) -> bool {
    konst(model, o).is_some_and(|t| f32s(&t).is_ok_and(|s| s.iter().all(|v| *v == 0.0)))
}

/// The single node reading output 0 of `id`, if exactly one does.
fn only_successor(model: &TypedModel, id: usize) -> Option<usize> {
    match readers(model, id)?[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// The nodes reading the single output of `id`, unless that output is also a model output
/// (then it cannot be fused away).
fn readers(model: &TypedModel, id: usize) -> Option<Vec<usize>> {
    let node = model.node(id);
    if node.outputs.len() != 1 || model.output_outlets().ok()?.contains(&OutletId::new(id, 0)) {
        return None;
    }
    Some(node.outputs[0].successors.iter().map(|i| i.node).collect())
}

/// The activation that follows `id`, if it is one this module fuses: returns it with the node
/// whose output it replaces.
fn activation_after(model: &TypedModel, id: usize, channels: usize) -> Option<(Act, usize)> {
    let succ = readers(model, id)?;
    let op_is = |n: usize, name: &str| model.node(n).op.name() == name;
    let zero_other = |n: usize| {
        let ins = &model.node(n).inputs;
        ins.len() == 2 && ins[0] == OutletId::new(id, 0) && is_zero_const(model, ins[1])
    };
    match succ[..] {
        // ReLU: max(x, 0).
        [m] if op_is(m, "Max") && zero_other(m) => Some((Act::Relu, m)),
        // PReLU: max(x, 0) + min(x, 0) * slope.
        [a, b] => {
            let (max, min) = if op_is(a, "Max") { (a, b) } else { (b, a) };
            if !(op_is(max, "Max") && op_is(min, "Min") && zero_other(max) && zero_other(min)) {
                return None;
            }
            let mul = only_successor(model, min)?;
            let add = only_successor(model, max)?;
            if !op_is(mul, "Mul") || !op_is(add, "Add") || only_successor(model, mul)? != add {
                return None;
            }
            let slope = konst(model, model.node(mul).inputs[1])?;
            let slope = f32s(&slope).ok()?;
            (slope.len() == channels).then(|| (Act::PRelu(Arc::new(slope.to_vec())), add))
        }
        _ => None,
    }
}

fn rewrite_at(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    if let Some(conv) = node.op_as::<Conv>() {
        return conv3x3(model, id, conv);
    }
    if let Some(pool) = node.op_as::<MaxPool>() {
        return max_pool(model, id, pool);
    }
    if let Some(einsum) = node.op_as::<EinSum>()
        && let Some(patch) = pointwise(model, id, einsum)?
    {
        return Ok(Some(patch));
    }
    // A PReLU after anything else (a 1x1 convolution).
    if !node.op.name().starts_with("Visage") && node.op.name() != "Const" {
        let Some(shape) = shape_of(model, OutletId::new(id, 0)) else {
            return Ok(None);
        };
        let Some((c, _, _)) = chw(&shape) else {
            return Ok(None);
        };
        if let Some((act @ Act::PRelu(_), last)) = activation_after(model, id, c) {
            let mut patch = TypedModelPatch::new("visage.prelu");
            let tap = patch.tap_model(model, OutletId::new(id, 0))?;
            let out = patch.wire_node(
                format!("{}.prelu", node.name),
                ChannelAct { channels: c, act },
                &[tap],
            )?;
            patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
            return Ok(Some(patch));
        }
    }
    Ok(None)
}

/// Most input channels a 1x1 convolution may have to be fused: beyond, tract's own matrix
/// product (AVX-512 where the CPU has it) wins (MobileFaceNet's 64 to 512 measured slower).
const MAX_POINTWISE_IN: usize = 64;

/// A 1x1 convolution as tract declutters it: `EinSum` of the input and the `[O, I]` weights,
/// then `Add` of the bias, then maybe an activation.
fn pointwise(
    model: &TypedModel,
    id: usize,
    einsum: &EinSum,
) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let expr = einsum.axes.to_string();
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || ![
            "NIHW,OI->NOHW",
            "IHW,OI->OHW",
            "NIHW,OI->OHW",
            "IHW,OI->NOHW",
            "IHW,OI->NHWO",
            "NIHW,OI->NHWO",
        ]
        .contains(&expr.as_str())
        || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let (Some(ishape), Some(weights)) = (
        shape_of(model, node.inputs[0]),
        konst(model, node.inputs[1]),
    ) else {
        return Ok(None);
    };
    let Some((ci, _, _)) = chw(&ishape) else {
        return Ok(None);
    };
    let [co, wi] = weights.shape() else {
        return Ok(None);
    };
    let co = *co;
    if *wi != ci
        || ci > MAX_POINTWISE_IN
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    // The bias.
    let Some(add) = only_successor(model, id) else {
        return Ok(None);
    };
    let add_node = model.node(add);
    if add_node.op.name() != "Add"
        || add_node.inputs.len() != 2
        || add_node.inputs[0] != OutletId::new(id, 0)
    {
        return Ok(None);
    }
    let Some(bias) = konst(model, add_node.inputs[1]) else {
        return Ok(None);
    };
    let bias = f32s(&bias)?;
    let Some(oshape) = shape_of(model, OutletId::new(add, 0)) else {
        return Ok(None);
    };
    let channels_last = expr.ends_with("HWO");
    let out_dims = if channels_last {
        hwc(&oshape)
    } else {
        chw(&oshape)
    };
    if bias.len() != co || out_dims.map(|(c, _, _)| c) != Some(co) {
        return Ok(None);
    }
    let (act, last) = activation_after(model, add, co).unwrap_or((Act::Linear, add));
    let mut patch = TypedModelPatch::new("visage.pointwise");
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(
        format!("{}.fused", node.name),
        PointwiseAct::new(
            ci,
            co,
            f32s(&weights)?,
            bias.to_vec(),
            act,
            oshape,
            channels_last,
        ),
        &[tap],
    )?;
    patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
    Ok(Some(patch))
}

fn conv3x3(model: &TypedModel, id: usize, conv: &Conv) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let spec = &conv.pool_spec;
    let (Some(ishape), Some(oshape)) = (
        shape_of(model, node.inputs[0]),
        shape_of(model, OutletId::new(id, 0)),
    ) else {
        return Ok(None);
    };
    let channels_last = matches!(spec.data_format, DataFormat::NHWC | DataFormat::HWC);
    let dims = |s: &[usize]| if channels_last { hwc(s) } else { chw(s) };
    let (Some((c, h, w)), Some((oc, oh, ow))) = (dims(&ishape), dims(&oshape)) else {
        return Ok(None);
    };
    // Depthwise, or a full convolution over few channels (beyond that, tract's matrix
    // product is the better tool).
    let group_in = match conv.group {
        g if g == c && oc == c => 1,
        1 if c <= 4 => c,
        _ => return Ok(None),
    };
    let stride = spec.strides();
    let pad = match &spec.padding {
        PaddingSpec::Explicit(before, _) => (before[0], before[1]),
        PaddingSpec::Valid => (0, 0),
        _ => return Ok(None),
    };
    let ok = conv.q_params.is_none()
        && conv.kernel_fmt == KernelFormat::OIHW
        && *spec.kernel_shape == [3, 3]
        && spec.dilations().iter().all(|d| *d == 1)
        && (stride[..] == [1, 1] || stride[..] == [2, 2])
        && node.inputs.len() == 3
        && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type()
        && pad.0 <= 2
        && pad.1 <= 2
        && oh > 0
        && ow > 0;
    if !ok {
        return Ok(None);
    }
    let (Some(kernel), Some(bias)) = (konst(model, node.inputs[1]), konst(model, node.inputs[2]))
    else {
        return Ok(None);
    };
    let kernel = f32s(&kernel)?;
    let bias = f32s(&bias)?;
    if kernel.len() != oc * group_in * 9 || !(bias.len() == oc || bias.len() == 1) {
        return Ok(None);
    }
    let bias = if bias.len() == oc {
        bias.to_vec()
    } else {
        vec![bias[0]; oc]
    };
    let (act, last) = activation_after(model, id, oc).unwrap_or((Act::Linear, id));
    let mut patch = TypedModelPatch::new("visage.conv3x3");
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(
        format!("{}.fused", node.name),
        Conv3x3Act {
            channels: oc,
            group_in,
            in_hw: (h, w),
            out_hw: (oh, ow),
            stride: stride[0],
            pad_top_left: pad,
            channels_last,
            weights: Arc::new(kernel.to_vec()),
            bias: Arc::new(bias),
            act,
            out_shape: oshape,
            full: None,
        }
        .prepared(),
        &[tap],
    )?;
    patch.shunt_outside(model, OutletId::new(last, 0), out[0])?;
    Ok(Some(patch))
}

fn max_pool(model: &TypedModel, id: usize, pool: &MaxPool) -> TractResult<Option<TypedModelPatch>> {
    let is = |p: &MaxPool, k: [usize; 2]| {
        p.with_index_outputs.is_none()
            && channels_first(p.pool_spec.data_format)
            && *p.pool_spec.kernel_shape == k
            && p.pool_spec.strides()[..] == k
            && matches!(p.pool_spec.padding, PaddingSpec::Valid)
    };
    if !is(pool, [2, 1]) {
        return Ok(None);
    }
    let Some(next) = only_successor(model, id) else {
        return Ok(None);
    };
    if !model
        .node(next)
        .op_as::<MaxPool>()
        .is_some_and(|p| is(p, [1, 2]))
    {
        return Ok(None);
    }
    let node = model.node(id);
    let (Some(ishape), Some(oshape)) = (
        shape_of(model, node.inputs[0]),
        shape_of(model, OutletId::new(next, 0)),
    ) else {
        return Ok(None);
    };
    let Some((c, h, w)) = chw(&ishape) else {
        return Ok(None);
    };
    if chw(&oshape) != Some((c, h / 2, w / 2))
        || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
    {
        return Ok(None);
    }
    let mut patch = TypedModelPatch::new("visage.maxpool");
    let tap = patch.tap_model(model, node.inputs[0])?;
    let out = patch.wire_node(
        format!("{}.fused", node.name),
        MaxPool2x2 {
            channels: c,
            in_hw: (h, w),
            out_shape: oshape,
        },
        &[tap],
    )?;
    patch.shunt_outside(model, OutletId::new(next, 0), out[0])?;
    Ok(Some(patch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    fn load(onnx: &[u8]) -> InferenceModel {
        tract_onnx::onnx()
            .model_for_read(&mut std::io::Cursor::new(onnx))
            .expect("model parses")
    }

    /// Runs `onnx` with and without the fused ops on the same pseudo-random input and returns
    /// the largest difference between the outputs, relative to the largest output (or to 1 for
    /// outputs below 1, such as YuNet's tiny objectness scores), with the number of rewrites.
    fn fused_against_tract(onnx: &[u8], input: [usize; 4]) -> (f32, usize) {
        let mut seed = 7u32;
        let data: Vec<f32> = (0..input.iter().product())
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0
            })
            .collect();
        let x: TValue = Tensor::from_shape(&input, &data).expect("input").into();
        let run = |fuse: bool| {
            optimise_with(load(onnx), input, fuse)
                .expect("plan")
                .run(tvec!(x.clone()))
                .expect("run")
        };
        let (fused, plain) = (run(true), run(false));
        let mut typed = load(onnx)
            .with_input_fact(0, f32::fact(input).into())
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .expect("typed");
        let rewrites = fuse(&mut typed).expect("fuse");
        assert_eq!(fused.len(), plain.len());
        let mut worst = 0f32;
        for (a, b) in fused.iter().zip(&plain) {
            let (a, b) = (f32s(a).expect("f32"), f32s(b).expect("f32"));
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs() / scale);
            }
        }
        (worst, rewrites)
    }

    #[test]
    fn fused_embedder_matches_tract() {
        let (diff, rewrites) = fused_against_tract(model::EMBEDDER_ONNX, [1, 3, 112, 112]);
        // 15 depthwise convolutions with their PReLU, and the PReLUs after 1x1 convolutions.
        assert!(rewrites >= 25, "only {rewrites} rewrites");
        assert!(diff < 1e-4, "relative difference {diff}");
    }

    #[test]
    fn fused_detector_matches_tract() {
        for input in [[1, 3, 256, 320], [1, 3, 96, 128]] {
            let (diff, rewrites) = fused_against_tract(model::DETECTOR_ONNX, input);
            assert!(rewrites >= 15, "only {rewrites} rewrites");
            assert!(diff < 1e-4, "{input:?}: relative difference {diff}");
        }
    }

    /// A 1-channel 3x4 image through the depthwise op, against sums worked by hand.
    #[test]
    fn depthwise_by_hand() {
        let input: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let op = |stride, pad, out_hw: (usize, usize), act| Conv3x3Act {
            channels: 1,
            group_in: 1,
            in_hw: (3, 4),
            out_hw,
            stride,
            pad_top_left: pad,
            channels_last: false,
            // Only the centre and the right-hand neighbour.
            weights: Arc::new(vec![0., 0., 0., 0., 1., 2., 0., 0., 0.]),
            bias: Arc::new(vec![-10.0]),
            act,
            out_shape: tvec!(1, out_hw.0, out_hw.1),
            full: None,
        };
        let run = |op: Conv3x3Act| {
            let out = op
                .eval(
                    &EvalContext::out_of_plan(),
                    tvec!(Tensor::from_shape(&[1, 3, 4], &input).expect("t").into()),
                )
                .expect("eval");
            f32s(&out[0]).expect("f32").to_vec()
        };
        // Stride 1, padding 1: x + 2 * right - 10, the right of the last column is padding.
        assert_eq!(
            run(op(1, (1, 1), (3, 4), Act::Linear)),
            vec![-5., -2., 1., -6., 7., 10., 13., -2., 19., 22., 25., 2.]
        );
        assert_eq!(
            run(op(1, (1, 1), (3, 4), Act::Relu)),
            vec![0., 0., 1., 0., 7., 10., 13., 0., 19., 22., 25., 2.]
        );
        // Stride 2 with TensorFlow's padding (after only): centres at (1, 1) and (1, 3); the
        // second output row's centre is row 3, padding. PReLU halves the negatives.
        assert_eq!(
            run(op(2, (0, 0), (2, 2), Act::PRelu(Arc::new(vec![0.5])))),
            vec![6. + 2. * 7. - 10., (8. - 10.) * 0.5, -5., -5.]
        );
    }

    /// A full convolution over 2 channels: the centre tap reads x0 + 10 * x1, in either layout.
    #[test]
    fn full_convolution_by_hand() {
        let mut weights = vec![0f32; 18];
        weights[4] = 1.0;
        weights[9 + 4] = 10.0;
        for channels_last in [false, true] {
            let (input, shape): (Vec<f32>, _) = if channels_last {
                (vec![1., 10., 2., 20., 3., 30., 4., 40.], [1, 2, 2, 2])
            } else {
                (vec![1., 2., 3., 4., 10., 20., 30., 40.], [1, 2, 2, 2])
            };
            let op = Conv3x3Act {
                channels: 1,
                group_in: 2,
                in_hw: (2, 2),
                out_hw: (2, 2),
                stride: 1,
                pad_top_left: (1, 1),
                channels_last,
                weights: Arc::new(weights.clone()),
                bias: Arc::new(vec![0.5]),
                act: Act::Linear,
                out_shape: if channels_last {
                    tvec!(1, 2, 2, 1)
                } else {
                    tvec!(1, 1, 2, 2)
                },
                full: None,
            }
            .prepared();
            let out = op
                .eval(
                    &EvalContext::out_of_plan(),
                    tvec!(Tensor::from_shape(&shape, &input).expect("t").into()),
                )
                .expect("eval");
            assert_eq!(f32s(&out[0]).expect("f32"), &[101.5, 202.5, 303.5, 404.5]);
            let mut plain = vec![0f32; 4];
            op.run::<Separate>(&input, &mut plain);
            assert_eq!(plain, [101.5, 202.5, 303.5, 404.5]);
        }
    }

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

    #[test]
    fn max_pool_by_hand() {
        let input: Vec<f32> = vec![1., 5., 2., 0., 3., 4., 8., 1., -1., -2., -3., -4.];
        let op = MaxPool2x2 {
            channels: 1,
            in_hw: (3, 4),
            out_shape: tvec!(1, 1, 2),
        };
        let out = op
            .eval(
                &EvalContext::out_of_plan(),
                tvec!(Tensor::from_shape(&[1, 3, 4], &input).expect("t").into()),
            )
            .expect("eval");
        // The odd last row is dropped, as a valid 2x2 pool does.
        assert_eq!(f32s(&out[0]).expect("f32"), &[5., 8.]);
    }
}
