//! Per-operator time profile of the pipeline's optimised tract plans (single thread), to find
//! where the time goes: `cargo run --release -p visage-shared --example profile_plan`.
//!
//! Environment: `RUNS` (default 50), `PROFILE_NODES=1` (the 40 slowest nodes too),
//! `PROFILE_TALL=1` (YuNet on 640x640 and 512x640 inputs too), `DUMP=N` (print the first N
//! nodes of each decluttered graph instead, as the fusion in `visage_shared::fuse` sees them),
//! `VISAGE_NO_FUSE=1` (tract's own operators only).

use std::collections::BTreeMap;
use std::time::Instant;

use tract_onnx::prelude::*;
use visage_shared::model;

/// The allocator of the `visage` binary, so that the numbers are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn profile(name: &str, onnx: &[u8], shape: [usize; 4], runs: usize) -> TractResult<()> {
    let plan = visage_shared::fuse::optimise(
        tract_onnx::onnx().model_for_read(&mut std::io::Cursor::new(onnx))?,
        shape,
    )?;
    let input: TValue = Tensor::zero::<f32>(&shape)?.into();
    let mut state = plan.spawn()?;
    let mut per_node: BTreeMap<usize, (f64, String)> = BTreeMap::new();
    let mut total = Vec::new();
    for run in 0..runs + 1 {
        let t0 = Instant::now();
        state.run_plan_with_eval(tvec!(input.clone()), |session, op_state, node, inputs| {
            let t = Instant::now();
            let r = if let Some(s) = op_state {
                s.eval(session, node.op.as_op(), inputs)
            } else {
                node.op.eval(session, inputs)
            };
            if run > 0 {
                let e = per_node.entry(node.id).or_insert_with(|| {
                    (
                        0.0,
                        format!(
                            "{} {}",
                            node.op.name(),
                            node.op.info().unwrap_or_default().join(" ")
                        ),
                    )
                });
                e.0 += t.elapsed().as_secs_f64() * 1000.0;
            }
            r
        })?;
        if run > 0 {
            total.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
    }
    total.sort_by(f64::total_cmp);
    println!(
        "== {name} {shape:?}: median {:.2} ms per run",
        total[total.len() / 2]
    );
    let mut by_op: BTreeMap<String, f64> = BTreeMap::new();
    for (ms, desc) in per_node.values() {
        let op = desc.split_whitespace().next().unwrap_or("").to_string();
        *by_op.entry(op).or_default() += ms / runs as f64;
    }
    let sum: f64 = by_op.values().sum();
    let mut v: Vec<_> = by_op.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (op, ms) in v {
        println!("{ms:8.3} ms {:5.1}%  {op}", 100.0 * ms / sum);
    }
    if std::env::var("PROFILE_NODES").is_ok() {
        let mut nodes: Vec<_> = per_node.into_iter().collect();
        nodes.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        for (id, (ms, desc)) in nodes.iter().take(40) {
            let node = plan.model().node(*id);
            let fact = plan.model().outlet_fact(OutletId::new(*id, 0))?;
            println!(
                "{:8.3} ms  #{id} {} {desc} -> {:?}",
                ms / runs as f64,
                node.name,
                fact.shape
            );
        }
    }
    Ok(())
}

fn main() -> TractResult<()> {
    let (yunet, mfn) = (model::DETECTOR_ONNX, model::EMBEDDER_ONNX);
    if let Some(limit) = std::env::var("DUMP").ok().and_then(|s| s.parse().ok()) {
        dump(yunet, [1, 3, 256, 320], limit)?;
        return dump(mfn, [1, 3, 112, 112], limit);
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    profile("yunet", yunet, [1, 3, 256, 320], runs)?;
    profile("yunet", yunet, [1, 3, 480, 640], runs / 4)?;
    if std::env::var("PROFILE_TALL").is_ok() {
        profile("yunet", yunet, [1, 3, 640, 640], runs / 4)?;
        profile("yunet", yunet, [1, 3, 640, 512], runs / 4)?;
    }
    profile("mobilefacenet", mfn, [1, 3, 112, 112], runs)?;
    Ok(())
}

/// Prints the first `limit` nodes of the decluttered graph: name, operator, inputs, shape.
fn dump(onnx: &[u8], shape: [usize; 4], limit: usize) -> TractResult<()> {
    let m = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?
        .into_decluttered()?;
    for n in m.nodes().iter().take(limit) {
        println!(
            "#{} {} [{}] {:?} inputs {:?} -> {:?}",
            n.id,
            n.name,
            n.op.name(),
            n.op.info()?,
            n.inputs.iter().map(|o| o.node).collect::<Vec<_>>(),
            m.outlet_fact(OutletId::new(n.id, 0))?.shape
        );
    }
    Ok(())
}
