//! Per-operator time profile of the pipeline's optimised tract plans (single thread), to find
//! where the time goes: `cargo run --release -p visage-shared --example profile_plan`.
//!
//! Environment: `RUNS` (default 50), `PROFILE_NODES=1` (the 40 slowest nodes too),
//! `PROFILE_TALL=1` (YuNet on 640x640 and 512x640 inputs too), `PROFILE_ONLY_640=1` (only
//! YuNet on 640x480, `RUNS` times: for `perf record`), `DUMP=N` (print the first N
//! nodes of each decluttered graph instead, as the fusion in `visage_shared::fuse` sees them),
//! `VISAGE_NO_FUSE=1` (tract's own operators only).

use std::time::Instant;

use tract_onnx::prelude::*;
use visage_shared::fuse::profile;
use visage_shared::model;

/// The allocator of the `visage` binary, so that the numbers are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn profile(name: &str, embedder: bool, shape: [usize; 4], runs: usize) -> TractResult<()> {
    let plan = profile::pipeline_plan(embedder, shape)?;
    let t0 = Instant::now();
    let now = || t0.elapsed().as_secs_f64() * 1000.0;
    let p = profile::profile(&plan, &shape, runs, &now)?;
    println!(
        "== {name} {shape:?}: median {:.2} ms per run, fastest {:.2} ms",
        p.median_ms, p.fastest_ms
    );
    let by_op = p.by_op();
    let sum: f64 = by_op.iter().map(|(_, ms)| ms).sum();
    for (op, ms) in by_op {
        println!("{ms:8.3} ms {:5.1}%  {op}", 100.0 * ms / sum);
    }
    if std::env::var("PROFILE_NODES").is_ok() {
        for n in p.nodes.iter().take(40) {
            let fact = plan.model().outlet_fact(OutletId::new(n.id, 0))?;
            println!("{:8.3} ms  #{} {} -> {:?}", n.ms, n.id, n.desc, fact.shape);
        }
    }
    Ok(())
}

fn main() -> TractResult<()> {
    visage_shared::allocator::keep_freed_memory();
    let (yunet, mfn) = (model::DETECTOR_ONNX, model::EMBEDDER_ONNX);
    if let Some(limit) = std::env::var("DUMP").ok().and_then(|s| s.parse().ok()) {
        dump(yunet, [1, 3, 256, 320], limit)?;
        return dump(mfn, [1, 3, 112, 112], limit);
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    if std::env::var_os("PROFILE_ONLY_640").is_some() {
        return profile("yunet", false, [1, 3, 480, 640], runs);
    }
    profile("yunet", false, [1, 3, 256, 320], runs)?;
    profile("yunet", false, [1, 3, 480, 640], runs / 4)?;
    if std::env::var("PROFILE_TALL").is_ok() {
        profile("yunet", false, [1, 3, 640, 640], runs / 4)?;
        profile("yunet", false, [1, 3, 640, 512], runs / 4)?;
    }
    profile("mobilefacenet", true, [1, 3, 112, 112], runs)?;
    Ok(())
}

/// Prints the first `limit` nodes of the decluttered graph: name, operator, inputs, shape.
fn dump(onnx: &[u8], shape: [usize; 4], limit: usize) -> TractResult<()> {
    let mut m = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))?
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?;
    visage_shared::fuse::declutter_keeping_layout(&mut m)?;
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
