//! The pipeline subcommands of the `visage` binary: `detect`, `embed`, `compare`, `eval`,
//! `degrade`.
//! They run the very pipeline the server and the browser run, on files.

mod eval;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use image::{Rgb, RgbImage};
use serde_json::json;
use visage_shared::api::FaceReport;
use visage_shared::{
    AnalyzeOptions, AnalyzedFace, DecodeLimits, DetectOptions, Pipeline, QualityGate, model,
};

pub use eval::{DegradeCmd, EvalCmd, degrade, eval};

/// Detector settings shared by the subcommands.
#[derive(Args, Debug, Clone)]
pub struct DetectArgs {
    /// Longer image side fed to the detector (640 for photos, 320 for webcam frames).
    #[arg(long, default_value_t = DetectOptions::PHOTO.max_side)]
    pub max_side: u32,
    /// Detector score threshold (default: 0.8 at 480 px and above, 0.6 below).
    #[arg(long)]
    pub score_threshold: Option<f32>,
}

impl DetectArgs {
    pub fn options(&self) -> DetectOptions {
        let base = if self.max_side >= 480 {
            DetectOptions::PHOTO
        } else {
            DetectOptions::VIDEO
        };
        DetectOptions {
            max_side: self.max_side,
            score_threshold: self.score_threshold.unwrap_or(base.score_threshold),
            ..base
        }
    }
}

#[derive(Args, Debug)]
pub struct DetectCmd {
    pub image: PathBuf,
    /// Also write the image with boxes and landmarks drawn, as PNG.
    #[arg(long)]
    pub annotate: Option<PathBuf>,
    #[command(flatten)]
    pub detect: DetectArgs,
}

#[derive(Args, Debug)]
pub struct EmbedCmd {
    pub image: PathBuf,
    #[command(flatten)]
    pub detect: DetectArgs,
}

#[derive(Args, Debug)]
pub struct CompareCmd {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Match threshold (default: the model manifest's, its false-match rate <= 1e-3 point).
    #[arg(long, conflicts_with = "max_false_match_rate")]
    pub threshold: Option<f32>,
    /// Instead of `--threshold`: the highest false-match rate to accept, mapped through the
    /// calibration to the lowest threshold it vouches for (95% upper bound), as the service does.
    #[arg(long)]
    pub max_false_match_rate: Option<f64>,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// Prints JSON to stdout; a closed pipe (`visage detect x | head`) is not an error.
fn print_json(v: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let text = serde_json::to_string_pretty(v)?;
    match writeln!(std::io::stdout().lock(), "{text}") {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

fn load(path: &Path) -> Result<RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    visage_shared::decode::decode_image(&bytes, &DecodeLimits::default())
        .with_context(|| format!("decoding {}", path.display()))
}

fn analyze(p: &Pipeline, path: &Path, d: &DetectArgs) -> Result<(RgbImage, Vec<AnalyzedFace>)> {
    let img = load(path)?;
    let faces = p.analyze(
        &img,
        &AnalyzeOptions {
            detect: d.options(),
        },
    )?;
    Ok((img, faces))
}

/// The face with the largest box: "the" face of a portrait.
fn main_face(faces: &[AnalyzedFace]) -> Option<&AnalyzedFace> {
    faces
        .iter()
        .max_by(|a, b| a.detection.bbox.area().total_cmp(&b.detection.bbox.area()))
}

pub fn detect(cmd: DetectCmd) -> Result<()> {
    let p = Pipeline::load()?;
    let (mut img, faces) = analyze(&p, &cmd.image, &cmd.detect)?;
    let gate = QualityGate::default();
    let reports: Vec<FaceReport> = faces.iter().map(|f| FaceReport::new(f, &gate)).collect();
    print_json(
        &json!({ "image": cmd.image, "width": img.width(), "height": img.height(), "faces": reports }),
    )?;
    if let Some(out) = cmd.annotate {
        for f in &faces {
            draw_detection(&mut img, &f.detection);
        }
        img.save_with_format(&out, image::ImageFormat::Png)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("annotated image written to {}", out.display());
    }
    Ok(())
}

pub fn embed(cmd: EmbedCmd) -> Result<()> {
    let p = Pipeline::load()?;
    let (_, faces) = analyze(&p, &cmd.image, &cmd.detect)?;
    let out: Vec<_> = faces.iter().map(|f| json!({ "bbox": f.detection.bbox, "score": f.detection.score, "embedding": f.embedding })).collect();
    print_json(&json!({ "image": cmd.image, "faces": out }))
}

pub fn compare(cmd: CompareCmd) -> Result<()> {
    let p = Pipeline::load()?;
    let mut found = Vec::new();
    for path in [&cmd.a, &cmd.b] {
        let (_, faces) = analyze(&p, path, &cmd.detect)?;
        let f =
            main_face(&faces).with_context(|| format!("no face found in {}", path.display()))?;
        found.push(f.clone());
    }
    let embs: Vec<_> = found.iter().map(|f| f.embedding.clone()).collect();
    // The second photo is the probe: its face decides whether "no match" is undecided.
    let faces_b = found[1].clone();
    let sim = embs[0].cosine(&embs[1])?;
    let threshold = match (cmd.threshold, cmd.max_false_match_rate) {
        (Some(t), _) => t,
        (None, Some(rate)) if rate > 0.0 && rate <= 1.0 => model::threshold_for_false_match_rate(
            rate,
        )
        .map_err(|floor| {
            anyhow::anyhow!(
                "the calibration vouches for false-match rates down to {floor:.2e}, not {rate:.2e}"
            )
        })?,
        (None, Some(rate)) => anyhow::bail!("--max-false-match-rate {rate} is outside (0, 1]"),
        (None, None) => model::default_threshold(),
    };
    let decision = visage_shared::api::Decision::of(
        sim >= threshold,
        Some(&FaceReport::new(&faces_b, &QualityGate::default())),
    );
    print_json(&json!({
        "a": cmd.a, "b": cmd.b, "model": embs[0].model(),
        "similarity": sim, "threshold": threshold, "match": sim >= threshold,
        "false_match_rate": model::false_match_rate(sim),
        "outcome": decision.outcome, "undecided_because": decision.undecided_because,
    }))
}

/// Draws a box and landmark dots (green box, red landmarks).
pub fn draw_detection(img: &mut RgbImage, d: &visage_shared::Detection) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut put = |x: i64, y: i64, c: Rgb<u8>| {
        if x >= 0 && y >= 0 && x < w && y < h {
            img.put_pixel(x as u32, y as u32, c);
        }
    };
    let b = d.bbox;
    let (x0, y0, x1, y1) = (
        b.x as i64,
        b.y as i64,
        (b.x + b.width) as i64,
        (b.y + b.height) as i64,
    );
    let green = Rgb([0, 255, 0]);
    for t in 0..2 {
        for x in x0..=x1 {
            put(x, y0 + t, green);
            put(x, y1 - t, green);
        }
        for y in y0..=y1 {
            put(x0 + t, y, green);
            put(x1 - t, y, green);
        }
    }
    for l in d.landmarks {
        for dy in -2..=2 {
            for dx in -2..=2 {
                put(l.x as i64 + dx, l.y as i64 + dy, Rgb([255, 0, 0]));
            }
        }
    }
}
