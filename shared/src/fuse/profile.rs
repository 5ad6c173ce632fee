//! Where a plan's time goes, operator by operator: the same measurement natively
//! (`shared/examples/profile_plan.rs`) and in the browser (the worker's `profile_*` bench tasks),
//! so the two tables can sit side by side.

use std::collections::BTreeMap;
use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::model;

/// One node's time, averaged per run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    pub id: usize,
    /// The operator's name (`VisageConv3x3Act`, `OptMatMul`, ...).
    pub op: String,
    /// Name, operator and parameters, for the slowest-node list.
    pub desc: String,
    pub ms: f64,
}

/// A plan's profile: the median and the fastest whole run, and each node's mean time.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanProfile {
    pub median_ms: f64,
    /// The fastest run: on a shared, noisy host the steadier number for comparing two builds
    /// (noise only ever adds time).
    pub fastest_ms: f64,
    /// Slowest first.
    pub nodes: Vec<NodeTime>,
}

impl PlanProfile {
    /// Milliseconds per run summed by operator, slowest first.
    pub fn by_op(&self) -> Vec<(String, f64)> {
        let mut by_op: BTreeMap<&str, f64> = BTreeMap::new();
        for n in &self.nodes {
            *by_op.entry(&n.op).or_default() += n.ms;
        }
        let mut v: Vec<(String, f64)> = by_op.into_iter().map(|(k, v)| (k.into(), v)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        v
    }
}

/// The plan the pipeline runs for one of its models at `shape` (NCHW): the detector at its
/// input size, or the embedder at 1x3x112x112.
pub fn pipeline_plan(embedder: bool, shape: [usize; 4]) -> TractResult<Arc<TypedRunnableModel>> {
    let onnx = if embedder {
        model::EMBEDDER_ONNX
    } else {
        model::DETECTOR_ONNX
    };
    super::optimise(super::load_onnx(onnx)?, shape)
}

/// Runs `plan` on zeros of `shape` once to warm up, then `runs` times with every node timed by
/// `now` (milliseconds: `Instant` natively, `performance.now()` in a browser worker).
pub fn profile(
    plan: &Arc<TypedRunnableModel>,
    shape: &[usize],
    runs: usize,
    now: &dyn Fn() -> f64,
) -> TractResult<PlanProfile> {
    let input: TValue = Tensor::zero::<f32>(shape)?.into();
    let mut state = plan.spawn()?;
    let mut per_node: BTreeMap<usize, NodeTime> = BTreeMap::new();
    let mut totals = Vec::with_capacity(runs);
    let runs = runs.max(1);
    for run in 0..=runs {
        let t0 = now();
        state.run_plan_with_eval(tvec!(input.clone()), |session, op_state, node, inputs| {
            let t = now();
            let r = match op_state {
                Some(s) => s.eval(session, node.op.as_op(), inputs),
                None => node.op.eval(session, inputs),
            };
            if run > 0 {
                let e = per_node.entry(node.id).or_insert_with(|| NodeTime {
                    id: node.id,
                    op: node.op.name().to_string(),
                    desc: format!(
                        "{} {} {}",
                        node.name,
                        node.op.name(),
                        node.op.info().unwrap_or_default().join(" ")
                    ),
                    ms: 0.0,
                });
                e.ms += now() - t;
            }
            r
        })?;
        if run > 0 {
            totals.push(now() - t0);
        }
    }
    totals.sort_by(f64::total_cmp);
    let mut nodes: Vec<NodeTime> = per_node
        .into_values()
        .map(|mut n| {
            n.ms /= runs as f64;
            n
        })
        .collect();
    nodes.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    Ok(PlanProfile {
        median_ms: totals[totals.len() / 2],
        fastest_ms: totals[0],
        nodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_accounts_for_every_node_of_the_embedder() {
        let plan = pipeline_plan(true, [1, 3, 112, 112]).unwrap();
        let t0 = std::time::Instant::now();
        let now = || t0.elapsed().as_secs_f64() * 1000.0;
        let p = profile(&plan, &[1, 3, 112, 112], 2, &now).unwrap();
        assert!(p.fastest_ms > 0.0 && p.fastest_ms <= p.median_ms);
        let by_op = p.by_op();
        // The fused ops carry most of it, and the per-operator sums add up to the nodes'.
        assert!(
            by_op.iter().any(|(op, _)| op.starts_with("Visage")),
            "{by_op:?}"
        );
        let sum: f64 = by_op.iter().map(|(_, ms)| ms).sum();
        let nodes: f64 = p.nodes.iter().map(|n| n.ms).sum();
        assert!((sum - nodes).abs() < 1e-9);
        assert!(p.nodes.windows(2).all(|w| w[0].ms >= w[1].ms));
    }
}
