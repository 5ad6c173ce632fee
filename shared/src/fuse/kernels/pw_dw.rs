//! A 1x1 convolution and the depthwise 3x3 convolution that reads it, in one pass
//! ([`PointwiseDepthwise`]): the pattern of every block of both models.

use super::conv3x3::{Depthwise, Dest, Full, FullScratch, Row};
use crate::fuse::ops::PointwiseDepthwise;
use crate::fuse::simd::{Kernel, MulAdd};

/// Floats of 1x1 output a band keeps (256 KB, a quarter of a core's L2 here): a band of the
/// depthwise convolution reads at most this many.
const KEPT_FLOATS: usize = 64 * 1024;

impl Kernel for PointwiseDepthwise {
    /// Bands of the depthwise convolution's output rows. For each band, the 1x1 convolution
    /// computes the rows of its output that the band reads and the previous band did not (the
    /// rows both read are kept), into a buffer that stays in cache; the depthwise convolution
    /// then reads them from there. The 1x1 output, as large as the input of the next layer,
    /// is never written to memory whole and read back.
    #[inline(always)]
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]) {
        let (h, w) = self.dw.in_hw;
        let mix = &self.pw.mix;
        let channels = self.dw.channels;
        let (dw, mut stem) = self.bands_and_stem();
        let mut scratch = dw.scratch();
        let cap = dw.max_input_rows();
        // Channel c's kept rows start at `c * cap * w`; `kept` are the rows held, from the
        // first.
        let mut rows = vec![0f32; channels * cap * w];
        let mut kept = 0..0;
        for ys in dw.bands() {
            let need = dw.input_rows(&ys);
            // Bands go down the image: rows kept from the previous band move to the front.
            let reuse = need.start.max(kept.start)..kept.end.max(need.start);
            if !reuse.is_empty() && reuse.start > kept.start {
                for c in 0..channels {
                    let from = (c * cap + reuse.start - kept.start) * w;
                    rows.copy_within(from..from + reuse.len() * w, c * cap * w);
                }
            }
            let new = reuse.end..need.end;
            if !new.is_empty() {
                let first = (new.start - need.start) * w;
                let len = new.len() * w;
                if let Some((stem, scratch, stem_rows)) = &mut stem {
                    // The stem's output rows that the 1x1 convolution reads, first.
                    let dest = Dest::Rows {
                        channel_len: len,
                        row0: new.start,
                    };
                    stem.rows::<F>(input, new.clone(), scratch, stem_rows, dest);
                    let at: Vec<usize> = (0..mix.inputs).map(|i| i * len).collect();
                    mix.run::<F>(stem_rows, &at, len, &mut rows[first..], cap * w);
                } else {
                    let at: Vec<usize> = (0..mix.inputs).map(|i| (i * h + new.start) * w).collect();
                    mix.run::<F>(input, &at, len, &mut rows[first..], cap * w);
                }
            }
            kept = need.clone();
            for c in 0..channels {
                let row = |y: usize| Row::Plain(&rows[(c * cap + y - need.start) * w..][..w]);
                dw.band::<F>(c, ys.clone(), row, &mut scratch, out);
            }
        }
    }
}

/// A stem ([`Full`]) with its scratch and the buffer of its output rows (`cap` rows per
/// channel).
type Stem<'a> = (Full<'a>, FullScratch, Vec<f32>);

impl PointwiseDepthwise {
    /// What both pair kernels start from: the depthwise convolution in bands whose input rows
    /// (all channels) fit in [`KEPT_FLOATS`], and the stem, if any, with its buffers.
    #[inline(always)]
    fn bands_and_stem(&self) -> (Depthwise<'_>, Option<Stem<'_>>) {
        let (channels, w) = (self.dw.channels, self.dw.in_hw.1);
        let dw = Depthwise::new(&self.dw, (KEPT_FLOATS / (channels * w)).max(3), self.pooled);
        let cap = dw.max_input_rows();
        let stem = self.stem.as_ref().and_then(Full::new).map(|stem| {
            let scratch = stem.scratch();
            let rows = vec![0f32; self.pw.mix.inputs * cap * stem.pitch()];
            (stem, scratch, rows)
        });
        (dw, stem)
    }

    /// Whether [`PairInPlace`] computes the pair: stride 1 and rows of whole blocks of the 1x1
    /// kernel. Runs outside `dispatch`.
    pub(in crate::fuse) fn in_place(&self) -> bool {
        self.dw.stride == 1 && self.pw.mix.whole_blocks(self.dw.in_hw.1)
    }
}

/// The pair for stride 1 where rows are whole blocks of the 1x1 kernel (see
/// [`PointwiseDepthwise::in_place`]): the 1x1 convolution writes each output row straight
/// into the depthwise band's zero-padded planes (one per channel), which the depthwise
/// convolution then reads in place, instead of going through a buffer of rows and a padded
/// copy of each (those copies were about a tenth of YuNet's time). Rows two bands read are
/// kept, moved up. With a stem, its output rows that a band needs are computed first, as in
/// the general kernel.
pub(in crate::fuse) struct PairInPlace<'a>(pub(in crate::fuse) &'a PointwiseDepthwise);

impl Kernel for PairInPlace<'_> {
    #[inline(always)]
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]) {
        let pair = self.0;
        let (h, w) = pair.dw.in_hw;
        let mix = &pair.pw.mix;
        let (dw, mut stem) = pair.bands_and_stem();
        let plane = dw.plane_len();
        let mut planes = vec![0f32; pair.dw.channels * plane];
        let mut flat = dw.flat_buffer();
        let mut at = vec![0usize; mix.inputs];
        let cap = dw.max_input_rows();
        // The stem's rows are `stem_pitch` floats apart, as it computes them.
        let stem_pitch = stem.as_ref().map_or(0, |(stem, _, _)| stem.pitch());
        // The padded rows in the planes, the first at their top.
        let mut held = 0..0;
        for ys in dw.bands() {
            // The padded rows the band reads (stride 1: its rows and one more each side).
            let rows = ys.start..ys.end + 2;
            let fresh = if held.end > rows.start {
                let from = dw.row_span(held.start, rows.start).start;
                let to = dw.row_span(held.start, held.end).start;
                for p in planes.chunks_exact_mut(plane) {
                    p.copy_within(from..to, 0);
                }
                held.end..rows.end
            } else {
                rows.clone()
            };
            // With a stem: its output rows that the fresh rows are, first (`stem_rows` holds
            // `cap` rows per channel, from the first of them).
            let ins = dw.image_rows(&fresh);
            if let Some((stem, scratch, stem_rows)) = &mut stem {
                let dest = Dest::Pitched {
                    channel_len: cap * stem_pitch,
                    row0: ins.start,
                };
                stem.rows::<F>(input, ins.clone(), scratch, stem_rows, dest);
            }
            for py in fresh {
                match dw.plane_row(rows.start, py) {
                    Some((y, first)) => {
                        let x = if let Some((_, _, stem_rows)) = &stem {
                            for (i, a) in at.iter_mut().enumerate() {
                                *a = i * cap * stem_pitch + (y - ins.start) * stem_pitch;
                            }
                            &stem_rows[..]
                        } else {
                            for (i, a) in at.iter_mut().enumerate() {
                                *a = (i * h + y) * w;
                            }
                            input
                        };
                        mix.run::<F>(x, &at, w, &mut planes[first..], plane);
                    }
                    None => {
                        let span = dw.row_span(rows.start, py);
                        for p in planes.chunks_exact_mut(plane) {
                            p[span.clone()].fill(0.0);
                        }
                    }
                }
            }
            held = rows;
            for (c, p) in planes.chunks_exact(plane).enumerate() {
                dw.band_from_planes::<F>(c, ys.clone(), p, &mut flat, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tract_onnx::prelude::*;
    use tract_onnx::tract_core::internal::*;

    use crate::fuse::ops::{Act, Conv3x3Act, MaxPool2x2, PointwiseAct, PointwiseDepthwise, f32s};

    /// The fused pair against the two ops run one after the other, on images tall and wide
    /// enough for several bands (so that rows are kept between bands), with stride 1 and 2,
    /// odd sizes and each activation.
    #[test]
    fn pair_equals_the_two_ops() {
        let mut noise = crate::noise::Noise::new(11);
        let mut random = |n: usize| noise.floats(n);
        for (h, w, stride, pad, ci, c) in [
            (37usize, 700usize, 1usize, (1usize, 1usize), 3usize, 5usize),
            (41, 601, 2, (1, 1), 4, 3),
            (30, 900, 2, (0, 0), 2, 6),
            (9, 7, 1, (1, 1), 5, 4),
            // Rows of whole 1x1 blocks (`PairInPlace`): many 3-row bands, few long ones, no
            // padding.
            (20, 320, 1, (1, 1), 3, 40),
            (150, 64, 1, (1, 1), 4, 5),
            (40, 48, 1, (0, 0), 2, 3),
        ] {
            let (oh, ow) = if stride == 1 && pad == (0, 0) {
                (h - 2, w - 2)
            } else if stride == 1 {
                (h, w)
            } else if pad == (0, 0) {
                ((h - 1) / 2, (w - 1) / 2)
            } else {
                (h.div_ceil(2), w.div_ceil(2))
            };
            let slopes = Arc::new(random(c));
            let pw = PointwiseAct::new(
                ci,
                c,
                &random(ci * c),
                random(c),
                Act::PRelu(slopes),
                tvec!(1, c, h, w),
                false,
            );
            let dw = Conv3x3Act {
                channels: c,
                group_in: 1,
                in_hw: (h, w),
                out_hw: (oh, ow),
                stride,
                pad_top_left: pad,
                channels_last: false,
                weights: Arc::new(random(c * 9)),
                bias: Arc::new(random(c)),
                act: Act::Relu,
                out_shape: tvec!(1, c, oh, ow),
                full: None,
            };
            let input: TValue = Tensor::from_shape(&[1, ci, h, w], &random(ci * h * w))
                .expect("input")
                .into();
            let ctx = EvalContext::out_of_plan();
            let mid = pw.eval(&ctx, tvec!(input.clone())).expect("pointwise");
            let separate = dw.eval(&ctx, mid).expect("depthwise");
            let pair = PointwiseDepthwise::new(pw, dw).expect("a pair");
            let fused = pair.eval(&ctx, tvec!(input.clone())).expect("pair");
            let (a, b) = (
                f32s(&fused[0]).expect("f32"),
                f32s(&separate[0]).expect("f32"),
            );
            assert_eq!(a.len(), c * oh * ow);
            close(a, b, &format!("{h}x{w} s{stride}"));
            // With the 2x2 max pool after it (odd sizes drop their last row or column).
            let pool = MaxPool2x2 {
                channels: c,
                in_hw: (oh, ow),
                out_shape: tvec!(1, c, oh / 2, ow / 2),
            };
            let pooled = pool.eval(&ctx, separate).expect("pool");
            let pair = pair.with_pool(&pool).expect("pair and pool");
            let fused = pair.eval(&ctx, tvec!(input)).expect("pair and pool");
            let (a, b) = (
                f32s(&fused[0]).expect("f32"),
                f32s(&pooled[0]).expect("f32"),
            );
            assert_eq!(a.len(), c * (oh / 2) * (ow / 2));
            close(a, b, &format!("{h}x{w} s{stride} pooled"));
        }
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "{what} at {i}: {x} {y}"
            );
        }
    }
}
