//! The 3x3 convolution ([`Conv3x3Act`]): depthwise, as 9 multiply-adds over each padded
//! input plane; full, as one [`ChannelMix`](super::ChannelMix) product.

use super::activate;
use crate::fuse::ops::Conv3x3Act;
use crate::fuse::simd::{Kernel, MulAdd};

impl Conv3x3Act {
    /// Channels of the input: all the output channels (depthwise), or `group_in` (full).
    #[inline(always)]
    pub(in crate::fuse) fn in_channels(&self) -> usize {
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
    /// well as wide ones. A full convolution is one [`ChannelMix`](super::ChannelMix) product
    /// whose rows are the input planes at the 9 taps' offsets.
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
    /// Inlined, as everything under [`dispatch`](crate::fuse::simd::dispatch) must be:
    /// compiled outside the FMA function, `f32::mul_add` is a software fallback hundreds of
    /// times slower.
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::internal::*;

    use crate::fuse::ops::{Act, Conv3x3Act, f32s};
    use crate::fuse::simd::{Kernel, Separate};

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
}
