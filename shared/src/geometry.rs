//! Plain 2-D geometry used by the pipeline: boxes, points, IoU, non-maximum suppression and the
//! least-squares similarity transform (Umeyama) used for alignment.

use serde::{Deserialize, Serialize};

/// A point in image pixel coordinates (x right, y down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

impl Point {
    pub const fn new(x: f32, y: f32) -> Self {
        Self { x, y }
    }
}

/// An axis-aligned box: top-left corner, width and height, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

impl BBox {
    pub const fn new(x: f32, y: f32, width: f32, height: f32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let x1 = self.x.max(other.x);
        let y1 = self.y.max(other.y);
        let x2 = (self.x + self.width).min(other.x + other.width);
        let y2 = (self.y + self.height).min(other.y + other.height);
        let inter = (x2 - x1).max(0.0) * (y2 - y1).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// The box clipped to an image of the given size.
    pub fn clip(&self, width: f32, height: f32) -> BBox {
        let x1 = self.x.clamp(0.0, width);
        let y1 = self.y.clamp(0.0, height);
        let x2 = (self.x + self.width).clamp(0.0, width);
        let y2 = (self.y + self.height).clamp(0.0, height);
        BBox::new(x1, y1, x2 - x1, y2 - y1)
    }
}

/// Greedy non-maximum suppression: indices of the kept items, best score first. An item is
/// dropped when it overlaps an already kept one by more than `iou_threshold`.
pub fn nms(boxes: &[BBox], scores: &[f32], iou_threshold: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len().min(scores.len())).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut keep: Vec<usize> = Vec::new();
    for i in order {
        if keep
            .iter()
            .all(|&k| boxes[k].iou(&boxes[i]) <= iou_threshold)
        {
            keep.push(i);
        }
    }
    keep
}

/// A 2-D similarity transform (uniform scale, rotation, translation):
/// `x' = a*x - b*y + tx`, `y' = b*x + a*y + ty`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f64,
    pub b: f64,
    pub tx: f64,
    pub ty: f64,
}

impl Similarity {
    pub fn apply(&self, p: Point) -> Point {
        let (x, y) = (p.x as f64, p.y as f64);
        Point::new(
            (self.a * x - self.b * y + self.tx) as f32,
            (self.b * x + self.a * y + self.ty) as f32,
        )
    }

    /// Scale factor of the transform.
    pub fn scale(&self) -> f64 {
        self.a.hypot(self.b)
    }

    /// The inverse transform, or `None` if the transform is degenerate (zero scale).
    pub fn inverse(&self) -> Option<Similarity> {
        let d = self.a * self.a + self.b * self.b;
        if d < 1e-12 || !d.is_finite() {
            return None;
        }
        let (ia, ib) = (self.a / d, -self.b / d);
        Some(Similarity {
            a: ia,
            b: ib,
            tx: -(ia * self.tx - ib * self.ty),
            ty: -(ib * self.tx + ia * self.ty),
        })
    }

    /// Least-squares similarity mapping `src` onto `dst` (Umeyama 1991, without reflection).
    /// Returns `None` if fewer than two points are given or they all coincide.
    pub fn estimate(src: &[Point], dst: &[Point]) -> Option<Similarity> {
        let n = src.len().min(dst.len());
        if n < 2 {
            return None;
        }
        let nf = n as f64;
        let (mut sx, mut sy, mut dx, mut dy) = (0.0, 0.0, 0.0, 0.0);
        for i in 0..n {
            sx += src[i].x as f64;
            sy += src[i].y as f64;
            dx += dst[i].x as f64;
            dy += dst[i].y as f64;
        }
        let (sx, sy, dx, dy) = (sx / nf, sy / nf, dx / nf, dy / nf);
        // For the 2-D similarity case the closed form reduces to two sums over the centred
        // points: a = sum(s·d) / |s|², b = sum(s×d) / |s|² (s × d being the 2-D cross product).
        let (mut dot, mut cross, mut norm) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let (px, py) = (src[i].x as f64 - sx, src[i].y as f64 - sy);
            let (qx, qy) = (dst[i].x as f64 - dx, dst[i].y as f64 - dy);
            dot += px * qx + py * qy;
            cross += px * qy - py * qx;
            norm += px * px + py * py;
        }
        if norm < 1e-12 || !norm.is_finite() {
            return None;
        }
        let a = dot / norm;
        let b = cross / norm;
        Some(Similarity {
            a,
            b,
            tx: dx - (a * sx - b * sy),
            ty: dy - (b * sx + a * sy),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_by_hand() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        let b = BBox::new(5.0, 0.0, 10.0, 10.0);
        // intersection 5x10 = 50, union 100 + 100 - 50 = 150
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 5.0, 5.0)), 0.0);
        assert_eq!(a.iou(&a), 1.0);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_and_all_disjoint() {
        let boxes = [
            BBox::new(0.0, 0.0, 10.0, 10.0),
            BBox::new(1.0, 1.0, 10.0, 10.0), // IoU with #0 = 81/119 = 0.68
            BBox::new(50.0, 50.0, 10.0, 10.0),
            BBox::new(5.0, 0.0, 10.0, 10.0), // IoU with #0 = 0.333
        ];
        let scores = [0.8, 0.9, 0.7, 0.6];
        assert_eq!(nms(&boxes, &scores, 0.3), vec![1, 2]);
        assert_eq!(nms(&boxes, &scores, 0.5), vec![1, 2, 3]);
    }

    #[test]
    fn similarity_recovers_known_transform() {
        // scale 2, rotation 90° (a=0, b=2), translation (3, 4): (x, y) -> (-2y + 3, 2x + 4)
        let t = Similarity {
            a: 0.0,
            b: 2.0,
            tx: 3.0,
            ty: 4.0,
        };
        let src = [
            Point::new(0.0, 0.0),
            Point::new(1.0, 0.0),
            Point::new(0.0, 1.0),
            Point::new(2.0, 3.0),
        ];
        assert_eq!(t.apply(Point::new(1.0, 0.0)), Point::new(3.0, 6.0));
        assert_eq!(t.apply(Point::new(0.0, 1.0)), Point::new(1.0, 4.0));
        let dst: Vec<Point> = src.iter().map(|&p| t.apply(p)).collect();
        let e = Similarity::estimate(&src, &dst).unwrap();
        assert!((e.a - 0.0).abs() < 1e-9 && (e.b - 2.0).abs() < 1e-9);
        assert!((e.tx - 3.0).abs() < 1e-9 && (e.ty - 4.0).abs() < 1e-9);
        let inv = e.inverse().unwrap();
        let back = inv.apply(dst[3]);
        assert!((back.x - 2.0).abs() < 1e-5 && (back.y - 3.0).abs() < 1e-5);
    }

    #[test]
    fn similarity_least_squares_by_hand() {
        // Two points (0,0),(2,0) onto (0,0),(4,0) plus a noisy pair symmetric about the centre:
        // the best fit is a pure scale of 2 around the centroid.
        let src = [Point::new(0.0, 0.0), Point::new(2.0, 0.0)];
        let dst = [Point::new(1.0, 1.0), Point::new(5.0, 1.0)];
        let e = Similarity::estimate(&src, &dst).unwrap();
        assert!((e.a - 2.0).abs() < 1e-9 && e.b.abs() < 1e-9);
        assert!((e.tx - 1.0).abs() < 1e-9 && (e.ty - 1.0).abs() < 1e-9);
        assert!(Similarity::estimate(&[Point::new(1.0, 1.0); 3], &dst).is_none());
    }
}
