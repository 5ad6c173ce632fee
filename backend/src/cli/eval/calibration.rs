//! `visage eval --impostor-set DIR`: every pair of faces that are known to be different people
//! across labelled photo sets, for the false-match calibration (issue 14), and the same-person
//! pairs the sets also hold.
//!
//! A set is a folder laid out as `scripts/fetch_calibration_photos.sh` writes it (and as
//! `../shared/faces` is):
//! - `people/<identity>/<photo>`: one person per photo, its largest face. Identity names are
//!   shared across sets: `barack_obama` in two sets is one person.
//! - `distinct/<photo>`: every face in it is a different person found in no other photo.
//! - `groups/<photo>`: every face differs from the others in that photo, and may be anyone else.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::RgbImage;
use visage_shared::{AnalyzedFace, Embedding, Pipeline};

use super::super::{DetectArgs, analyze, main_face};

/// Who a face is, as far as the set's layout says.
#[derive(Debug, Clone, PartialEq)]
enum Who {
    /// A named person (`people/<identity>`).
    Person(String),
    /// A person found in no other photo (`distinct/`).
    Unique,
    /// A different person from the other faces of photo number `.0` (`groups/`), nothing more.
    InPhoto(usize),
}

struct SetFace {
    who: Who,
    /// The same face degraded (`--degrade-face-px`), when it is still found there.
    small: Option<Embedding>,
    /// The photo, and which of its faces (for reading the closest pairs).
    source: String,
    embedding: Embedding,
}

/// Similarities of the pairs the sets label: (same person, different people).
#[derive(Debug, Default)]
pub struct SetPairs {
    pub genuine: Vec<f32>,
    pub impostor: Vec<f32>,
    /// With a degradation: each pair scored again with one side degraded (a small, compressed
    /// probe against a clean enrolled face), once per side that survived the degradation.
    pub small_genuine: Vec<f32>,
    pub small_impostor: Vec<f32>,
    pub faces: usize,
    /// The most similar different-person pairs, most similar first: where a mislabelled photo
    /// (one person under two names) would show.
    pub closest_impostors: Vec<(f32, String, String)>,
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn load_set(
    p: &Pipeline,
    dir: &Path,
    d: &DetectArgs,
    degrade: Option<(u32, u8)>,
    photo_ids: &mut usize,
    out: &mut Vec<SetFace>,
) -> Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "impostor set {} is not a folder",
        dir.display()
    );
    let photo = |path: &Path| match analyze(p, path, d) {
        Ok(x) => Some(x),
        Err(e) => {
            println!("    skipped {}: {e:#}", path.display());
            None
        }
    };
    let small = |img: &RgbImage, f: &AnalyzedFace| {
        degrade.and_then(|dq| super::degrade::degraded_embedding(p, img, f, d, dq))
    };
    for person in files(&dir.join("people"))
        .into_iter()
        .filter(|p| p.is_dir())
    {
        let name = person
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        for path in files(&person) {
            let Some((img, faces)) = photo(&path) else {
                continue;
            };
            if let Some(f) = main_face(&faces) {
                out.push(SetFace {
                    who: Who::Person(name.clone()),
                    small: small(&img, f),
                    source: path.display().to_string(),
                    embedding: f.embedding.clone(),
                });
            }
        }
    }
    for (folder, unique) in [("distinct", true), ("groups", false)] {
        for path in files(&dir.join(folder)) {
            *photo_ids += 1;
            let Some((img, faces)) = photo(&path) else {
                continue;
            };
            for (i, f) in faces.iter().enumerate() {
                let b = f.detection.bbox;
                out.push(SetFace {
                    who: if unique {
                        Who::Unique
                    } else {
                        Who::InPhoto(*photo_ids)
                    },
                    small: small(&img, f),
                    source: format!(
                        "{} face {i} at ({:.0}, {:.0}) {:.0} px",
                        path.display(),
                        b.x,
                        b.y,
                        b.width
                    ),
                    embedding: f.embedding.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Whether two faces are the same person (`Some(true)`), different people (`Some(false)`), or
/// not known to be either (`None`).
fn same_person(a: &Who, b: &Who) -> Option<bool> {
    match (a, b) {
        (Who::Person(x), Who::Person(y)) => Some(x == y),
        (Who::Unique, _) | (_, Who::Unique) => Some(false),
        (Who::InPhoto(x), Who::InPhoto(y)) if x == y => Some(false),
        _ => None,
    }
}

/// Embeds every face of every set and scores every labelled pair.
pub fn set_pairs(
    p: &Pipeline,
    dirs: &[PathBuf],
    d: &DetectArgs,
    degrade: Option<(u32, u8)>,
) -> Result<SetPairs> {
    let mut faces = Vec::new();
    let mut photo_ids = 0;
    for dir in dirs {
        load_set(p, dir, d, degrade, &mut photo_ids, &mut faces)
            .with_context(|| format!("impostor set {}", dir.display()))?;
    }
    let mut out = SetPairs {
        faces: faces.len(),
        ..SetPairs::default()
    };
    // The closest different-person pairs as (similarity, face, face): named once at the end.
    let mut closest: Vec<(f32, usize, usize)> = Vec::new();
    for (i, a) in faces.iter().enumerate() {
        for (j, b) in faces.iter().enumerate().skip(i + 1) {
            let Some(same) = same_person(&a.who, &b.who) else {
                continue;
            };
            // A small probe against a clean enrolled face, each side in turn.
            for (probe, enrolled) in [(a, b), (b, a)] {
                if let Some(small) = &probe.small {
                    let s = small.cosine(&enrolled.embedding)?;
                    let scores = if same {
                        &mut out.small_genuine
                    } else {
                        &mut out.small_impostor
                    };
                    scores.push(s);
                }
            }
            let s = a.embedding.cosine(&b.embedding)?;
            if same {
                out.genuine.push(s);
            } else {
                out.impostor.push(s);
                closest.push((s, i, j));
            }
        }
    }
    closest.sort_by(|x, y| y.0.total_cmp(&x.0));
    out.closest_impostors = closest
        .into_iter()
        .take(CLOSEST)
        .map(|(s, i, j)| (s, faces[i].source.clone(), faces[j].source.clone()))
        .collect();
    Ok(out)
}

/// How many of the closest different-person pairs are kept for the report.
const CLOSEST: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairing_rules() {
        let (ann, bob) = (Who::Person("ann".into()), Who::Person("bob".into()));
        assert_eq!(same_person(&ann, &ann), Some(true));
        assert_eq!(same_person(&ann, &bob), Some(false));
        assert_eq!(same_person(&Who::Unique, &ann), Some(false));
        assert_eq!(same_person(&Who::Unique, &Who::Unique), Some(false));
        assert_eq!(same_person(&Who::InPhoto(1), &Who::InPhoto(1)), Some(false));
        // A face of a group photo may be anyone outside that photo.
        assert_eq!(same_person(&Who::InPhoto(1), &Who::InPhoto(2)), None);
        assert_eq!(same_person(&Who::InPhoto(1), &ann), None);
    }
}
