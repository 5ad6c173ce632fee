//! Where model set-up time goes, phase by phase (parse, type analysis, declutter, fusion,
//! optimisation, first run), for both models at the sizes the pipeline uses:
//! `cargo run --release -p visage-shared --example setup_phases` (`RUNS`, default 5: the median
//! is printed).

use std::time::Instant;

use tract_onnx::prelude::*;
use visage_shared::model;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn phases(onnx: &[u8], shape: [usize; 4]) -> TractResult<Vec<(&'static str, f64)>> {
    let mut out = Vec::new();
    let mut t = Instant::now();
    let mut lap = |name: &'static str, out: &mut Vec<(&'static str, f64)>| {
        out.push((name, t.elapsed().as_secs_f64() * 1000.0));
        t = Instant::now();
    };
    let model = visage_shared::fuse::load_onnx(onnx)?;
    lap("parse ONNX, unpack weights", &mut out);
    let typed = model
        .with_input_fact(0, f32::fact(shape).into())?
        .into_typed()?;
    lap("type analysis (into_typed)", &mut out);
    let mut typed = typed;
    visage_shared::fuse::declutter_keeping_layout(&mut typed)?;
    lap("declutter (without the layout pass)", &mut out);
    visage_shared::fuse::fuse(&mut typed)?;
    lap("fuse", &mut out);
    let opt = typed.into_optimized()?;
    lap("optimise", &mut out);
    let plan = opt.into_runnable()?;
    lap("into_runnable", &mut out);
    plan.run(tvec!(Tensor::zero::<f32>(&shape)?.into()))?;
    lap("first run", &mut out);
    plan.run(tvec!(Tensor::zero::<f32>(&shape)?.into()))?;
    lap("second run", &mut out);
    Ok(out)
}

fn main() -> TractResult<()> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let extra = std::env::var("EXTRA_EMBEDDER")
        .ok()
        .map(std::fs::read)
        .transpose()?;
    let mut models = vec![
        ("YuNet 320x256", model::DETECTOR_ONNX, [1, 3, 256, 320]),
        ("YuNet 480x480", model::DETECTOR_ONNX, [1, 3, 480, 480]),
        ("MobileFaceNet", model::EMBEDDER_ONNX, [1, 3, 112, 112]),
    ];
    if let Some(bytes) = &extra {
        models.push(("EXTRA_EMBEDDER", bytes, [1, 3, 112, 112]));
    }
    for (name, onnx, shape) in models {
        let all: Vec<_> = (0..runs)
            .map(|_| phases(onnx, shape))
            .collect::<TractResult<_>>()?;
        println!("{name} (median of {runs}, ms)");
        let mut total = 0.0;
        for (i, (phase, _)) in all[0].iter().enumerate() {
            let mut v: Vec<f64> = all.iter().map(|r| r[i].1).collect();
            v.sort_by(f64::total_cmp);
            let m = v[v.len() / 2];
            if !phase.starts_with("second") {
                total += m;
            }
            println!("  {phase:<28} {m:8.2}");
        }
        println!("  {:<28} {total:8.2}", "set-up + first run");
    }
    Ok(())
}
