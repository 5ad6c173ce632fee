//! The degradation tool: a photo as a poor camera would take it, for measuring recognition on
//! small, compressed faces (`visage degrade`, and `visage eval --degrade-face-px` on pairs).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use image::RgbImage;
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use visage_shared::{AnalyzeOptions, AnalyzedFace, Embedding, Pipeline};

use super::super::{DetectArgs, load};

#[derive(Args, Debug)]
pub struct DegradeCmd {
    /// A photo, or a folder of photos (sub-folders kept).
    pub input: PathBuf,
    /// Where the degraded JPEGs go (a file for a photo, a folder for a folder).
    pub output: PathBuf,
    /// Width the main face is scaled to, in pixels (photos whose face is already smaller are
    /// only re-compressed).
    #[arg(long, default_value_t = 32)]
    pub face_px: u32,
    /// JPEG quality, 1..100.
    #[arg(long, default_value_t = 30)]
    pub quality: u8,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Scales `img` so its main face is `face_px` wide (never up), places it in a frame of at
/// least 640x480, then round-trips it through JPEG at `quality`. Errors when the photo has no
/// face to measure.
pub fn degrade(
    p: &Pipeline,
    img: &RgbImage,
    d: &DetectArgs,
    face_px: u32,
    quality: u8,
) -> Result<Degraded> {
    let face = p
        .detect(img, &d.options())?
        .into_iter()
        .max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()))
        .context("no face to measure")?;
    degrade_face(img, &face.bbox, face_px, quality)
}

/// A photo degraded around one of its faces, and where that face went.
pub struct Degraded {
    /// The JPEG file, as written by `visage degrade`.
    pub jpeg: Vec<u8>,
    /// That file decoded.
    pub image: RgbImage,
    /// The face's centre in `image`.
    pub centre: (f32, f32),
}

/// [`degrade`] for the face at `face` (a box in `img`).
pub fn degrade_face(
    img: &RgbImage,
    face: &visage_shared::geometry::BBox,
    face_px: u32,
    quality: u8,
) -> Result<Degraded> {
    let scale = (face_px as f32 / face.width).min(1.0);
    let (w, h) = (
        ((img.width() as f32 * scale).round() as u32).max(1),
        ((img.height() as f32 * scale).round() as u32).max(1),
    );
    // Triangle widens its support when shrinking: an area-like filter, as a camera's scaler.
    let small = image::imageops::resize(img, w, h, FilterType::Triangle);
    // A tight portrait shrunk this far is a thumbnail, which the detector would scale back up:
    // put it in the middle of a VGA frame instead, as a far-away face in a camera's picture.
    let (fw, fh) = (w.max(FRAME.0), h.max(FRAME.1));
    let (ox, oy) = ((fw - w) / 2, (fh - h) / 2);
    let mut frame = RgbImage::from_pixel(fw, fh, image::Rgb([118, 118, 118]));
    image::imageops::replace(&mut frame, &small, ox.into(), oy.into());
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, quality.clamp(1, 100)).encode_image(&frame)?;
    Ok(Degraded {
        image: image::load_from_memory(&jpeg)?.to_rgb8(),
        jpeg,
        centre: (
            ox as f32 + (face.x + face.width / 2.0) * scale,
            oy as f32 + (face.y + face.height / 2.0) * scale,
        ),
    })
}

/// The face of `face` in `img` degraded to `(px, quality)`, found again in the degraded photo
/// (the detection nearest where it went, within half its new width); `None` when it is lost.
pub fn degraded_embedding(
    p: &Pipeline,
    img: &RgbImage,
    face: &AnalyzedFace,
    d: &DetectArgs,
    (px, quality): (u32, u8),
) -> Option<Embedding> {
    let small = degrade_face(img, &face.detection.bbox, px, quality).ok()?;
    let found = p
        .analyze(
            &small.image,
            &AnalyzeOptions {
                detect: d.options(),
            },
        )
        .ok()?;
    let dist = |f: &AnalyzedFace| {
        let b = f.detection.bbox;
        (b.x + b.width / 2.0 - small.centre.0).hypot(b.y + b.height / 2.0 - small.centre.1)
    };
    found
        .into_iter()
        .filter(|f| dist(f) < px as f32 / 2.0)
        .min_by(|x, y| dist(x).total_cmp(&dist(y)))
        .map(|f| f.embedding)
}

/// The smallest picture a degraded photo is placed in (a VGA camera frame).
const FRAME: (u32, u32) = (640, 480);

/// `visage degrade`: writes degraded copies of one photo or of a folder tree.
pub fn run(cmd: DegradeCmd) -> Result<()> {
    let p = Pipeline::load()?;
    let jobs: Vec<(PathBuf, PathBuf)> = if cmd.input.is_dir() {
        let mut v = Vec::new();
        collect(&cmd.input, &cmd.output, &mut v)?;
        v
    } else {
        vec![(cmd.input.clone(), cmd.output.clone())]
    };
    let (mut done, mut skipped) = (0, 0);
    for (src, dst) in jobs {
        match load(&src).and_then(|img| degrade(&p, &img, &cmd.detect, cmd.face_px, cmd.quality)) {
            Ok(out) => {
                if let Some(dir) = dst.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                // The degraded JPEG itself, not a second encoding of it.
                std::fs::write(&dst, &out.jpeg)
                    .with_context(|| format!("writing {}", dst.display()))?;
                done += 1;
            }
            Err(e) => {
                println!("skipped {}: {e:#}", src.display());
                skipped += 1;
            }
        }
    }
    println!(
        "degraded {done} photo(s) to a {} px face at JPEG quality {} ({skipped} skipped)",
        cmd.face_px, cmd.quality
    );
    if done == 0 {
        bail!("nothing degraded");
    }
    Ok(())
}

fn collect(src: &Path, dst: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(src)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        let name = e.file_name().unwrap_or_default();
        if e.is_dir() {
            collect(&e, &dst.join(name), out)?;
        } else {
            out.push((e.clone(), dst.join(name).with_extension("jpg")));
        }
    }
    Ok(())
}
