//! `visage eval --gallery DIR`: the open-set identification protocol
//! (`visage_shared::eval::identification_report`) on a folder with one sub-folder per person,
//! for each template rule, so the rules can be compared on the same searches.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use visage_shared::Pipeline;
use visage_shared::eval::{IdentificationReport, LabelledFace, identification_report};
use visage_shared::template::{TemplateRule, quality_weight};

use super::super::{DetectArgs, analyze, main_face};

/// FPIR targets reported (the 0.01 row needs 100+ non-mated searches to mean anything).
const FPIR_TARGETS: [f64; 3] = [0.001, 0.01, 0.1];

/// Each person's photos in file-name order: `DIR/<person>/<photo>`.
fn photos_by_person(dir: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut people = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let mut photos: Vec<PathBuf> = std::fs::read_dir(&d)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        photos.sort();
        let name = d
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        people.push((name, photos));
    }
    Ok(people)
}

/// Embeds the main face of every photo; photos without a usable face are counted and left out.
/// With `degrade` (face width, JPEG quality) each photo also gets a degraded probe; photos
/// whose degraded copy has no face are left out, so both runs search with the same photos.
fn labelled_faces(
    p: &Pipeline,
    dir: &Path,
    d: &DetectArgs,
    degrade: Option<(u32, u8)>,
) -> Result<Vec<LabelledFace>> {
    let mut faces = Vec::new();
    let mut left_out = 0;
    for (identity, photos) in photos_by_person(dir)? {
        for photo in photos {
            let Ok((img, found)) = analyze(p, &photo, d) else {
                left_out += 1;
                continue;
            };
            let Some(f) = main_face(&found) else {
                left_out += 1;
                continue;
            };
            let probe = match degrade {
                None => None,
                Some(dq) => match super::degrade::degraded_embedding(p, &img, f, d, dq) {
                    Some(e) => Some(e),
                    None => {
                        left_out += 1;
                        continue;
                    }
                },
            };
            faces.push(LabelledFace {
                identity: identity.clone(),
                embedding: f.embedding.clone(),
                weight: quality_weight(&f.quality),
                probe,
            });
        }
    }
    if left_out > 0 {
        println!("  {left_out} photo(s) without a usable face left out");
    }
    Ok(faces)
}

fn print_report(r: &IdentificationReport) {
    println!(
        "  {:<10} rank-1 {:.1}%; {}",
        format!("{:?}", r.rule),
        100.0 * r.rank1,
        r.dir_at_fpir
            .iter()
            .map(|d| format!(
                "DIR {:.1}% at FPIR {} (threshold {:.2}, measured {:.3})",
                100.0 * d.dir,
                d.fpir,
                d.threshold,
                d.measured_fpir
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let (t, fpir, dir) = r.at_threshold;
    println!(
        "  {:<10} at the shipped default {t:.2}: DIR {:.1}%, FPIR {fpir:.3}",
        "",
        100.0 * dir
    );
}

/// Runs the protocol with `k` enrolled photos per person; returns the report of each rule
/// (best face first).
pub fn eval_gallery(
    p: &Pipeline,
    dir: &Path,
    k: usize,
    d: &DetectArgs,
    degrade: Option<(u32, u8)>,
) -> Result<Vec<IdentificationReport>> {
    let faces = labelled_faces(p, dir, d, degrade)?;
    let default = visage_shared::model::default_threshold();
    let reports: Vec<IdentificationReport> = TemplateRule::ALL
        .iter()
        .filter_map(|&rule| identification_report(&faces, k, rule, &FPIR_TARGETS, default))
        .collect();
    let Some(first) = reports.first() else {
        anyhow::bail!(
            "{}: the gallery protocol needs at least two people with more than {k} photos each",
            dir.display()
        );
    };
    println!(
        "gallery {}{}: {} photos; {} people enrolled with {k} photo(s) each; {} mated and {} non-mated searches (leave one person out)",
        dir.display(),
        degrade
            .map(|(px, q)| format!(", probes degraded to a {px} px face at JPEG quality {q}"))
            .unwrap_or_default(),
        faces.len(),
        first.enrolled_people,
        first.mated_searches,
        first.non_mated_searches
    );
    for r in &reports {
        print_report(r);
    }
    Ok(reports)
}
