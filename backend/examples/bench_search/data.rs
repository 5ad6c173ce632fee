//! The generated face-like data: identity centres (isotropic or fitted to MobileFaceNet's
//! statistics), faces and probes sampled around them from seeded streams, and the cosine
//! statistics of what was generated.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use visage_shared::Embedding;
use visage_shared::model::{EMBEDDER_ID, EMBEDDING_DIM};

pub(crate) const FACES_PER_ID: usize = 5;

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller.
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
}

fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// centre + noise with noise norm `sigma` relative to the unit centre.
pub(crate) fn sample(rng: &mut StdRng, centre: &[f32], sigma: f32) -> Vec<f32> {
    let per = sigma / (EMBEDDING_DIM as f32).sqrt();
    let mut v: Vec<f32> = centre.iter().map(|c| c + per * gaussian(rng)).collect();
    unit(&mut v);
    v
}

/// Independent random streams per purpose, so that a kept database's probes can be
/// regenerated from the seed without regenerating its faces.
pub(crate) fn stream(seed: u64, purpose: u64) -> StdRng {
    StdRng::seed_from_u64(seed.wrapping_mul(16).wrapping_add(purpose))
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Data {
    Isotropic,
    Fitted,
}

impl Data {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Data::Isotropic => "isotropic",
            Data::Fitted => "fitted",
        }
    }

    /// Noise norm of one face.
    pub(crate) fn sigma(self, rng: &mut StdRng) -> f32 {
        match self {
            Data::Isotropic => 0.9,
            Data::Fitted => rng.random_range(0.25..0.8),
        }
    }
}

pub(crate) fn centres(n: usize, seed: u64, data: Data) -> Vec<Vec<f32>> {
    let mut rng = stream(seed, 0);
    let scale: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|i| match data {
            Data::Isotropic => 1.0,
            Data::Fitted => ((i + 1) as f32).powf(-0.85 / 2.0),
        })
        .collect();
    (0..n / FACES_PER_ID)
        .map(|_| {
            let mut c: Vec<f32> = scale.iter().map(|s| s * gaussian(&mut rng)).collect();
            unit(&mut c);
            c
        })
        .collect()
}

pub(crate) fn probes(
    centres: &[Vec<f32>],
    count: usize,
    seed: u64,
    purpose: u64,
    data: Data,
) -> Vec<(usize, Embedding)> {
    let mut rng = stream(seed, purpose);
    (0..count)
        .map(|_| {
            let id = rng.random_range(0..centres.len());
            let sigma = data.sigma(&mut rng);
            let e = Embedding::new(EMBEDDER_ID, sample(&mut rng, &centres[id], sigma));
            (id, e.expect("valid"))
        })
        .collect()
}

/// Cosine statistics of generated faces: same person (mean, min), different people (mean,
/// standard deviation, max), from 5000 pairs each.
pub(crate) fn data_stats(centres: &[Vec<f32>], seed: u64, data: Data) -> String {
    let mut rng = stream(seed, 4);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() as f64;
    let face = |rng: &mut StdRng, c: usize| {
        let sigma = data.sigma(rng);
        sample(rng, &centres[c], sigma)
    };
    let (mut gen_, mut imp) = (Vec::new(), Vec::new());
    for _ in 0..5000 {
        let a = rng.random_range(0..centres.len());
        let b = rng.random_range(0..centres.len());
        let fa = face(&mut rng, a);
        let fa2 = face(&mut rng, a);
        let fb = face(&mut rng, b);
        gen_.push(dot(&fa, &fa2));
        if a != b {
            imp.push(dot(&fa, &fb));
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (mg, mi) = (mean(&gen_), mean(&imp));
    let sd = (imp.iter().map(|x| (x - mi).powi(2)).sum::<f64>() / imp.len() as f64).sqrt();
    format!(
        "same person: mean cosine {mg:.2} (min {:.2}); different people: mean {mi:.2}, sd {sd:.2}, max {:.2}",
        gen_.iter().copied().fold(f64::INFINITY, f64::min),
        imp.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    )
}
