//! The strict JPEG check for enrollment photos (`decode::check_jpeg_strict`) on real photos,
//! fetched at test time (see `visage_shared::fixtures`), re-encoded in every layout a camera or
//! an image editor writes: baseline and progressive, 4:4:4 and 4:2:0, with and without restart
//! markers. Intact files must pass; damaged ones (cut short with an end marker appended, bytes
//! overwritten inside the image data) must be refused, though a lenient decoder shows them.

use jpeg_encoder::{ColorType, Encoder, SamplingFactor};
use visage_shared::DecodeLimits;
use visage_shared::decode::{check_jpeg_strict, decode_image};
use visage_shared::fixtures::face_api_samples;

/// The fixture photos as their original files plus re-encodings in other layouts.
fn variants() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for path in face_api_samples().expect("fetch fixtures (needs npm and the registry)") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).expect("read fixture");
        let img = decode_image(&bytes, &DecodeLimits::default()).expect("decode fixture");
        out.push((name.clone(), bytes));
        let layouts = [
            ("baseline 4:4:4", false, SamplingFactor::F_1_1, 0),
            (
                "baseline 4:2:0, restart every 7 MCUs",
                false,
                SamplingFactor::F_2_2,
                7,
            ),
            ("progressive 4:2:0", true, SamplingFactor::F_2_2, 0),
            (
                "progressive 4:4:4, restart every 5 MCUs",
                true,
                SamplingFactor::F_1_1,
                5,
            ),
        ];
        for (layout, progressive, sampling, restart) in layouts {
            let mut buf = Vec::new();
            let mut enc = Encoder::new(&mut buf, 90);
            enc.set_progressive(progressive);
            enc.set_sampling_factor(sampling);
            enc.set_restart_interval(restart);
            enc.encode(
                img.as_raw(),
                img.width() as u16,
                img.height() as u16,
                ColorType::Rgb,
            )
            .expect("encode");
            out.push((format!("{name} as {layout}"), buf));
        }
    }
    out
}

/// Where the entropy-coded data of the first scan starts and the last one ends (the EOI).
fn image_data(bytes: &[u8]) -> (usize, usize) {
    let sos = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .expect("a scan");
    let len = usize::from(u16::from_be_bytes([bytes[sos + 2], bytes[sos + 3]]));
    let eoi = bytes
        .windows(2)
        .rposition(|w| w == [0xFF, 0xD9])
        .expect("an end marker");
    (sos + 2 + len, eoi)
}

#[test]
fn intact_photos_pass_in_every_layout() {
    for (name, bytes) in variants() {
        check_jpeg_strict(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_photo_cut_short_with_an_end_marker_appended_is_refused() {
    for (name, bytes) in variants() {
        let (start, end) = image_data(&bytes);
        for cut in [start + (end - start) / 2, end - 100, start + 10] {
            let mut damaged = bytes[..cut].to_vec();
            damaged.extend_from_slice(&[0xFF, 0xD9]);
            // The lenient decoder still shows it (grey below the cut): that is the danger.
            assert!(decode_image(&damaged, &DecodeLimits::default()).is_ok());
            let err = check_jpeg_strict(&damaged).expect_err(&format!(
                "{name} cut at {cut} of {} bytes passed",
                bytes.len()
            ));
            assert_eq!(err.code(), "image_corrupt", "{name}");
        }
    }
}

#[test]
fn a_photo_with_bytes_overwritten_in_its_image_data_is_refused() {
    // 200 bytes overwritten at 25 places spread over each file's image data: random bytes at
    // 20 of them, zeros at 5.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut tried = [0; 2];
    let mut refused = [0; 2];
    let mut passed = Vec::new();
    for (name, bytes) in variants() {
        let (start, end) = image_data(&bytes);
        for i in 0..25 {
            let at = start + (end - start - 200) * i / 25;
            let zeros = usize::from(i % 5 == 4);
            let mut damaged = bytes.clone();
            for b in &mut damaged[at..at + 200] {
                *b = if zeros == 1 { 0 } else { random() as u8 };
            }
            tried[zeros] += 1;
            if check_jpeg_strict(&damaged).is_err() {
                refused[zeros] += 1;
            } else {
                passed.push(format!("{name} at {at} ({})", ["random", "zeros"][zeros]));
            }
        }
    }
    println!(
        "200 bytes overwritten: random {} of {} refused, zeros {} of {}; passed: {passed:?}",
        refused[0], tried[0], refused[1], tried[1]
    );
    // Random bytes break the Huffman stream at once. Zeros decode as a run of valid small
    // coefficients and the decoder can fall back into step with the same block count: rare
    // (2 of 150 here), and a lenient decoder shows that band as a flat grey-ish stripe.
    assert_eq!(refused[0], tried[0], "damaged files passed: {passed:?}");
    assert!(
        refused[1] * 100 >= tried[1] * 95,
        "damaged files passed: {passed:?}"
    );
}
