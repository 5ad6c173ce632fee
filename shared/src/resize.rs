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
        bilinear(src, width, height)
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

/// Bilinear interpolation with pixel centres aligned (as OpenCV's `INTER_LINEAR`).
fn bilinear(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let raw = img.as_raw();
    let sx = sw as f32 / width as f32;
    let sy = sh as f32 / height as f32;
    // Per output column: left source index and weight, computed once.
    let cols: Vec<(usize, usize, f32)> = (0..width as usize)
        .map(|x| {
            let f = ((x as f32 + 0.5) * sx - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = f.floor() as usize;
            (x0, (x0 + 1).min(sw - 1), f - x0 as f32)
        })
        .collect();
    let mut out = vec![0u8; width as usize * height as usize * 3];
    for y in 0..height as usize {
        let f = ((y as f32 + 0.5) * sy - 0.5).clamp(0.0, (sh - 1) as f32);
        let y0 = f.floor() as usize;
        let y1 = (y0 + 1).min(sh - 1);
        let wy = f - y0 as f32;
        let (r0, r1) = (&raw[y0 * sw * 3..][..sw * 3], &raw[y1 * sw * 3..][..sw * 3]);
        let dst = &mut out[y * width as usize * 3..][..width as usize * 3];
        for (x, &(x0, x1, wx)) in cols.iter().enumerate() {
            for c in 0..3 {
                let top = r0[x0 * 3 + c] as f32 * (1.0 - wx) + r0[x1 * 3 + c] as f32 * wx;
                let bot = r1[x0 * 3 + c] as f32 * (1.0 - wx) + r1[x1 * 3 + c] as f32 * wx;
                dst[x * 3 + c] = (top * (1.0 - wy) + bot * wy + 0.5) as u8;
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
