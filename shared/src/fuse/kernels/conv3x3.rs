//! The 3x3 convolution ([`Conv3x3Act`]), in bands of output rows, each from a small
//! zero-padded copy of the input rows it reads ([`Geometry`]): depthwise ([`Depthwise`]), as 9
//! multiply-adds over each channel's band; full ([`Full`]), as one
//! [`ChannelMix`](super::ChannelMix) product per band. Both also serve the fused pair of
//! `pw_dw` (its depthwise half, and its stem).

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
    /// The whole op, in bands of output rows, each from a small zero-padded copy of the input
    /// rows it reads (for stride 2, split into their four even/odd row/column phases; see
    /// [`Geometry`]). A depthwise convolution computes each channel's band on its own (see
    /// [`Depthwise`]); a full one computes a band as one [`ChannelMix`](super::ChannelMix)
    /// product whose rows are the input planes at the 9 taps' offsets.
    #[inline(always)]
    fn run<F: MulAdd>(&self, input: &[f32], out: &mut [f32]) {
        if self.group_in == 1 {
            let dw = Depthwise::new(self, usize::MAX, false);
            let mut scratch = dw.scratch();
            let (h, w) = self.in_hw;
            for ys in dw.bands() {
                for c in 0..self.channels {
                    let src = |y: usize| {
                        if self.channels_last {
                            Row::Strided(&input[y * w * self.channels + c..], self.channels)
                        } else {
                            Row::Plain(&input[(c * h + y) * w..][..w])
                        }
                    };
                    dw.band::<F>(c, ys.clone(), src, &mut scratch, out);
                }
            }
            return;
        }
        if let Some(full) = Full::new(self) {
            let mut scratch = full.scratch();
            full.rows::<F>(input, 0..self.out_hw.0, &mut scratch, out, Dest::Tensor);
        }
    }
}

/// Where [`Full::rows`] writes.
pub(super) enum Dest {
    /// The op's output tensor.
    Tensor,
    /// Channels-first rows from `row0`: channel `c`, row `y` at
    /// `c * channel_len + (y - row0) * width`.
    Rows { channel_len: usize, row0: usize },
    /// The same with the rows [`Full::pitch`] floats apart, as they are computed (no copy):
    /// channel `c`, row `y` at `c * channel_len + (y - row0) * pitch`.
    Pitched { channel_len: usize, row0: usize },
}

/// A full 3x3 convolution (few input channels) computed in bands of output rows: per band,
/// the input rows it reads are copied, zero-padded, into planes of their own (small, so in
/// cache; for stride 2, split into their four even/odd row/column phases), and the planes at
/// the 9 taps' offsets are the rows of one [`ChannelMix`](super::ChannelMix) product, with
/// bias and activation.
pub(super) struct Full<'a> {
    op: &'a Conv3x3Act,
    mix: &'a super::ChannelMix,
    g: Geometry,
    band: usize,
    /// Per band, where each of the product's rows starts in the planes.
    rows: Vec<usize>,
}

/// The buffers [`Full::rows`] works in, allocated once per run.
pub(super) struct FullScratch {
    planes: Vec<f32>,
    padded: Vec<f32>,
    bands: Vec<f32>,
}

impl<'a> Full<'a> {
    /// For a prepared full convolution.
    #[inline(always)]
    pub(super) fn new(op: &'a Conv3x3Act) -> Option<Self> {
        let mix = op.full.as_ref()?;
        let band = Geometry::new(op).band_rows().min(op.out_hw.0);
        let g = Geometry::with_rows(op, (band - 1) * op.stride + 3);
        let group_len = g.plane_len * op.stride * op.stride;
        let rows = (0..op.group_in)
            .flat_map(|j| g.taps.iter().map(move |&(p, off)| (j, p, off)))
            .map(|(j, p, off)| j * group_len + p * g.plane_len + off)
            .collect();
        Some(Self {
            op,
            mix,
            g,
            band,
            rows,
        })
    }

    #[inline(always)]
    pub(super) fn scratch(&self) -> FullScratch {
        let s = self.op.stride;
        FullScratch {
            // The padding columns are never written: they stay zero.
            planes: vec![0f32; self.g.plane_len * s * s * self.op.group_in],
            padded: vec![0f32; self.g.padded_len()],
            bands: vec![0f32; self.op.channels * self.band_len()],
        }
    }

    /// Floats between output rows as they are computed (see [`Dest::Pitched`]).
    #[inline(always)]
    pub(super) fn pitch(&self) -> usize {
        self.g.pitch
    }

    #[inline(always)]
    fn band_len(&self) -> usize {
        (self.band - 1) * self.g.pitch + self.op.out_hw.1
    }

    /// Output rows `ys`, in bands, into `out`.
    #[inline(always)]
    pub(super) fn rows<F: MulAdd>(
        &self,
        input: &[f32],
        ys: std::ops::Range<usize>,
        scratch: &mut FullScratch,
        out: &mut [f32],
        dest: Dest,
    ) {
        let op = self.op;
        let (h, w) = op.in_hw;
        let ow = op.out_hw.1;
        let (s, pt, cin) = (op.stride, op.pad_top_left.0, op.group_in);
        let g = &self.g;
        let group_len = g.plane_len * s * s;
        let band_len = self.band_len();
        for y0 in ys.clone().step_by(self.band) {
            let y1 = (y0 + self.band).min(ys.end);
            let first = y0 * s;
            for (c, group) in scratch.planes.chunks_exact_mut(group_len).enumerate() {
                for py in first..(y1 - 1) * s + 3 {
                    match py.checked_sub(pt).filter(|&y| y < h) {
                        Some(y) => {
                            let row = if op.channels_last {
                                Row::Strided(&input[y * w * cin + c..], cin)
                            } else {
                                Row::Plain(&input[(c * h + y) * w..][..w])
                            };
                            g.put_row(group, &mut scratch.padded, py, first, row);
                        }
                        None => g.zero_row(group, &mut scratch.padded, py, first),
                    }
                }
                g.split_phases(group, &scratch.padded, (y1 - 1) * s + 3 - first);
            }
            let n = (y1 - y0 - 1) * g.pitch + ow;
            if let Dest::Pitched { channel_len, row0 } = dest {
                let at = (y0 - row0) * g.pitch;
                self.mix
                    .run::<F>(&scratch.planes, &self.rows, n, &mut out[at..], channel_len);
                continue;
            }
            self.mix
                .run::<F>(&scratch.planes, &self.rows, n, &mut scratch.bands, band_len);
            for (c, band) in scratch.bands.chunks_exact(band_len).enumerate() {
                match dest {
                    Dest::Tensor => op.band_out(out, band, c, y0..y1, g.pitch),
                    Dest::Rows { channel_len, row0 } => {
                        for y in y0..y1 {
                            out[c * channel_len + (y - row0) * ow..][..ow]
                                .copy_from_slice(&band[(y - y0) * g.pitch..][..ow]);
                        }
                    }
                    // Written straight by the product, above.
                    Dest::Pitched { .. } => {}
                }
            }
        }
    }
}

/// One input row of one channel, as [`Geometry::put_row`] reads it.
pub(super) enum Row<'a> {
    /// Contiguous values.
    Plain(&'a [f32]),
    /// Every `n`th value from the first (a channels-last tensor).
    Strided(&'a [f32], usize),
}

/// Where a 3x3 convolution keeps its zero-padded input: the padded rows and columns laid out
/// so that each of the 9 taps is the same flat plane read at a fixed offset (for stride 2,
/// four planes: the even/odd row/column phases).
pub(super) struct Geometry {
    /// Floats per plane row.
    pitch: usize,
    /// Floats per plane (per phase for stride 2).
    plane_len: usize,
    /// Padded columns: `(ow - 1) * stride + 3`.
    padded_w: usize,
    /// Zero rows and columns before the first input row and column.
    pad: (usize, usize),
    stride: usize,
    in_hw: (usize, usize),
    /// (plane, offset) of each of the 9 taps.
    taps: [(usize, usize); 9],
}

impl Geometry {
    /// For the whole padded input of `op`.
    #[inline(always)]
    fn new(op: &Conv3x3Act) -> Self {
        let rows = (op.out_hw.0 - 1) * op.stride + 3;
        Self::with_rows(op, rows)
    }

    /// For `rows` padded rows (a band's).
    #[inline(always)]
    fn with_rows(op: &Conv3x3Act, rows: usize) -> Self {
        let s = op.stride;
        let padded_w = (op.out_hw.1 - 1) * s + 3;
        let (pitch, plane_rows) = if s == 1 {
            (padded_w, rows)
        } else {
            (padded_w.div_ceil(2), rows.div_ceil(2))
        };
        Self {
            pitch,
            plane_len: pitch * plane_rows,
            padded_w,
            pad: op.pad_top_left,
            stride: s,
            in_hw: op.in_hw,
            taps: std::array::from_fn(|t| {
                let (ky, kx) = (t / 3, t % 3);
                if s == 1 {
                    (0, ky * pitch + kx)
                } else {
                    ((ky & 1) * 2 + (kx & 1), (ky >> 1) * pitch + (kx >> 1))
                }
            }),
        }
    }

    /// Output rows per band: the band's flat span stays in L1.
    #[inline(always)]
    fn band_rows(&self) -> usize {
        (BAND_FLOATS / self.pitch).max(1)
    }

    /// Writes input row `row` as padded row `py` (counted from `first`, the padded row at
    /// the planes' start, even for stride 2) of `planes`. Stride 2 splits rows into their
    /// even/odd column phases: long rows as they are put, short ones by way of `padded`, a
    /// band at a time (see [`Geometry::split_phases`]). The padding columns are never
    /// written, so stay zero.
    #[inline(always)]
    fn put_row(&self, planes: &mut [f32], padded: &mut [f32], py: usize, first: usize, row: Row) {
        let pl = self.pad.1;
        let w = self.in_hw.1.min(self.padded_w - pl);
        let r = py - first;
        if self.stride == 2 && self.split_as_put() {
            // Padded column `pl + j` is input column `j`: the even input columns go to one
            // phase, the odd ones to the other, from where their first lands.
            let (p0, p1) = planes[self.phase_row(r)..].split_at_mut(self.plane_len);
            let (even, odd) = if pl & 1 == 0 {
                (&mut p0[pl / 2..self.pitch], &mut p1[pl / 2..self.pitch])
            } else {
                (
                    &mut p1[pl / 2..self.pitch],
                    &mut p0[pl.div_ceil(2)..self.pitch],
                )
            };
            match row {
                Row::Plain(src) => {
                    let src = &src[..w];
                    for ((e, o), pair) in
                        even.iter_mut().zip(odd.iter_mut()).zip(src.chunks_exact(2))
                    {
                        *e = pair[0];
                        *o = pair[1];
                    }
                    if w % 2 == 1 {
                        even[w / 2] = src[w - 1];
                    }
                }
                Row::Strided(src, n) => {
                    for x in 0..w {
                        let d = if x % 2 == 0 {
                            &mut even[x / 2]
                        } else {
                            &mut odd[x / 2]
                        };
                        *d = src[x * n];
                    }
                }
            }
            return;
        }
        let dst = if self.stride == 1 {
            &mut planes[r * self.pitch + pl..][..w]
        } else {
            &mut padded[self.padded_row(r) + pl..][..w]
        };
        match row {
            Row::Plain(src) => dst.copy_from_slice(&src[..w]),
            Row::Strided(src, n) => {
                for (x, d) in dst.iter_mut().enumerate() {
                    *d = src[x * n];
                }
            }
        }
    }

    /// Stride 2: whether rows are split into phases as they are put. Long rows are (one pass
    /// over the input instead of a copy and a split); rows shorter than a few vectors are
    /// not: the split's vectorised loop would never run (MobileFaceNet's rows are 14 to 112
    /// values), so they are split a band at a time.
    #[inline(always)]
    fn split_as_put(&self) -> bool {
        self.padded_w >= 256
    }

    /// Stride 2: where padded row `r` of a band starts in its even-column phase plane (the
    /// odd-column one follows, `plane_len` floats on).
    #[inline(always)]
    fn phase_row(&self, r: usize) -> usize {
        (r & 1) * 2 * self.plane_len + (r >> 1) * self.pitch
    }

    /// Stride 2: where padded row `r` of a band starts in the buffer short rows are put in
    /// before they are split into phases: the even rows one after the other, then the odd
    /// ones, each `2 * pitch` floats, so that each half is split in one long loop.
    #[inline(always)]
    fn padded_row(&self, r: usize) -> usize {
        (r & 1) * 2 * self.plane_len + (r >> 1) * 2 * self.pitch
    }

    /// Floats of that buffer (none where it is not used).
    #[inline(always)]
    fn padded_len(&self) -> usize {
        if self.stride == 1 || self.split_as_put() {
            0
        } else {
            4 * self.plane_len
        }
    }

    /// Zeroes padded row `py` (counted from `first`): a padding row.
    #[inline(always)]
    fn zero_row(&self, planes: &mut [f32], padded: &mut [f32], py: usize, first: usize) {
        let r = py - first;
        if self.stride == 1 {
            planes[r * self.pitch..][..self.pitch].fill(0.0);
        } else if self.split_as_put() {
            let at = self.phase_row(r);
            planes[at..][..self.pitch].fill(0.0);
            planes[at + self.plane_len..][..self.pitch].fill(0.0);
        } else {
            padded[self.padded_row(r)..][..2 * self.pitch].fill(0.0);
        }
    }

    /// Stride 2, short rows: splits the first `rows` padded rows, put in `padded`, into the
    /// four even/odd row/column phase planes, in one loop over all the rows of a parity
    /// (split row by row, MobileFaceNet's short rows were never long enough for the
    /// vectorised loop, and its stride-2 layers spent most of their time there).
    #[inline(always)]
    fn split_phases(&self, planes: &mut [f32], padded: &[f32], rows: usize) {
        if self.stride == 1 || self.split_as_put() {
            return;
        }
        for parity in 0..2 {
            let n = rows.saturating_sub(parity).div_ceil(2) * self.pitch;
            let src = &padded[parity * 2 * self.plane_len..][..2 * n];
            let (even, odd) = planes[2 * parity * self.plane_len..].split_at_mut(self.plane_len);
            for ((e, o), pair) in even[..n]
                .iter_mut()
                .zip(&mut odd[..n])
                .zip(src.chunks_exact(2))
            {
                *e = pair[0];
                *o = pair[1];
            }
        }
    }
}

/// A depthwise convolution computed in bands of output rows, one channel at a time: the
/// input rows a band reads are copied into a small zero-padded plane (in L1), and each
/// output channel's band is one long loop of 9 multiply-adds over the flattened plane (the
/// few columns computed between rows are dropped), with bias and activation: narrow planes
/// (14x14 in MobileFaceNet) vectorise as well as wide ones.
pub(super) struct Depthwise<'a> {
    op: &'a Conv3x3Act,
    g: Geometry,
    band: usize,
    /// The output is max-pooled 2x2 (stride 2) on its way out.
    pooled: bool,
}

/// The buffers [`Depthwise::band`] works in, allocated once per run.
pub(super) struct Scratch {
    planes: Vec<f32>,
    padded: Vec<f32>,
    flat: Vec<f32>,
}

impl<'a> Depthwise<'a> {
    /// Bands of at most [`BAND_FLOATS`] flat outputs, each reading at most `max_in_rows`
    /// padded input rows (at least one output row); with `pooled`, the output is max-pooled
    /// 2x2 as it is written (then a band has an even number of rows, at least two).
    #[inline(always)]
    pub(super) fn new(op: &'a Conv3x3Act, max_in_rows: usize, pooled: bool) -> Self {
        let g = Geometry::new(op);
        let by_input = (max_in_rows.saturating_sub(3) / op.stride + 1).max(1);
        let mut band = g.band_rows().min(op.out_hw.0).min(by_input);
        if pooled {
            band = (band & !1).max(2);
        }
        let g = Geometry::with_rows(op, (band - 1) * op.stride + 3);
        Self {
            op,
            g,
            band,
            pooled,
        }
    }

    #[inline(always)]
    pub(super) fn scratch(&self) -> Scratch {
        Scratch {
            // The padding columns are never written: they stay zero.
            planes: vec![0f32; self.g.plane_len * self.op.stride * self.op.stride],
            padded: vec![0f32; self.g.padded_len()],
            flat: self.flat_buffer(),
        }
    }

    /// The most input rows a band reads.
    #[inline(always)]
    pub(super) fn max_input_rows(&self) -> usize {
        (self.band - 1) * self.op.stride + 3
    }

    /// The bands of output rows.
    #[inline(always)]
    pub(super) fn bands(&self) -> impl Iterator<Item = std::ops::Range<usize>> + use<> {
        let (band, oh) = (self.band, self.op.out_hw.0);
        (0..oh).step_by(band).map(move |y0| y0..(y0 + band).min(oh))
    }

    /// The input rows that output rows `ys` read (those inside the image).
    #[inline(always)]
    pub(super) fn input_rows(&self, ys: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let (s, pt, h) = (self.op.stride, self.op.pad_top_left.0, self.op.in_hw.0);
        let first = (ys.start * s).saturating_sub(pt);
        let last = ((ys.end - 1) * s + 3).saturating_sub(pt).min(h);
        first..last.max(first)
    }

    /// Output channel `c`, rows `ys`, into `out`; `row(y)` gives channel `c`'s input row `y`.
    #[inline(always)]
    pub(super) fn band<'r, F: MulAdd>(
        &self,
        c: usize,
        ys: std::ops::Range<usize>,
        row: impl Fn(usize) -> Row<'r>,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) {
        let (s, pt, h) = (self.op.stride, self.op.pad_top_left.0, self.op.in_hw.0);
        let first = ys.start * s;
        for py in first..(ys.end - 1) * s + 3 {
            match py.checked_sub(pt).filter(|&y| y < h) {
                Some(y) => {
                    self.g
                        .put_row(&mut scratch.planes, &mut scratch.padded, py, first, row(y))
                }
                None => self
                    .g
                    .zero_row(&mut scratch.planes, &mut scratch.padded, py, first),
            }
        }
        let rows = (ys.end - 1) * s + 3 - first;
        self.g
            .split_phases(&mut scratch.planes, &scratch.padded, rows);
        self.band_from_planes::<F>(c, ys, &scratch.planes, &mut scratch.flat, out);
    }

    /// Stride 1: floats of one channel's zero-padded band plane (see
    /// [`Depthwise::band_from_planes`]).
    #[inline(always)]
    pub(super) fn plane_len(&self) -> usize {
        self.g.plane_len
    }

    /// Stride 1: input row `y` of a band plane whose first padded row is output row `y0`'s
    /// first, as `(y, where its first value goes)`; `None` for a padding row (all zeros, see
    /// [`Depthwise::row_span`]). The padding columns of the other rows stay zero: nothing
    /// writes them.
    #[inline(always)]
    pub(super) fn plane_row(&self, y0: usize, py: usize) -> Option<(usize, usize)> {
        debug_assert_eq!(self.op.stride, 1);
        let (pt, h) = (self.op.pad_top_left.0, self.op.in_hw.0);
        py.checked_sub(pt)
            .filter(|&y| y < h)
            .map(|y| (y, (py - y0) * self.g.pitch + self.g.pad.1))
    }

    /// Stride 1: the input rows among padded rows `padded`.
    #[inline(always)]
    pub(super) fn image_rows(&self, padded: &std::ops::Range<usize>) -> std::ops::Range<usize> {
        let (pt, h) = (self.op.pad_top_left.0, self.op.in_hw.0);
        let first = padded.start.saturating_sub(pt).min(h);
        first..padded.end.saturating_sub(pt).clamp(first, h)
    }

    /// Stride 1: padded row `py` of a band plane whose first padded row is output row `y0`'s
    /// first, padding columns included, as a range of the plane.
    #[inline(always)]
    pub(super) fn row_span(&self, y0: usize, py: usize) -> std::ops::Range<usize> {
        let at = (py - y0) * self.g.pitch;
        at..at + self.g.pitch
    }

    /// The buffer a band's flat output is computed in, before it goes to the output tensor
    /// (see [`Depthwise::band_from_planes`]).
    #[inline(always)]
    pub(super) fn flat_buffer(&self) -> Vec<f32> {
        vec![0f32; (self.band - 1) * self.g.pitch + self.op.out_hw.1]
    }

    /// Output channel `c`, rows `ys`, from its padded input rows already laid out in `planes`
    /// as [`Depthwise::band`] lays them out (the fused pair's 1x1 convolution writes them
    /// there itself, for stride 1), into `out`, by way of `flat` (a
    /// [`Depthwise::flat_buffer`]).
    #[inline(always)]
    pub(super) fn band_from_planes<F: MulAdd>(
        &self,
        c: usize,
        ys: std::ops::Range<usize>,
        planes: &[f32],
        flat: &mut [f32],
        out: &mut [f32],
    ) {
        let g = &self.g;
        let n = (ys.len() - 1) * g.pitch + self.op.out_hw.1;
        let flat = &mut flat[..n];
        let k: [f32; 9] = std::array::from_fn(|i| self.op.weights[c * 9 + i]);
        let src: [&[f32]; 9] = std::array::from_fn(|t| {
            let (p, off) = g.taps[t];
            &planes[p * g.plane_len + off..][..n]
        });
        taps_flat::<F>(flat, src, &k, self.op.bias[c], self.op.act.slope(c));
        if self.pooled {
            self.pool_out(out, flat, c, ys);
        } else {
            self.op.band_out(out, flat, c, ys, g.pitch);
        }
    }

    /// The 2x2 max pool of output channel `c`'s rows `ys` (from an even row), computed flat
    /// in `flat`, into the pooled output tensor. A last odd row or column is dropped, as a
    /// valid pool does.
    #[inline(always)]
    fn pool_out(&self, out: &mut [f32], flat: &[f32], c: usize, ys: std::ops::Range<usize>) {
        let (oh, ow) = self.op.out_hw;
        let (ph, pw) = (oh / 2, ow / 2);
        let pitch = self.g.pitch;
        for py in ys.start / 2..(ys.end / 2).min(ph) {
            let r0 = &flat[(2 * py - ys.start) * pitch..][..2 * pw];
            let r1 = &flat[(2 * py + 1 - ys.start) * pitch..][..2 * pw];
            let o = &mut out[(c * ph + py) * pw..][..pw];
            for (x, v) in o.iter_mut().enumerate() {
                let top = super::larger(r0[2 * x], r0[2 * x + 1]);
                let bottom = super::larger(r1[2 * x], r1[2 * x + 1]);
                *v = super::larger(top, bottom);
            }
        }
    }
}

impl Conv3x3Act {
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

    /// Stride 2, depthwise and full, on rows long enough to be split into phases as they are
    /// put and on short ones (split a band at a time), each padding: channels-last (strided
    /// rows) gives the channels-first result, and both the direct sums.
    #[test]
    fn stride_two_in_either_layout_equals_the_direct_sums() {
        let mut noise = crate::noise::Noise::new(5);
        for (h, w, pad, group_in) in [
            (7usize, 301usize, (1usize, 1usize), 1usize),
            (6, 300, (0, 0), 1),
            (9, 20, (1, 1), 1),
            (5, 290, (1, 1), 3),
            (8, 33, (0, 0), 3),
        ] {
            let channels = 2;
            let cin = if group_in == 1 { channels } else { group_in };
            let (oh, ow) = if pad == (0, 0) {
                ((h - 1) / 2, (w - 1) / 2)
            } else {
                (h.div_ceil(2), w.div_ceil(2))
            };
            let weights = noise.floats(channels * group_in * 9);
            let chw = noise.floats(cin * h * w);
            let op = |channels_last| {
                Conv3x3Act {
                    channels,
                    group_in,
                    in_hw: (h, w),
                    out_hw: (oh, ow),
                    stride: 2,
                    pad_top_left: pad,
                    channels_last,
                    weights: Arc::new(weights.clone()),
                    bias: Arc::new(vec![0.25, -0.5]),
                    act: Act::Linear,
                    out_shape: if channels_last {
                        tvec!(1, oh, ow, channels)
                    } else {
                        tvec!(1, channels, oh, ow)
                    },
                    full: None,
                }
                .prepared()
            };
            // The sums, straight from the definition (zero outside the image).
            let at = |c: usize, y: isize, x: isize| {
                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                    0.0
                } else {
                    chw[(c * h + y as usize) * w + x as usize]
                }
            };
            let mut direct = vec![0f32; channels * oh * ow];
            for o in 0..channels {
                for (y, x) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                    let mut v = [0.25f32, -0.5][o];
                    for (j, c) in if group_in == 1 {
                        vec![o]
                    } else {
                        (0..cin).collect()
                    }
                    .into_iter()
                    .enumerate()
                    {
                        for t in 0..9 {
                            let iy = (2 * y + t / 3) as isize - pad.0 as isize;
                            let ix = (2 * x + t % 3) as isize - pad.1 as isize;
                            v += weights[(o * group_in + j) * 9 + t] * at(c, iy, ix);
                        }
                    }
                    direct[(o * oh + y) * ow + x] = v;
                }
            }
            let hwc: Vec<f32> = (0..h * w)
                .flat_map(|p| (0..cin).map(move |c| (p, c)))
                .map(|(p, c)| chw[c * h * w + p])
                .collect();
            let mut first = vec![0f32; channels * oh * ow];
            op(false).run::<Separate>(&chw, &mut first);
            let mut last = vec![0f32; channels * oh * ow];
            op(true).run::<Separate>(&hwc, &mut last);
            for (i, d) in direct.iter().enumerate() {
                let (c, p) = (i / (oh * ow), i % (oh * ow));
                let what = format!("{h}x{w} pad {pad:?} group {group_in} at {i}");
                assert!((first[i] - d).abs() < 1e-4, "{what}: {} {d}", first[i]);
                assert!((last[p * channels + c] - d).abs() < 1e-4, "{what} (last)");
            }
        }
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
