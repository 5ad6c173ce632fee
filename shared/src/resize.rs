//! Image resizing for the detector input (one place to swap the implementation).
//!
//! Photos are shrunk 2-10x before detection. A generic convolution resize (`image`'s triangle
//! filter) took about 30 ms for a 910x1137 photo here, more than detection itself, so shrinking
//! is done in two cheap passes: an integer box average (area filter, no aliasing) down to less
//! than twice the target, then bilinear interpolation to the exact size.

use image::RgbImage;

/// Resizes an RGB image to `width` x `height` (both at least 1).
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (width, height) = (width.max(1), height.max(1));
    if img.dimensions() == (width, height) || img.width() == 0 || img.height() == 0 {
        return img.clone();
    }
    let kx = (img.width() / width).max(1);
    let ky = (img.height() / height).max(1);
    let boxed;
    let src = if kx > 1 || ky > 1 {
        boxed = box_shrink(img, kx, ky);
        &boxed
    } else {
        img
    };
    if src.dimensions() == (width, height) {
        src.clone()
    } else {
        // In the CPU's widest vectors: 25% faster than in the baseline's (a 910x1137 photo to
        // 512x640). The box average is not: it ran slower so.
        crate::fuse::vectorised(
            #[inline(always)]
            || bilinear(src, width, height),
        )
    }
}

/// Averages each `kx` x `ky` block into one pixel (the remainder columns and rows are dropped,
/// less than one block, so under one output pixel).
fn box_shrink(img: &RgbImage, kx: u32, ky: u32) -> RgbImage {
    let (w, h) = (img.width() / kx, img.height() / ky);
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    let inv_area = 1.0 / (kx * ky) as f32;
    let mut out = vec![0u8; w as usize * h as usize * 3];
    let mut acc = vec![0u32; w as usize * 3];
    for oy in 0..h as usize {
        acc.iter_mut().for_each(|a| *a = 0);
        for dy in 0..ky as usize {
            let row = &raw[(oy * ky as usize + dy) * stride..][..w as usize * kx as usize * 3];
            for (ox, block) in row.chunks_exact(kx as usize * 3).enumerate() {
                for px in block.chunks_exact(3) {
                    acc[ox * 3] += px[0] as u32;
                    acc[ox * 3 + 1] += px[1] as u32;
                    acc[ox * 3 + 2] += px[2] as u32;
                }
            }
        }
        let dst = &mut out[oy * w as usize * 3..][..w as usize * 3];
        // A multiply, not an integer division per byte (which does not vectorise).
        for (d, a) in dst.iter_mut().zip(&acc) {
            *d = (*a as f32 * inv_area + 0.5) as u8;
        }
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
}

/// The block sizes with which [`resize_rgb`] shrinks `from` to `to` by box averaging alone
/// (no bilinear pass after it), if it does.
pub fn exact_box_factors(from: (u32, u32), to: (u32, u32)) -> Option<(u32, u32)> {
    let (width, height) = (to.0.max(1), to.1.max(1));
    let kx = (from.0 / width).max(1);
    let ky = (from.1 / height).max(1);
    ((kx > 1 || ky > 1) && (from.0 / kx, from.1 / ky) == (width, height)).then_some((kx, ky))
}

/// `box_shrink` written straight into a planar BGR `f32` tensor (the detector's input), the
/// same values (rounded to bytes, as [`resize_rgb`] gives them): output row `y`, column `x`,
/// channel `c` (0 blue, 1 green, 2 red) at `c * plane + y * pitch + x`. For a camera frame
/// this is the whole of the detector's preparation, in one pass over the frame with the
/// vertical sums in a loop that vectorises (the two passes through an image took more time
/// than a sixth of the network in the browser).
pub fn box_shrink_bgr_planes(
    img: &RgbImage,
    (kx, ky): (u32, u32),
    out: &mut [f32],
    pitch: usize,
    plane: usize,
) {
    crate::fuse::vectorised(
        #[inline(always)]
        || box_shrink_into_planes(img, (kx, ky), out, pitch, plane),
    )
}

/// [`box_shrink_bgr_planes`]' loops, inlined into its vectorised code.
#[inline(always)]
fn box_shrink_into_planes(
    img: &RgbImage,
    (kx, ky): (u32, u32),
    out: &mut [f32],
    pitch: usize,
    plane: usize,
) {
    let (w, h) = ((img.width() / kx) as usize, (img.height() / ky) as usize);
    let (kx, ky) = (kx as usize, ky as usize);
    let stride = img.width() as usize * 3;
    let raw = img.as_raw();
    let inv_area = 1.0 / (kx * ky) as f32;
    let used = w * kx * 3;
    // Per input byte of the row band, the sum over the band's `ky` rows.
    let mut column = vec![0u32; used];
    for oy in 0..h {
        column.fill(0);
        for dy in 0..ky {
            let row = &raw[(oy * ky + dy) * stride..][..used];
            for (c, v) in column.iter_mut().zip(row) {
                *c += *v as u32;
            }
        }
        let base = oy * pitch;
        for (x, block) in column.chunks_exact(kx * 3).enumerate() {
            let mut sum = [0u32; 3];
            for px in block.chunks_exact(3) {
                sum[0] += px[0];
                sum[1] += px[1];
                sum[2] += px[2];
            }
            // As `box_shrink` rounds, then as a byte becomes a float.
            let byte = |a: u32| ((a as f32 * inv_area + 0.5) as u8) as f32;
            out[base + x] = byte(sum[2]);
            out[plane + base + x] = byte(sum[1]);
            out[2 * plane + base + x] = byte(sum[0]);
        }
    }
}

/// Bilinear interpolation with pixel centres aligned (as OpenCV's `INTER_LINEAR`), done in two
/// passes per output row: the two source rows it reads are blended in one loop that the
/// compiler vectorises, then that row is resampled horizontally (the one pass that gathers).
/// Blending first gathers once per output pixel instead of twice (the horizontal pass first
/// ran on every source row an output row needed: two per row when shrinking), and takes a
/// 910x1137 photo to the detector's 512x640 in about half the time. Inlined into
/// [`resize_rgb`]'s vectorised code.
#[inline(always)]
fn bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let (ow, oh) = (width as usize, height as usize);
    let raw = img.as_raw();
    let sx = sw as f32 / width as f32;
    let sy = sh as f32 / height as f32;
    // Per output column: the float offsets of its left and right source pixels and the
    // weight of the right one, computed once.
    let cols: Vec<(usize, usize, f32)> = (0..ow)
        .map(|x| {
            let f = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = f.floor() as usize;
            (x0 * 3, (x0 + 1).min(sw - 1) * 3, f - x0 as f32)
        })
        .collect();
    let mut blended = vec![0f32; sw * 3];
    let mut out = vec![0u8; ow * oh * 3];
    for (y, dst) in out.chunks_exact_mut(ow * 3).enumerate() {
        let f = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
        let y0 = f.floor() as usize;
        let y1 = (y0 + 1).min(sh - 1);
        let wy = f - y0 as f32;
        let top = &raw[y0 * sw * 3..][..sw * 3];
        let bottom = &raw[y1 * sw * 3..][..sw * 3];
        for ((v, t), b) in blended.iter_mut().zip(top).zip(bottom) {
            let t = *t as f32;
            *v = t + (*b as f32 - t) * wy;
        }
        for (px, &(x0, x1, wx)) in dst.chunks_exact_mut(3).zip(&cols) {
            let (a, b) = (&blended[x0..x0 + 3], &blended[x1..x1 + 3]);
            for c in 0..3 {
                px[c] = (a[c] + (b[c] - a[c]) * wx + 0.5) as u8;
            }
        }
    }
    RgbImage::from_raw(width, height, out).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    #[test]
    fn sizes_and_flat_colour_are_kept() {
        let img = RgbImage::from_pixel(913, 1137, Rgb([10, 200, 77]));
        for (w, h) in [(320, 398), (640, 797), (100, 3), (1000, 1200)] {
            let out = resize_rgb(&img, w, h);
            assert_eq!(out.dimensions(), (w, h));
            assert!(out.pixels().all(|p| p.0 == [10, 200, 77]));
        }
    }

    /// The two-pass bilinear against the textbook formula, on a pseudo-random image, up and
    /// down: at most 1 apart (rounding).
    #[test]
    fn bilinear_matches_the_formula() {
        let img = crate::noise::Noise::new(3).image(37, 23);
        for (w, h) in [(20, 13), (50, 40), (37, 11)] {
            let out = bilinear(&img, w, h);
            let (sx, sy) = (37.0 / w as f32, 23.0 / h as f32);
            for (x, y, p) in out.enumerate_pixels() {
                let fx = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, 36.0);
                let fy = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, 22.0);
                let (x0, y0) = (fx.floor() as u32, fy.floor() as u32);
                let (x1, y1) = ((x0 + 1).min(36), (y0 + 1).min(22));
                let (wx, wy) = (fx - x0 as f32, fy - y0 as f32);
                for c in 0..3 {
                    let v = |x: u32, y: u32| img.get_pixel(x, y).0[c] as f32;
                    let top = v(x0, y0) * (1.0 - wx) + v(x1, y0) * wx;
                    let bottom = v(x0, y1) * (1.0 - wx) + v(x1, y1) * wx;
                    let want = top * (1.0 - wy) + bottom * wy;
                    assert!(
                        (p.0[c] as f32 - want).abs() <= 1.0,
                        "{x},{y}: {} vs {want}",
                        p.0[c]
                    );
                }
            }
        }
    }

    /// The planar path gives the bytes of `resize_rgb`, as floats, where it applies.
    #[test]
    fn box_shrink_into_planes_equals_the_image_path() {
        let img = crate::noise::Noise::new(5).image(643, 482);
        assert_eq!(exact_box_factors((643, 482), (321, 241)), Some((2, 2)));
        assert_eq!(exact_box_factors((643, 482), (160, 120)), Some((4, 4)));
        assert_eq!(exact_box_factors((643, 482), (214, 241)), Some((3, 2)));
        // Not box averaging alone: bilinear follows, or nothing to shrink.
        assert_eq!(exact_box_factors((643, 482), (300, 241)), None);
        assert_eq!(exact_box_factors((643, 482), (643, 482)), None);
        for to in [(321, 241), (160, 120), (214, 241)] {
            let factors = exact_box_factors((643, 482), to).expect("exact");
            let (w, h) = (to.0 as usize, to.1 as usize);
            let (pitch, plane) = (w + 3, (w + 3) * (h + 1));
            let mut planes = vec![-1f32; 3 * plane];
            box_shrink_bgr_planes(&img, factors, &mut planes, pitch, plane);
            let reference = resize_rgb(&img, to.0, to.1);
            for (x, y, p) in reference.enumerate_pixels() {
                let at = y as usize * pitch + x as usize;
                let got = [planes[2 * plane + at], planes[plane + at], planes[at]];
                assert_eq!(got, p.0.map(|v| v as f32), "{to:?} at {x},{y}");
            }
        }
    }

    #[test]
    fn box_average_by_hand() {
        // 4x2 image: columns 0,1 are 0 and 100, columns 2,3 are 200 and 50; halving gives the
        // block means 50 and 125.
        let img = RgbImage::from_fn(4, 2, |x, _| Rgb([[0, 100, 200, 50][x as usize]; 3]));
        let out = resize_rgb(&img, 2, 1);
        assert_eq!(out.get_pixel(0, 0).0, [50; 3]);
        assert_eq!(out.get_pixel(1, 0).0, [125; 3]);
    }
}
