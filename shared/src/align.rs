//! Stage 4: warp each face to the canonical 112x112 crop with a 5-point similarity transform
//! onto the standard ArcFace template. Aligned crops make embeddings comparable across poses
//! and framings (box crops lose accuracy: see the evaluation in BENCHMARKS.md).

use image::{Rgb, RgbImage};

use crate::geometry::{Point, Similarity};

/// Side of the aligned crop in pixels.
pub const ALIGNED_SIZE: u32 = 112;

/// Where the five landmarks sit in a 112x112 ArcFace crop (insightface's `arcface_dst`):
/// right eye, left eye, nose tip, right and left mouth corners (image left first).
pub const ARCFACE_TEMPLATE: [Point; 5] = [
    Point::new(38.2946, 51.6963),
    Point::new(73.5318, 51.5014),
    Point::new(56.0252, 71.7366),
    Point::new(41.5493, 92.3655),
    Point::new(70.7299, 92.2041),
];

/// The transform from image coordinates to the aligned crop, or `None` for degenerate
/// landmarks (all in one place).
pub fn alignment_transform(landmarks: &[Point; 5]) -> Option<Similarity> {
    Similarity::estimate(landmarks, &ARCFACE_TEMPLATE)
}

/// Warps the face to a 112x112 crop with bilinear sampling; pixels outside the image are black
/// (as OpenCV's `warpAffine` with a constant border, which the reference implementation uses).
pub fn align(img: &RgbImage, landmarks: &[Point; 5]) -> Option<RgbImage> {
    let t = alignment_transform(landmarks)?;
    let inv = t.inverse()?;
    Some(warp(img, &inv, ALIGNED_SIZE))
}

/// Samples `size`x`size` output pixels; `inv` maps output coordinates to source coordinates.
pub fn warp(img: &RgbImage, inv: &Similarity, size: u32) -> RgbImage {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let raw = img.as_raw();
    let stride = img.width() as usize * 3;
    let mut out = RgbImage::new(size, size);
    let px = |x: i64, y: i64, c: usize| -> f32 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            raw[y as usize * stride + x as usize * 3 + c] as f32
        }
    };
    for oy in 0..size {
        for ox in 0..size {
            let (fx, fy) = (ox as f64, oy as f64);
            let sx = inv.a * fx - inv.b * fy + inv.tx;
            let sy = inv.b * fx + inv.a * fy + inv.ty;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (ax, ay) = ((sx - x0) as f32, (sy - y0) as f32);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let mut rgb = [0u8; 3];
            for (c, v) in rgb.iter_mut().enumerate() {
                let top = px(x0, y0, c) * (1.0 - ax) + px(x0 + 1, y0, c) * ax;
                let bot = px(x0, y0 + 1, c) * (1.0 - ax) + px(x0 + 1, y0 + 1, c) * ax;
                *v = (top * (1.0 - ay) + bot * ay).round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(ox, oy, Rgb(rgb));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_landmarks_map_to_themselves() {
        let t = alignment_transform(&ARCFACE_TEMPLATE).unwrap();
        assert!(
            (t.a - 1.0).abs() < 1e-9 && t.b.abs() < 1e-9 && t.tx.abs() < 1e-6 && t.ty.abs() < 1e-6
        );
    }

    #[test]
    fn a_scaled_shifted_face_is_brought_back() {
        // Landmarks at twice the template size, shifted by (100, 50): the warp must sample
        // the source at exactly that place.
        let lm = ARCFACE_TEMPLATE.map(|p| Point::new(2.0 * p.x + 100.0, 2.0 * p.y + 50.0));
        let t = alignment_transform(&lm).unwrap();
        assert!((t.a - 0.5).abs() < 1e-6 && t.b.abs() < 1e-6, "{t:?}");
        assert!(
            (t.tx + 50.0).abs() < 1e-4 && (t.ty + 25.0).abs() < 1e-4,
            "{t:?}"
        );
        // A source with a pixel value that encodes its own position (x, y < 256).
        let src = RgbImage::from_fn(400, 300, |x, y| Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
        let out = align(&src, &lm).unwrap();
        // Output (10, 20) comes from source (2*10 + 100, 2*20 + 50) = (120, 90).
        assert_eq!(out.get_pixel(10, 20).0, [120, 90, 7]);
    }

    #[test]
    fn outside_is_black_and_degenerate_is_none() {
        let src = RgbImage::from_pixel(10, 10, Rgb([200, 200, 200]));
        let lm = ARCFACE_TEMPLATE.map(|p| Point::new(p.x + 1000.0, p.y));
        assert_eq!(align(&src, &lm).unwrap().get_pixel(50, 50).0, [0, 0, 0]);
        assert!(align(&src, &[Point::new(3.0, 3.0); 5]).is_none());
    }
}
