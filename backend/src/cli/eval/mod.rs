//! `visage eval`: verification pairs (AUC, thresholds, false matches with their confidence
//! bound), open-set identification on a gallery (`gallery`), face counts of group photos, files
//! that must be refused, the plausibility and strict decode reports, and the calibration table
//! written for the manifest.

mod calibration;
mod degrade;
mod gallery;
mod reports;

pub use degrade::{DegradeCmd, run as degrade};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use image::RgbImage;
use serde_json::json;
use visage_backend::domain::OperatingPoint;
use visage_shared::eval::{
    SAME_LABELS, ScoredPair, calibration_table, clopper_pearson_upper, parse_same_label,
    verification_report, zero_false_match_threshold,
};
use visage_shared::model::ProbeClass;
use visage_shared::{DetectOptions, Pipeline};

use super::{DetectArgs, load};
use reports::{operating_points, plausibility_report, strict_decode_report};

/// How faces are cut out before embedding (for measuring what alignment buys).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CropMode {
    /// 5-point similarity transform to the ArcFace template (what the product does).
    Aligned,
    /// Plain square crop around the detector box, resized to 112x112.
    Box,
}

#[derive(Args, Debug)]
pub struct EvalCmd {
    /// CSV with image_a,image_b,same_person (paths relative to --root).
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// CSV with image,faces (paths relative to --root).
    #[arg(long)]
    pub groups: Option<PathBuf>,
    /// A folder of files that must all be rejected with a clear error.
    #[arg(long)]
    pub invalid: Option<PathBuf>,
    /// Folder the CSV paths are relative to (default: the CSV's folder).
    #[arg(long)]
    pub root: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = CropMode::Aligned)]
    pub crop: CropMode,
    /// Fail (exit 1) if the pairs AUC is below this.
    #[arg(long)]
    pub min_auc: Option<f64>,
    /// Fail (exit 1) if any group count differs from the expected one.
    #[arg(long)]
    pub exact_counts: bool,
    /// A labelled photo set for the calibration (repeatable): every pair of faces it says are
    /// different people (`people/<identity>/`, `distinct/`, `groups/`; see
    /// `scripts/fetch_calibration_photos.sh`). When given, the calibration's different-person
    /// pairs are these sets' (add the pairs' own folder as a set), not the pairs file's.
    #[arg(long)]
    pub impostor_set: Vec<PathBuf>,
    /// Fail (exit 1) if the pairs' same-person acceptance at the shipped default threshold is
    /// below this share.
    #[arg(long)]
    pub min_accept: Option<f64>,
    /// A folder with one sub-folder of photos per person: runs the open-set identification
    /// protocol (enroll the first K photos of each person, search with the rest, and each
    /// person's photos against the gallery without them) for each template rule.
    #[arg(long)]
    pub gallery: Option<PathBuf>,
    /// Photos enrolled per person in the gallery protocol (repeat for several runs).
    #[arg(long = "enroll-per-person", default_values_t = [1, 2])]
    pub enroll_per_person: Vec<usize>,
    /// Fail (exit 1) if a gallery run's rank-1 rate (template rule the service uses) is below.
    #[arg(long)]
    pub min_rank1: Option<f64>,
    /// Fail (exit 1) if a gallery run's DIR at the shipped default threshold is below this.
    #[arg(long)]
    pub min_dir: Option<f64>,
    /// Degrade the probes before embedding (the second photo of every pair; every search of
    /// the gallery protocol, against a clean gallery; with `--impostor-set`, one side of every
    /// set pair in turn, for a calibration of small probes): scale the photo so the face is
    /// this many pixels wide, then JPEG it at `--degrade-quality` (probes from poor cameras).
    #[arg(long)]
    pub degrade_face_px: Option<u32>,
    /// JPEG quality of `--degrade-face-px`.
    #[arg(long, default_value_t = 30)]
    pub degrade_quality: u8,
    /// Write the similarity/false-match-rate calibration (JSON) measured on the pairs here.
    #[arg(long)]
    pub calibration_out: Option<PathBuf>,
    #[command(flatten)]
    pub detect: DetectArgs,
}

fn read_csv(path: &Path) -> Result<Vec<Vec<String>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(|s| s.trim().to_string()).collect())
        .collect())
}

/// Square crop around the detector box, resized to 112x112 (the "no alignment" baseline).
fn box_crop(img: &RgbImage, d: &visage_shared::Detection) -> RgbImage {
    let b = d.bbox;
    let side = b.width.max(b.height);
    let (cx, cy) = (b.x + b.width / 2.0, b.y + b.height / 2.0);
    let inv = visage_shared::geometry::Similarity {
        a: (side / 112.0) as f64,
        b: 0.0,
        tx: (cx - side / 2.0) as f64,
        ty: (cy - side / 2.0) as f64,
    };
    visage_shared::align::warp(img, &inv, 112)
}

pub fn eval(cmd: EvalCmd) -> Result<()> {
    if cmd.pairs.is_none() && cmd.groups.is_none() && cmd.invalid.is_none() && cmd.gallery.is_none()
    {
        bail!("give --pairs, --gallery, --groups and/or --invalid");
    }
    let p = Pipeline::load()?;
    let mut failed = false;
    if let Some(pairs) = &cmd.pairs {
        failed |= eval_pairs(&p, &cmd, pairs)?;
    }
    if let Some(dir) = &cmd.gallery {
        for &k in &cmd.enroll_per_person {
            let degrade = cmd.degrade_face_px.map(|px| (px, cmd.degrade_quality));
            let reports = gallery::eval_gallery(&p, dir, k, &cmd.detect, degrade)?;
            let used = reports
                .iter()
                .find(|r| r.rule == visage_shared::template::SERVICE_RULE)
                .context("no report for the service's template rule")?;
            failed |= cmd.min_rank1.is_some_and(|min| used.rank1 < min);
            failed |= cmd.min_dir.is_some_and(|min| used.at_threshold.2 < min);
        }
    }
    if let Some(groups) = &cmd.groups {
        failed |= eval_groups(&p, &cmd, groups)?;
    }
    if let Some(dir) = &cmd.invalid {
        failed |= eval_invalid(&p, dir)?;
    }
    if failed {
        bail!("evaluation gate failed");
    }
    Ok(())
}

fn root_for(cmd: &EvalCmd, csv: &Path) -> PathBuf {
    cmd.root
        .clone()
        .unwrap_or_else(|| csv.parent().map(Path::to_path_buf).unwrap_or_default())
}

fn eval_pairs(p: &Pipeline, cmd: &EvalCmd, csv: &Path) -> Result<bool> {
    let root = root_for(cmd, csv);
    let rows = read_csv(csv)?;
    // Each photo's main face: its embedding and how wide the pipeline measured it.
    let mut cache: HashMap<String, Option<(visage_shared::Embedding, f32)>> = HashMap::new();
    let mut failures = Vec::new();
    let mut scored = Vec::new();
    // The class of each pair's probe (the second photo): a small face is matched through the
    // small-probe table.
    let mut classes = Vec::new();
    for (line, row) in rows.iter().enumerate() {
        if row.len() < 3 {
            bail!("bad row in {}: {row:?}", csv.display());
        }
        let mut e = Vec::new();
        for (side, name) in row[..2].iter().enumerate() {
            // With --degrade-face-px the second photo of a pair is the degraded probe: a
            // separate cache entry from the same photo used clean.
            let degrade = cmd.degrade_face_px.filter(|_| side == 1);
            let key = match degrade {
                Some(px) => format!("{name}@{px}px-q{}", cmd.degrade_quality),
                None => name.clone(),
            };
            let name = &key;
            if !cache.contains_key(name) {
                let path = root.join(&row[side]);
                let emb = match embed_main_face(
                    p,
                    &path,
                    &cmd.detect,
                    cmd.crop,
                    degrade.map(|px| (px, cmd.degrade_quality)),
                ) {
                    Ok(Some(x)) => Some(x),
                    Ok(None) => {
                        failures.push(format!("{name}: no face found"));
                        None
                    }
                    Err(err) => {
                        failures.push(format!("{name}: {err:#}"));
                        None
                    }
                };
                cache.insert(name.clone(), emb);
            }
            e.push(cache[name].clone());
        }
        let Some(same) = parse_same_label(&row[2]) else {
            bail!(
                "{} data row {}: same-person label {:?} is not one of {SAME_LABELS}",
                csv.display(),
                line + 1,
                row[2]
            );
        };
        // A pair with a failed image counts as a miss: -1 can never pass a threshold.
        let score = match (&e[0], &e[1]) {
            (Some((a, _)), Some((b, _))) => a.cosine(b)?,
            _ => -1.0,
        };
        scored.push(ScoredPair { score, same });
        let probe_px = e[1].as_ref().map_or(f32::MAX, |(_, px)| *px);
        classes.push(ProbeClass::of_face_px(probe_px));
    }
    let r =
        verification_report(&scored).context("pairs CSV needs both same and different pairs")?;
    println!(
        "pairs: {} ({} same, {} different), crop: {:?}{}",
        scored.len(),
        r.genuine_pairs,
        r.impostor_pairs,
        cmd.crop,
        cmd.degrade_face_px
            .map(|px| format!(
                ", second photo degraded to a {px} px face at JPEG quality {}",
                cmd.degrade_quality
            ))
            .unwrap_or_default()
    );
    println!("  AUC                      {:.5}", r.auc);
    println!(
        "  best accuracy            {:.2}% at threshold {:.3}",
        100.0 * r.best_accuracy,
        r.best_threshold
    );
    println!("  EER                      {:.2}%", 100.0 * r.eer);
    println!(
        "  TAR @ FAR 1e-3           {:.2}% (threshold {:.3})",
        100.0 * r.tar_at_far_1e3,
        r.threshold_at_far_1e3
    );
    let genuine: Vec<f32> = scored.iter().filter(|s| s.same).map(|s| s.score).collect();
    let mut imp: Vec<f32> = scored.iter().filter(|s| !s.same).map(|s| s.score).collect();
    let max_imp = imp.iter().cloned().fold(f32::MIN, f32::max);
    let min_gen = genuine.iter().cloned().fold(f32::MAX, f32::min);
    println!("  same-person min {min_gen:.3}, different-person max {max_imp:.3}");
    println!(
        "  best-accuracy threshold  {:.3} (of these pairs; not the shipped default)",
        r.best_threshold
    );
    // At the default operating point, as the service decides: each probe at the threshold of
    // its class (the small-probe table's under 48 px).
    let thresholds = OperatingPoint::DEFAULT
        .thresholds()
        .map_err(|floor| anyhow::anyhow!("the calibration vouches only for {floor:.2e}"))?;
    let operating: Vec<f32> = classes.iter().map(|&c| thresholds.of(c)).collect();
    let decided: Vec<(bool, bool)> = scored
        .iter()
        .zip(&operating)
        .map(|(s, &t)| (s.same, s.score >= t))
        .collect();
    let accepted = decided.iter().filter(|&&(same, m)| same && m).count();
    let false_matches = decided.iter().filter(|&&(same, m)| !same && m).count();
    let small = classes.iter().filter(|&&c| c == ProbeClass::Small).count();
    println!(
        "  at the default operating point (false-match rate <= {:.0e}; {small} of {} probes small, at {}): same-person accepted {accepted}/{} ({:.1}%), false matches {false_matches}/{} (95% upper bound {:.2e})",
        visage_shared::model::DEFAULT_MAX_FALSE_MATCH_RATE,
        operating.len(),
        thresholds_in_use(&operating),
        genuine.len(),
        100.0 * accepted as f64 / genuine.len().max(1) as f64,
        imp.len(),
        clopper_pearson_upper(false_matches as u64, imp.len() as u64, 0.95)
    );
    println!("  failures                 {}", failures.len());
    for f in &failures {
        println!("    {f}");
    }
    // The calibration's different-person pairs: the labelled sets' when given (pass the pairs'
    // own folder as one of them), else the pairs file's.
    let mut set_genuine = Vec::new();
    let mut small_probes = None;
    if !cmd.impostor_set.is_empty() {
        let degrade = cmd.degrade_face_px.map(|px| (px, cmd.degrade_quality));
        let sets = calibration::set_pairs(p, &cmd.impostor_set, &cmd.detect, degrade)?;
        println!(
            "  impostor sets: {} faces, {} different-person pairs (max similarity {:.3}), {} same-person pairs",
            sets.faces,
            sets.impostor.len(),
            sets.impostor.iter().cloned().fold(-1.0f32, f32::max),
            sets.genuine.len()
        );
        for (s, a, b) in &sets.closest_impostors {
            println!("    {s:.3}  {a}  vs  {b}");
        }
        if let Some(px) = cmd.degrade_face_px {
            println!(
                "  small probes: each set pair again with one side degraded to a {px} px face at JPEG quality {} (the other clean, as enrolled): {} different-person and {} same-person scores",
                cmd.degrade_quality,
                sets.small_impostor.len(),
                sets.small_genuine.len()
            );
            let vouched = operating_points(&[], &sets.small_genuine, &sets.small_impostor);
            small_probes = Some(json!({
                "below_face_px": visage_shared::QualityGate::DECISION.min_face_px,
                "degraded_to_face_px": px,
                "jpeg_quality": cmd.degrade_quality,
                "impostor_pairs": sets.small_impostor.len(),
                "threshold_vouched_for_1e-3": vouched,
                "table": calibration_table(&sets.small_impostor),
            }));
            println!("  clean pairs:");
        }
        imp = sets.impostor;
        set_genuine = sets.genuine;
    }
    let refused =
        plausibility_report(cache.values().flatten().map(|(e, _)| e)) + strict_decode_report(&root);
    let zero_fm = zero_false_match_threshold(&imp);
    let tar =
        genuine.iter().filter(|&&s| s >= zero_fm).count() as f64 / genuine.len().max(1) as f64;
    println!(
        "  no-false-match threshold {zero_fm:.2} over {} impostor pairs (true-accept rate there {:.1}%)",
        imp.len(),
        100.0 * tar
    );
    let vouched = operating_points(&genuine, &set_genuine, &imp);
    let accept_rate = accepted as f64 / genuine.len().max(1) as f64;
    let failed_accept = cmd.min_accept.is_some_and(|min| accept_rate < min);
    if failed_accept {
        println!(
            "  GATE: same-person acceptance at the default operating point {:.1}% is below {:.1}%",
            100.0 * accept_rate,
            100.0 * cmd.min_accept.unwrap_or_default()
        );
    }
    if let Some(out) = &cmd.calibration_out {
        let cal = json!({
            "best_accuracy_threshold": r.best_threshold,
            "no_false_match_threshold": zero_fm,
            "true_accept_rate_at_no_false_match_threshold": tar,
            "auc": r.auc,
            "impostor_pairs": imp.len(),
            "threshold_vouched_for_1e-3": vouched,
            "table": calibration_table(&imp),
            "small_probes": small_probes,
        });
        std::fs::write(out, serde_json::to_string_pretty(&cal)?)?;
        println!("  calibration written to {}", out.display());
    }
    Ok(cmd.min_auc.is_some_and(|min| r.auc < min) || refused > 0 || failed_accept)
}

/// The distinct thresholds of a run, e.g. "0.54 and 0.48".
fn thresholds_in_use(thresholds: &[f32]) -> String {
    let mut t: Vec<f32> = thresholds.to_vec();
    t.sort_by(|a, b| b.total_cmp(a));
    t.dedup();
    t.iter()
        .map(|t| format!("{t:.2}"))
        .collect::<Vec<_>>()
        .join(" and ")
}

/// The main (largest) face of a photo: its embedding and its width as the pipeline measures it.
fn embed_main_face(
    p: &Pipeline,
    path: &Path,
    d: &DetectArgs,
    crop: CropMode,
    degrade: Option<(u32, u8)>,
) -> Result<Option<(visage_shared::Embedding, f32)>> {
    let mut img = load(path)?;
    if let Some((px, quality)) = degrade {
        img = degrade::degrade(p, &img, d, px, quality)?.image;
    }
    let dets = p.detect(&img, &d.options())?;
    let Some(det) = dets
        .into_iter()
        .max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()))
    else {
        return Ok(None);
    };
    Ok(Some(match crop {
        CropMode::Aligned => match p.analyze_detection(&img, det)? {
            Some(f) => (f.embedding, f.quality.face_px),
            None => return Ok(None),
        },
        CropMode::Box => {
            let px = visage_shared::Quality::face_px_of(&det);
            (p.embedder.embed(&box_crop(&img, &det))?, px)
        }
    }))
}

fn eval_groups(p: &Pipeline, cmd: &EvalCmd, csv: &Path) -> Result<bool> {
    let root = root_for(cmd, csv);
    let opts = cmd.detect.options();
    println!(
        "groups: max side {}, score threshold {}",
        opts.max_side, opts.score_threshold
    );
    let (mut exact, mut total) = (0, 0);
    for row in read_csv(csv)? {
        let expected: usize = row
            .get(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad row {row:?}"))?;
        let found = match load(&root.join(&row[0])) {
            Ok(img) => {
                let dets = p.detect(&img, &opts)?;
                let scores: Vec<String> = dets.iter().map(|d| format!("{:.2}", d.score)).collect();
                (dets.len(), scores.join(" "))
            }
            Err(e) => (usize::MAX, format!("{e:#}")),
        };
        total += 1;
        let ok = found.0 == expected;
        exact += ok as usize;
        let shown = if found.0 == usize::MAX {
            "error".to_string()
        } else {
            found.0.to_string()
        };
        println!(
            "  {:<40} expected {expected:>2} found {shown:>5} {} [{}]",
            row[0],
            if ok { "ok" } else { "MISMATCH" },
            found.1
        );
    }
    println!("  exact counts: {exact}/{total}");
    Ok(cmd.exact_counts && exact != total)
}

fn eval_invalid(p: &Pipeline, dir: &Path) -> Result<bool> {
    let mut failed = false;
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    println!("invalid inputs in {}:", dir.display());
    for path in entries {
        match load(&path) {
            Err(e) => println!("  {:<40} rejected: {e:#}", path.display()),
            Ok(img) => {
                failed = true;
                let n = p.detect(&img, &DetectOptions::PHOTO)?.len();
                println!(
                    "  {:<40} ACCEPTED ({} faces): expected an error",
                    path.display(),
                    n
                );
            }
        }
    }
    Ok(failed)
}
