//! The query phase's passes: the service's own search run over a set of probes (HNSW at an
//! ef_search, or exact), and the result row of a pass (recall@1, identity accuracy, latency
//! percentiles, blocks read).

use std::time::Instant;

use sqlx::PgPool;
use visage_backend::routes::common::{MatchParams, search_with};
use visage_shared::Embedding;
use visage_shared::model::ProbeClass;

use crate::server_stats::loadavg;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub(crate) struct Row {
    pub(crate) size: usize,
    pub(crate) mode: String,
    pub(crate) n: usize,
    pub(crate) recall1: f64,
    pub(crate) id_acc: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) idx_read: i64,
    pub(crate) idx_hit: i64,
    pub(crate) heap_read: i64,
    pub(crate) load: String,
}

/// One timed pass of the service's query; `truth` is the exact top-1 face per probe.
pub(crate) async fn pass(
    pool: &PgPool,
    set: &[(usize, Embedding)],
    ef: Option<u32>,
    truth: &[Option<uuid::Uuid>],
) -> anyhow::Result<(Vec<f64>, Vec<Option<uuid::Uuid>>, usize, usize)> {
    let p = MatchParams {
        collection: visage_backend::domain::DEFAULT_COLLECTION_ID,
        top_k: 5,
        thresholds: visage_backend::domain::Thresholds::uniform(0.3),
        search: visage_backend::store::search::Settings {
            ef_search: ef.unwrap_or(100),
            exact_max_faces: visage_backend::configuration::DEFAULT_EXACT_SEARCH_MAX_FACES,
        },
        disclosure: visage_backend::oracle::Disclosure::Full,
    };
    let mut lat = Vec::with_capacity(set.len());
    let mut tops = Vec::with_capacity(set.len());
    let (mut hits, mut id_ok) = (0, 0);
    for (k, (id, e)) in set.iter().enumerate() {
        let t = Instant::now();
        let c = search_with(pool, e, ProbeClass::Clean, p, ef.is_none()).await?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let top = c.first().map(|c| c.face_id);
        if truth.get(k).is_some_and(|t| *t == top) {
            hits += 1;
        }
        // Person names are "bench <index>": identity accuracy from the name.
        if c.first().is_some_and(|c| c.name == format!("bench {id}")) {
            id_ok += 1;
        }
        tops.push(top);
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, tops, hits, id_ok))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn row(
    size: usize,
    mode: String,
    lat: &[f64],
    hits: usize,
    id_ok: usize,
    blocks: ((i64, i64, i64), (i64, i64, i64)),
) -> Row {
    let n = lat.len();
    let (b0, b1) = blocks;
    let r = Row {
        size,
        mode,
        n,
        recall1: hits as f64 / n as f64,
        id_acc: id_ok as f64 / n as f64,
        p50: percentile(lat, 0.5),
        p99: percentile(lat, 0.99),
        idx_read: b1.0 - b0.0,
        idx_hit: b1.1 - b0.1,
        heap_read: b1.2 - b0.2,
        load: loadavg(),
    };
    eprintln!(
        "{size} {} (n={n}): recall@1 {:.3}, identity {:.3}, p50 {:.2} ms, p99 {:.2} ms, index blocks read {} hit {}, heap read {}, load {}",
        r.mode, r.recall1, r.id_acc, r.p50, r.p99, r.idx_read, r.idx_hit, r.heap_read, r.load
    );
    r
}
