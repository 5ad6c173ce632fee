//! The reports `visage eval` prints beside its metrics: the operating points of a calibration,
//! how many real photos the strict decoder would refuse, how far real embeddings are from an
//! implausible probe.

use std::path::Path;

use visage_shared::eval::clopper_pearson_upper;

/// Prints how many photos under `root` (every JPEG but those in `invalid/`) the enrollment
/// route's strict JPEG check (`decode::check_jpeg_strict`) would refuse, naming them. The gate
/// wants 0: real photos from cameras and editors must enroll.
pub fn strict_decode_report(root: &Path) -> usize {
    let mut photos = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && entry.file_name() != "invalid" {
                dirs.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            {
                photos.push(path);
            }
        }
    }
    let refused: Vec<String> = photos
        .iter()
        .filter_map(|path| {
            let checked = std::fs::read(path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    visage_shared::decode::check_jpeg_strict(&b).map_err(|e| e.to_string())
                });
            checked.err().map(|e| format!("{}: {e}", path.display()))
        })
        .collect();
    println!(
        "  strict enrollment decode {} of {} photos refused",
        refused.len(),
        photos.len()
    );
    for r in &refused {
        println!("    {r}");
    }
    refused.len()
}

/// Prints how far real embeddings are from what the service refuses as an implausible probe
/// (`oracle::check_plausible`) and returns how many it would refuse (the gate wants 0).
pub fn plausibility_report<'a>(embs: impl Iterator<Item = &'a visage_shared::Embedding>) -> usize {
    let (mut n, mut refused) = (0, 0);
    let (mut max_energy, mut min_support) = (0f32, usize::MAX);
    for e in embs {
        n += 1;
        if let Some(p) = visage_backend::oracle::EnergyProfile::of(e.vector()) {
            max_energy = max_energy.max(p.max_share);
            min_support = min_support.min(p.support_90);
        }
        if visage_backend::oracle::check_plausible(e).is_err() {
            refused += 1;
        }
    }
    println!(
        "  probe plausibility       {refused} of {n} embeddings refused (largest coordinate energy {max_energy:.3}, limit {}; fewest coordinates for 90% {min_support}, limit {})",
        visage_backend::oracle::MAX_COORDINATE_ENERGY,
        visage_backend::oracle::MIN_SUPPORT_90
    );
    refused
}

/// Prints the operating points on the 0.02 grid from 0.40 to 0.70: false matches among
/// `impostor` with their 95% upper bound, and the same-person acceptance of the pairs and of
/// the sets' same-person pairs. Returns the lowest threshold whose upper bound is at most 1e-3,
/// if any (the operating point of `max_false_match_rate = 0.001`).
pub fn operating_points(genuine: &[f32], set_genuine: &[f32], impostor: &[f32]) -> Option<f32> {
    let share = |v: &[f32], t: f32| {
        let n = v.iter().filter(|&&s| s >= t).count();
        if v.is_empty() {
            return "-".to_string();
        }
        format!(
            "{n}/{} ({:.1}%)",
            v.len(),
            100.0 * n as f64 / v.len() as f64
        )
    };
    println!("  threshold  false matches  95% upper bound  same-person accepted (pairs; sets)");
    let mut vouched = None;
    for k in 20..=35 {
        let t = k as f32 * 0.02;
        let fm = impostor.iter().filter(|&&s| s >= t).count();
        let upper = clopper_pearson_upper(fm as u64, impostor.len() as u64, 0.95);
        if upper <= 1e-3 && vouched.is_none() {
            vouched = Some(t);
        }
        println!(
            "  {t:>9.2}  {:>13}  {upper:>15.2e}  {}; {}",
            format!("{fm}/{}", impostor.len()),
            share(genuine, t),
            share(set_genuine, t)
        );
    }
    match vouched {
        Some(t) => println!(
            "  false-match rate <= 1e-3 vouched (95% upper bound) from threshold {t:.2}: same-person accepted there {} (pairs), {} (sets)",
            share(genuine, t),
            share(set_genuine, t)
        ),
        // What the service would decide instead is the "default operating point" line above.
        None => println!(
            "  no threshold up to 0.70 is vouched for a false-match rate <= 1e-3 by these {} impostor pairs (the shipped calibration's: see the default operating point above)",
            impostor.len()
        ),
    }
    vouched
}
