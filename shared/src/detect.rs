//! Stage 2: find every face with YuNet (2023mar): score, box and five landmarks (right eye,
//! left eye, nose tip, right and left mouth corners, as seen in the image: the first eye is the
//! one on the image's left).
//!
//! The ONNX graph takes 1x3xHxW BGR floats in 0..255, H and W multiples of 32. The image is
//! scaled so its longer side is `max_side`, placed top-left and zero-padded to the next
//! multiple of 32 (what OpenCV's FaceDetectorYN does). Each distinct input size gets its own
//! optimised plan, built once and cached: a symbolic-size plan runs 10x slower in tract.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use image::RgbImage;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;

use crate::PipelineError;
use crate::geometry::{BBox, Point, nms};

/// One detected face, in the coordinates of the image given to [`Detector::detect`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// sqrt(class score × objectness), in 0..1.
    pub score: f32,
    pub bbox: BBox,
    /// Right eye, left eye, nose tip, right mouth corner, left mouth corner (subject's sides).
    pub landmarks: [Point; 5],
}

/// How to run the detector on one image.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectOptions {
    /// The longer image side is scaled to this many pixels before detection.
    pub max_side: u32,
    /// Faces scoring below this are dropped.
    pub score_threshold: f32,
    /// Overlapping detections above this IoU are merged (the lower score is dropped).
    pub nms_iou: f32,
    /// Re-detect each face on a crop around it where it is seen at up to 240 px, for precise
    /// landmarks ([`Detector::refine`]). For photos, where `max_side` shrinks faces.
    #[serde(default)]
    pub refine_landmarks: bool,
}

impl DetectOptions {
    /// For photos: 640 px, threshold 0.8. On the 22 faces of the face-api demo photos this finds
    /// all of them with no false one (0.6 adds a false face at this size).
    ///
    /// Landmarks are refined: a 1920x1280 photo scaled to 640 shows a 215 px face at 72 px, and
    /// the landmarks found at that size moved its embedding to cosine 0.53 with the same face
    /// cropped from the photo at full size; refined, 0.9 and more.
    pub const PHOTO: DetectOptions = DetectOptions {
        max_side: 640,
        score_threshold: 0.8,
        nms_iou: 0.3,
        refine_landmarks: true,
    };
    /// For live video: 320 px (4x fewer pixels than 640), threshold 0.6, because true faces
    /// score lower at the smaller size. Costs in recall are measured in BENCHMARKS.md.
    /// Landmarks are not refined here: refining every frame cut the browser's live view from 30
    /// to 19-20 FPS. The browser refines only the faces it embeds, in its embedding worker
    /// ([`Detector::refine`] on the drawn frame), which lifted the e2e fixture's live similarity
    /// from 0.70 to 0.97.
    pub const VIDEO: DetectOptions = DetectOptions {
        max_side: 320,
        score_threshold: 0.6,
        nms_iou: 0.3,
        refine_landmarks: false,
    };
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self::PHOTO
    }
}

/// The refinement crop's side ([`Detector::refine`]): a face spans half of it, up to 240 px
/// (320 left a tilted face's landmarks too noisy: it matched its own mirror image at 0.54).
pub const REFINE_SIDE: u32 = 480;

type Plan = Arc<TypedRunnableModel>;

/// The YuNet detector: the parsed graph plus one optimised plan per input size.
pub struct Detector {
    model: InferenceModel,
    plans: Mutex<HashMap<(usize, usize), Plan>>,
}

const STRIDES: [usize; 3] = [8, 16, 32];

impl Detector {
    /// Parses the ONNX bytes (once). Plans are optimised lazily per input size.
    pub fn new(onnx: &[u8]) -> Result<Self, PipelineError> {
        let model = crate::fuse::load_onnx(onnx)
            .map_err(|e| PipelineError::Model(format!("loading detector: {e}")))?;
        Ok(Self {
            model,
            plans: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the optimised plan for an input of `width` x `height` (multiples of 32).
    fn plan(&self, width: usize, height: usize) -> Result<Plan, PipelineError> {
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = plans.get(&(width, height)) {
            return Ok(p.clone());
        }
        let plan =
            crate::fuse::optimise(self.model.clone(), [1, 3, height, width]).map_err(|e| {
                PipelineError::Model(format!("optimising detector for {width}x{height}: {e}"))
            })?;
        plans.insert((width, height), plan.clone());
        Ok(plan)
    }

    /// Builds the plan for the input size that an image of `width` x `height` will use, so that
    /// the first real frame does not pay for optimisation.
    pub fn warm_up(
        &self,
        width: u32,
        height: u32,
        opts: &DetectOptions,
    ) -> Result<(), PipelineError> {
        let (_, w, h) = input_size(width, height, opts.max_side);
        self.plan(w, h).map(|_| ())
    }

    /// Detects faces in an RGB image. Results are sorted by score, best first.
    pub fn detect(
        &self,
        img: &RgbImage,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, PipelineError> {
        let found = self.detect_once(img, opts)?;
        if !opts.refine_landmarks {
            return Ok(found);
        }
        let (scale, _, _) = input_size(img.width(), img.height(), opts.max_side);
        found
            .into_iter()
            .map(|d| self.refine(img, d, scale))
            .collect()
    }

    /// Landmarks as precise as the image allows. The first pass saw the face at `scale` times
    /// its size (a large photo scaled to `max_side`); when a square crop of twice the face's
    /// size, scaled to at most [`REFINE_SIDE`] px and never enlarged, shows the face at least
    /// 1.25x larger, the detector runs again on that crop and the face found at its centre gives
    /// the box and landmarks. The crop's size is fixed, so one optimised plan serves every face.
    /// The detection comes back unchanged when there is nothing to gain or the second pass
    /// does not find the face.
    pub fn refine(
        &self,
        img: &RgbImage,
        det: Detection,
        scale: f32,
    ) -> Result<Detection, PipelineError> {
        let (iw, ih) = img.dimensions();
        let side = 2.0 * det.bbox.width.max(det.bbox.height);
        let f = (REFINE_SIDE as f32 / side).min(1.0);
        if !(side > 0.0 && f >= 1.25 * scale) {
            return Ok(det);
        }
        let (cx, cy) = (
            det.bbox.x + det.bbox.width / 2.0,
            det.bbox.y + det.bbox.height / 2.0,
        );
        let (x0, y0) = (cx - side / 2.0, cy - side / 2.0);
        // The part of the square inside the image, in whole pixels.
        let ix0 = x0.floor().max(0.0) as u32;
        let iy0 = y0.floor().max(0.0) as u32;
        let ix1 = ((x0 + side).ceil().max(0.0) as u32).min(iw);
        let iy1 = ((y0 + side).ceil().max(0.0) as u32).min(ih);
        if ix1 <= ix0 + 1 || iy1 <= iy0 + 1 {
            return Ok(det);
        }
        let (cw, ch) = (ix1 - ix0, iy1 - iy0);
        let rw = ((cw as f32 * f).round() as u32).max(1);
        let rh = ((ch as f32 * f).round() as u32).max(1);
        let region = image::imageops::crop_imm(img, ix0, iy0, cw, ch).to_image();
        let region = if (rw, rh) == (cw, ch) {
            region
        } else {
            crate::resize::resize_rgb(&region, rw, rh)
        };
        // Black square canvas (the detector's padding is black too), the region placed where it
        // lies in the square.
        let out = ((side * f).round() as u32).max(rw).max(rh);
        let ox = (((ix0 as f32 - x0) * f).round().max(0.0) as u32).min(out - rw);
        let oy = (((iy0 as f32 - y0) * f).round().max(0.0) as u32).min(out - rh);
        let mut canvas = RgbImage::new(out, out);
        image::imageops::replace(&mut canvas, &region, ox as i64, oy as i64);
        let second = self.detect_once(
            &canvas,
            &DetectOptions {
                max_side: REFINE_SIDE,
                score_threshold: 0.5,
                nms_iou: 0.3,
                refine_landmarks: false,
            },
        )?;
        // Canvas pixel centres back to image coordinates.
        let (sx, sy) = (cw as f32 / rw as f32, ch as f32 / rh as f32);
        let back = |p: Point| {
            Point::new(
                ix0 as f32 + (p.x - ox as f32 + 0.5) * sx - 0.5,
                iy0 as f32 + (p.y - oy as f32 + 0.5) * sy - 0.5,
            )
        };
        let centre = out as f32 / 2.0;
        let best = second
            .into_iter()
            .map(|d| {
                let tl = back(Point::new(d.bbox.x, d.bbox.y));
                let br = back(Point::new(
                    d.bbox.x + d.bbox.width,
                    d.bbox.y + d.bbox.height,
                ));
                let bbox = BBox::new(tl.x, tl.y, br.x - tl.x, br.y - tl.y);
                let off = (d.bbox.x + d.bbox.width / 2.0 - centre)
                    .hypot(d.bbox.y + d.bbox.height / 2.0 - centre);
                (off, bbox, d.landmarks.map(back))
            })
            .filter(|(_, bbox, _)| bbox.iou(&det.bbox) >= 0.4)
            .min_by(|a, b| a.0.total_cmp(&b.0));
        Ok(match best {
            Some((_, bbox, landmarks)) => Detection {
                score: det.score,
                bbox,
                landmarks,
            },
            None => det,
        })
    }

    /// One pass of the detector over the whole image.
    fn detect_once(
        &self,
        img: &RgbImage,
        opts: &DetectOptions,
    ) -> Result<Vec<Detection>, PipelineError> {
        let (iw, ih) = img.dimensions();
        if iw == 0 || ih == 0 {
            return Ok(Vec::new());
        }
        let (scale, w, h) = input_size(iw, ih, opts.max_side);
        let input = to_input_tensor(img, scale, w, h)?;
        let plan = self.plan(w, h)?;
        let outputs = crate::fuse::run(&plan, input)
            .map_err(|e| PipelineError::Inference(format!("detector: {e}")))?;
        let mut views = Vec::with_capacity(12);
        for o in outputs.iter() {
            views.push(
                o.try_as_plain_ram()
                    .and_then(|v| v.as_slice::<f32>())
                    .map_err(|e| PipelineError::Inference(e.to_string()))?,
            );
        }
        if views.len() != 12 {
            return Err(PipelineError::Inference(format!(
                "detector gave {} outputs, expected 12",
                views.len()
            )));
        }
        let raw = decode_outputs(&views, w, h, opts.score_threshold)?;
        let boxes: Vec<BBox> = raw.iter().map(|d| d.bbox).collect();
        let scores: Vec<f32> = raw.iter().map(|d| d.score).collect();
        let keep = nms(&boxes, &scores, opts.nms_iou);
        let inv = 1.0 / scale;
        Ok(keep
            .into_iter()
            .map(|i| {
                let d = &raw[i];
                Detection {
                    score: d.score,
                    bbox: BBox::new(
                        d.bbox.x * inv,
                        d.bbox.y * inv,
                        d.bbox.width * inv,
                        d.bbox.height * inv,
                    ),
                    landmarks: d.landmarks.map(|p| Point::new(p.x * inv, p.y * inv)),
                }
            })
            .collect())
    }
}

/// Scale factor and padded network input size for an image, longer side scaled to `max_side`.
pub fn input_size(width: u32, height: u32, max_side: u32) -> (f32, usize, usize) {
    let max_side = max_side.max(32);
    let scale = max_side as f32 / width.max(height) as f32;
    let sw = ((width as f32 * scale).round() as usize).max(1);
    let sh = ((height as f32 * scale).round() as usize).max(1);
    // Portraits are not padded to a square: tall inputs ran much slower than wide ones in
    // tract's own depthwise convolution, but not with the fused one (BENCHMARKS.md).
    (scale, sw.div_ceil(32) * 32, sh.div_ceil(32) * 32)
}

/// Resizes (bilinear) and packs the image as 1x3xHxW BGR, 0..255, zero padding right and bottom.
fn to_input_tensor(
    img: &RgbImage,
    scale: f32,
    w: usize,
    h: usize,
) -> Result<Tensor, PipelineError> {
    let (iw, ih) = img.dimensions();
    let sw = ((iw as f32 * scale).round() as u32).clamp(1, w as u32);
    let sh = ((ih as f32 * scale).round() as u32).clamp(1, h as u32);
    let plane = w * h;
    // Filled in place (tract would copy a separate buffer). Not zeroed first: a 640x480 input
    // has no padding, and zeroing its 3.7 MB cost as much as packing it.
    let inference = |e: TractError| PipelineError::Inference(format!("detector input: {e}"));
    // SAFETY: f32 has no invalid bit patterns, and every element is written before the tensor
    // is read: the padding just below, the image's pixels after.
    let mut tensor = unsafe { Tensor::uninitialized::<f32>(&[1, 3, h, w]) }.map_err(inference)?;
    let mut view = tensor.try_as_plain_ram_mut().map_err(inference)?;
    let data = view.as_slice_mut::<f32>().map_err(inference)?;
    let (cols, rows) = (sw as usize, sh as usize);
    for channel in data.chunks_exact_mut(plane) {
        for row in channel[..rows * w].chunks_exact_mut(w) {
            row[cols..].fill(0.0);
        }
        channel[rows * w..].fill(0.0);
    }
    // A camera frame halved (or shrunk by another whole factor): straight into the tensor.
    if let Some(factors) = crate::resize::exact_box_factors((iw, ih), (sw, sh)) {
        crate::resize::box_shrink_bgr_planes(img, factors, data, w, plane);
        return Ok(tensor);
    }
    let resized;
    let src = if (sw, sh) == (iw, ih) {
        img
    } else {
        resized = crate::resize::resize_rgb(img, sw, sh);
        &resized
    };
    // Row by row, each plane's row a slice of its own (no index to check per value), in the
    // CPU's widest vectors.
    let (b, rest) = data.split_at_mut(plane);
    let (g, r) = rest.split_at_mut(plane);
    let rows = src.as_raw().chunks_exact(cols * 3);
    let planes = b
        .chunks_exact_mut(w)
        .zip(g.chunks_exact_mut(w))
        .zip(r.chunks_exact_mut(w));
    crate::fuse::vectorised(
        #[inline(always)]
        || {
            for (row, ((b, g), r)) in rows.zip(planes) {
                let pixels = row
                    .chunks_exact(3)
                    .zip(&mut b[..cols])
                    .zip(&mut g[..cols])
                    .zip(&mut r[..cols]);
                for (((px, b), g), r) in pixels {
                    *b = px[2] as f32;
                    *g = px[1] as f32;
                    *r = px[0] as f32;
                }
            }
        },
    );
    Ok(tensor)
}

/// Turns the 12 raw outputs (cls, obj, bbox, kps at strides 8, 16, 32) into candidate
/// detections in network input coordinates, before NMS.
///
/// Per anchor at column c, row r of stride s: score = sqrt(clamp(cls)·clamp(obj)),
/// centre = ((c + dx)·s, (r + dy)·s), size = (exp(dw)·s, exp(dh)·s), landmark k =
/// ((c + kx)·s, (r + ky)·s).
pub fn decode_outputs(
    outs: &[&[f32]],
    w: usize,
    h: usize,
    threshold: f32,
) -> Result<Vec<Detection>, PipelineError> {
    let mut dets = Vec::new();
    for (si, &s) in STRIDES.iter().enumerate() {
        let (cols, rows) = (w / s, h / s);
        let n = cols * rows;
        let (cls, obj, bbox, kps) = (outs[si], outs[3 + si], outs[6 + si], outs[9 + si]);
        if cls.len() < n || obj.len() < n || bbox.len() < 4 * n || kps.len() < 10 * n {
            return Err(PipelineError::Inference(format!(
                "detector output too short at stride {s}"
            )));
        }
        let sf = s as f32;
        for idx in 0..n {
            let score = (cls[idx].clamp(0.0, 1.0) * obj[idx].clamp(0.0, 1.0)).sqrt();
            if score < threshold {
                continue;
            }
            let (r, c) = ((idx / cols) as f32, (idx % cols) as f32);
            let b = &bbox[idx * 4..idx * 4 + 4];
            let cx = (c + b[0]) * sf;
            let cy = (r + b[1]) * sf;
            let bw = b[2].exp() * sf;
            let bh = b[3].exp() * sf;
            let k = &kps[idx * 10..idx * 10 + 10];
            let landmarks =
                std::array::from_fn(|j| Point::new((c + k[2 * j]) * sf, (r + k[2 * j + 1]) * sf));
            dets.push(Detection {
                score,
                bbox: BBox::new(cx - bw / 2.0, cy - bh / 2.0, bw, bh),
                landmarks,
            });
        }
    }
    Ok(dets)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor holds the resized image as BGR planes and zeros everywhere else (it is
    /// allocated without zeroing), on both paths: bilinear, and a whole-factor shrink.
    #[test]
    fn the_input_tensor_is_the_image_and_zeros() {
        let mut noise = crate::noise::Noise::new(9);
        for (iw, ih, max_side) in [(100u32, 60u32, 64u32), (64, 40, 32), (40, 64, 32)] {
            // No pixel is zero, so that the padding's zeros cannot be mistaken for pixels.
            let mut img = noise.image(iw, ih);
            img.pixels_mut().for_each(|p| p.0 = p.0.map(|v| v | 1));
            let (scale, w, h) = input_size(iw, ih, max_side);
            let tensor = to_input_tensor(&img, scale, w, h).expect("tensor");
            let view = tensor.try_as_plain_ram().expect("plain");
            let data = view.as_slice::<f32>().expect("f32");
            let (sw, sh) = (
                (iw as f32 * scale).round() as u32,
                (ih as f32 * scale).round() as u32,
            );
            let resized = crate::resize::resize_rgb(&img, sw, sh);
            for c in 0..3 {
                for y in 0..h {
                    for x in 0..w {
                        let got = data[(c * h + y) * w + x];
                        let want = if x < sw as usize && y < sh as usize {
                            resized.get_pixel(x as u32, y as u32).0[2 - c] as f32
                        } else {
                            0.0
                        };
                        assert_eq!(got, want, "{iw}x{ih}: channel {c} at {x},{y}");
                    }
                }
            }
        }
    }

    #[test]
    fn input_size_keeps_aspect_and_pads_to_32() {
        assert_eq!(input_size(640, 480, 320), (0.5, 320, 256));
        assert_eq!(input_size(640, 480, 640), (1.0, 640, 480));
        let (s, w, h) = input_size(1920, 1080, 640);
        assert!((s - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!((w, h), (640, 384));
        // Portrait: 512 x 640, as onnxruntime's reference runs it.
        assert_eq!(input_size(910, 1137, 640), (640.0 / 1137.0, 512, 640));
    }

    #[test]
    fn box_decoding_by_hand() {
        // 64x32 input: stride 8 has 8x4 anchors, stride 16 4x2, stride 32 2x1.
        let (w, h) = (64, 32);
        let mut bufs: Vec<Vec<f32>> = Vec::new();
        for per in [1, 1, 4, 10] {
            for s in STRIDES {
                bufs.push(vec![0.0; (w / s) * (h / s) * per]);
            }
        }
        // One anchor at stride 16, row 1, column 2 (index 1*4 + 2 = 6).
        let idx = 6;
        bufs[1][idx] = 0.81; // cls_16
        bufs[4][idx] = 1.0; // obj_16
        bufs[7][idx * 4..idx * 4 + 4].copy_from_slice(&[0.5, 0.25, 0.0, 2f32.ln()]);
        bufs[10][idx * 10..idx * 10 + 2].copy_from_slice(&[0.1, -0.2]);
        let views: Vec<&[f32]> = bufs.iter().map(|b| b.as_slice()).collect();
        let d = decode_outputs(&views, w, h, 0.5).unwrap();
        assert_eq!(d.len(), 1);
        let d = &d[0];
        assert!((d.score - 0.9).abs() < 1e-6);
        // centre ((2 + 0.5)·16, (1 + 0.25)·16) = (40, 20); size (16, 32)
        assert_eq!(d.bbox, BBox::new(32.0, 4.0, 16.0, 32.0));
        assert!((d.landmarks[0].x - 33.6).abs() < 1e-4 && (d.landmarks[0].y - 12.8).abs() < 1e-4);
        assert!(decode_outputs(&views, w, h, 0.95).unwrap().is_empty());
    }
}
