//! Pipeline speed benchmark (tract, single thread). Run through `cargo xtask bench`, which runs
//! the onnxruntime reference on the same models in the same run.

use std::time::Instant;

use image::{Rgb, RgbImage};
use visage_shared::{AnalyzeOptions, DecodeLimits, DetectOptions, Pipeline, align};

/// The allocator of the `visage` binary, so that the numbers are the product's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median_ms(n: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    visage_shared::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--iterations")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let t = Instant::now();
    let p = Pipeline::load().expect("models load");
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut out = serde_json::Map::new();
    out.insert("load_ms".into(), load_ms.into());
    // Detection cost depends on the input size, not on the content.
    let mut seed = 1u32;
    let frame = RgbImage::from_fn(640, 480, |_, _| {
        seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
        Rgb([(seed >> 24) as u8, (seed >> 16) as u8, (seed >> 8) as u8])
    });
    for side in [640u32, 320] {
        let opts = DetectOptions {
            max_side: side,
            ..DetectOptions::PHOTO
        };
        let t = Instant::now();
        p.detector.warm_up(640, 480, &opts).expect("plan");
        out.insert(
            format!("detect_plan_build_at_{side}_ms"),
            (t.elapsed().as_secs_f64() * 1000.0).into(),
        );
        out.insert(
            format!("detect_640x480_at_{side}_ms"),
            median_ms(n, || {
                p.detect(&frame, &opts).expect("detect");
            })
            .into(),
        );
    }
    if args.iter().any(|a| a == "--sizes") {
        for (w, h) in [
            (640u32, 480u32),
            (480, 640),
            (640, 512),
            (512, 640),
            (640, 640),
            (320, 256),
            (256, 320),
        ] {
            let img = RgbImage::from_fn(w, h, |x, y| {
                Rgb([(x * 7 + y) as u8, (x ^ y) as u8, (y * 3) as u8])
            });
            let opts = DetectOptions {
                max_side: w.max(h),
                ..DetectOptions::PHOTO
            };
            out.insert(
                format!("detect_input_{w}x{h}_ms"),
                median_ms(n, || {
                    p.detect(&img, &opts).expect("detect");
                })
                .into(),
            );
        }
    }
    let face = RgbImage::from_fn(112, 112, |x, y| Rgb([(x * 2) as u8, (y * 2) as u8, 128]));
    let faces = vec![face.clone(); 8];
    out.insert(
        "embed_batch1_per_face_ms".into(),
        median_ms(n, || {
            p.embedder.embed(&face).expect("embed");
        })
        .into(),
    );
    out.insert(
        "embed_batch8_per_face_ms".into(),
        (median_ms(n.div_ceil(4), || {
            p.embedder.embed_batch(&faces).expect("embed");
        }) / 8.0)
            .into(),
    );
    out.insert(
        "align_ms".into(),
        median_ms(n, || {
            let _ = align::align(
                &frame,
                &align::ARCFACE_TEMPLATE.map(|q| {
                    visage_shared::geometry::Point::new(q.x * 2.0 + 100.0, q.y * 2.0 + 50.0)
                }),
            );
        })
        .into(),
    );
    if let Some(path) = arg("--image") {
        let bytes = std::fs::read(&path).expect("image");
        let img =
            visage_shared::decode::decode_image(&bytes, &DecodeLimits::default()).expect("decode");
        out.insert("image".into(), path.clone().into());
        out.insert(
            "decode_ms".into(),
            median_ms(n, || {
                visage_shared::decode::decode_image(&bytes, &DecodeLimits::default())
                    .expect("decode");
            })
            .into(),
        );
        // Enrollment's strict JPEG check (a Huffman walk of every scan), beside the decode.
        out.insert(
            "strict_jpeg_check_ms".into(),
            median_ms(n, || {
                visage_shared::decode::check_jpeg_strict(&bytes).expect("an intact JPEG");
            })
            .into(),
        );
        // The same work as the onnxruntime reference: no landmark refinement.
        let photo_plain = DetectOptions {
            refine_landmarks: false,
            ..DetectOptions::PHOTO
        };
        // A 640x480 webcam-like frame: the photo scaled to 480 px high, centred on black.
        let cam = {
            let h = 480u32;
            let w = (img.width() * h / img.height()).min(640);
            let small = visage_shared::resize::resize_rgb(&img, w, h);
            let mut cam = RgbImage::new(640, 480);
            image::imageops::replace(&mut cam, &small, ((640 - w) / 2) as i64, 0);
            cam
        };
        for (name, opts, img) in [
            ("photo_640", DetectOptions::PHOTO, &img),
            ("photo_640_no_refine", photo_plain, &img),
            ("video_320", DetectOptions::VIDEO, &img),
            ("frame_640x480_video_320", DetectOptions::VIDEO, &cam),
            ("frame_640x480_at_640", photo_plain, &cam),
        ] {
            let a = AnalyzeOptions { detect: opts };
            out.insert(
                format!("detect_only_{name}_ms"),
                median_ms(n, || {
                    p.detect(img, &opts).expect("detect");
                })
                .into(),
            );
            let img: &RgbImage = img;
            let (scale, w, h) =
                visage_shared::detect::input_size(img.width(), img.height(), opts.max_side);
            out.insert(
                format!("resize_{name}_ms"),
                median_ms(n, || {
                    visage_shared::resize::resize_rgb(
                        img,
                        (img.width() as f32 * scale).round() as u32,
                        (img.height() as f32 * scale).round() as u32,
                    );
                })
                .into(),
            );
            out.insert(format!("detector_input_{name}"), format!("{w}x{h}").into());
            let faces = p.analyze(img, &a).expect("analyze").len();
            out.insert(format!("full_{name}_faces"), faces.into());
            out.insert(
                format!("full_{name}_ms"),
                median_ms(n, || {
                    p.analyze(img, &a).expect("analyze");
                })
                .into(),
            );
        }
    }
    println!("{}", serde_json::Value::Object(out));
}
