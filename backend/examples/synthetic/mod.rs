//! Synthetic face-like data for the benchmarks: identity centres (uniform random unit vectors,
//! 192-d) with 5 faces each (centre plus noise of norm 0.9, same-person cosine about 0.55),
//! loaded per collection with COPY.

use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use uuid::Uuid;
use visage_shared::model::{EMBEDDER_ID, EMBEDDING_DIM};

/// Faces per identity.
pub const FACES_PER_ID: usize = 5;
const NOISE: f32 = 0.9;

pub fn unit(rng: &mut rand::rngs::StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| {
            let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-9), rng.random());
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

pub fn noisy(rng: &mut rand::rngs::StdRng, centre: &[f32]) -> Vec<f32> {
    let d = unit(rng);
    let v: Vec<f32> = centre.iter().zip(&d).map(|(c, e)| c + NOISE * e).collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / n).collect()
}

fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", parts.join(","))
}

/// The identity centres of collection number `k` (its own seed, so a kept database's centres
/// are found again without loading).
pub fn centres_of(k: usize, faces: usize) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1_000_000 + k as u64);
    (0..faces.div_ceil(FACES_PER_ID))
        .map(|_| unit(&mut rng))
        .collect()
}

/// Loads collection number `k` of `faces` faces; returns its identity centres.
pub async fn load_collection(
    pool: &PgPool,
    k: usize,
    id: Uuid,
    name: &str,
    faces: usize,
) -> anyhow::Result<Vec<Vec<f32>>> {
    let rng = &mut rand::rngs::StdRng::seed_from_u64(2_000_000 + k as u64);
    sqlx::query("INSERT INTO collections (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(id)
        .bind(name)
        .execute(pool)
        .await?;
    let centres = centres_of(k, faces);
    let people: Vec<Uuid> = centres.iter().map(|_| Uuid::new_v4()).collect();
    let mut conn = pool.acquire().await?;
    let (mut p, mut c) = (String::new(), String::new());
    for (i, person) in people.iter().enumerate() {
        p.push_str(&format!("{person}\tbench {i}\t{id}\n"));
        c.push_str(&format!(
            "{}\t{person}\tv1\t{}\tbench\t2026-01-01 00:00:00+00\tbench\tbench\t{id}\n",
            Uuid::new_v4(),
            "0".repeat(64)
        ));
    }
    let mut cp = conn
        .copy_in_raw("COPY people (id, display_name, collection_id) FROM STDIN")
        .await?;
    cp.send(p.as_bytes()).await?;
    cp.finish().await?;
    let mut cp = conn
        .copy_in_raw("COPY consents (id, person_id, policy_version, policy_sha256, purpose, granted_at, evidence_method, collected_by, collection_id) FROM STDIN")
        .await?;
    cp.send(c.as_bytes()).await?;
    cp.finish().await?;
    let mut cp = conn
        .copy_in_raw(
            "COPY faces (id, person_id, model_id, embedding, source, collection_id) FROM STDIN",
        )
        .await?;
    let mut buf = String::new();
    for n in 0..faces {
        let k = n / FACES_PER_ID;
        let v = noisy(rng, &centres[k]);
        buf.push_str(&format!(
            "{}\t{}\t{EMBEDDER_ID}\t{}\tbrowser\t{id}\n",
            Uuid::new_v4(),
            people[k],
            vector_text(&v)
        ));
        if buf.len() > (1 << 22) {
            cp.send(buf.as_bytes()).await?;
            buf.clear();
        }
    }
    cp.send(buf.as_bytes()).await?;
    cp.finish().await?;
    Ok(centres)
}
