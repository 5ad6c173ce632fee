//! Stage 1: bytes to pixels. JPEG, PNG and WebP with EXIF orientation applied, or raw RGBA
//! frames as a browser canvas gives them. Size limits are checked on the header, before any
//! pixel is decoded, so a decompression bomb costs nothing.

mod jpeg_scan;

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// Limits applied before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Largest accepted encoded size in bytes.
    pub max_bytes: usize,
    /// Largest accepted width × height after decoding.
    pub max_pixels: u64,
    /// Largest accepted side in pixels.
    pub max_side: u32,
}

impl Default for DecodeLimits {
    /// 20 MB and 40 megapixels: a modern phone photo passes, a bomb does not.
    fn default() -> Self {
        Self {
            max_bytes: 20 * 1024 * 1024,
            max_pixels: 40_000_000,
            max_side: 16_384,
        }
    }
}

/// Why an input could not be turned into pixels.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the image is empty (0 bytes)")]
    Empty,
    #[error("the image is {bytes} bytes; the limit is {max}")]
    TooManyBytes { bytes: usize, max: usize },
    #[error(
        "the image is {width}x{height} pixels; the limit is {max_pixels} pixels and {max_side} per side"
    )]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
        max_side: u32,
    },
    #[error("not a supported image (JPEG, PNG or WebP expected)")]
    UnsupportedFormat,
    #[error("the image data is corrupt or truncated: {0}")]
    Corrupt(String),
    #[error("raw frame of {width}x{height} needs {expected} RGBA bytes, got {got}")]
    BadFrame {
        width: u32,
        height: u32,
        expected: usize,
        got: usize,
    },
}

impl DecodeError {
    /// A stable machine-readable code for API responses.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "image_empty",
            DecodeError::TooManyBytes { .. } => "image_too_large",
            DecodeError::TooManyPixels { .. } => "image_too_many_pixels",
            DecodeError::UnsupportedFormat => "image_unsupported_format",
            DecodeError::Corrupt(_) => "image_corrupt",
            DecodeError::BadFrame { .. } => "frame_invalid",
        }
    }
}

fn check_dims(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), DecodeError> {
    if width == 0
        || height == 0
        || width > limits.max_side
        || height > limits.max_side
        || width as u64 * height as u64 > limits.max_pixels
    {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    Ok(())
}

/// Refuses a JPEG that decodes only by guessing: a scan cut short (even with an end marker
/// appended), bytes overwritten inside the entropy-coded data, a marker where image data should
/// be, an invalid Huffman code, coefficients never sent. The lenient decoder of
/// [`decode_image`] fills such gaps with grey (as browsers do), which is fine for a probe but
/// not for a template that will be matched for years. Not a JPEG: nothing to check.
pub fn check_jpeg_strict(bytes: &[u8]) -> Result<(), DecodeError> {
    if image::guess_format(bytes).ok() != Some(ImageFormat::Jpeg) {
        return Ok(());
    }
    // The walk covers what a strict decoder checks (and more), without decoding pixels a
    // second time.
    jpeg_scan::walk(bytes).map_err(|e| DecodeError::Corrupt(format!("JPEG data is damaged: {e}")))
}

/// Decodes an encoded JPEG, PNG or WebP into RGB, upright according to its EXIF orientation.
pub fn decode_image(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.len() > limits.max_bytes {
        return Err(DecodeError::TooManyBytes {
            bytes: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let format = image::guess_format(bytes).map_err(|_| DecodeError::UnsupportedFormat)?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP
    ) {
        return Err(DecodeError::UnsupportedFormat);
    }
    if format == ImageFormat::Jpeg && !jpeg_has_end_marker(bytes) {
        // The decoder pads a cut-off JPEG with grey and reports success; refuse it instead.
        return Err(DecodeError::Corrupt(
            "truncated JPEG: no end-of-image marker after the image data".into(),
        ));
    }
    // Read the header alone first, so an oversized image is reported as such (the decoder's
    // own allocation limit below would only say "corrupt").
    if let Ok((width, height)) =
        ImageReader::with_format(Cursor::new(bytes), format).into_dimensions()
    {
        check_dims(width, height, limits)?;
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_side);
    lim.max_image_height = Some(limits.max_side);
    // RGBA16 worst case per pixel, plus slack for the decoder's own buffers.
    lim.max_alloc = Some(limits.max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(lim);
    let mut decoder = reader.into_decoder().map_err(corrupt)?;
    let (width, height) = decoder.dimensions();
    check_dims(width, height, limits)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// Whether an end-of-image marker (FF D9) follows the last start-of-scan (FF DA). Inside
/// entropy-coded data an FF byte is always stuffed (FF 00), so neither marker appears there by
/// chance; an EXIF thumbnail's own markers come before the main image's last scan.
fn jpeg_has_end_marker(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

fn corrupt(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(_) => {
            DecodeError::Corrupt(format!("exceeds decoding limits: {e}"))
        }
        image::ImageError::Unsupported(_) => DecodeError::UnsupportedFormat,
        other => DecodeError::Corrupt(other.to_string()),
    }
}

/// Wraps a raw RGBA frame (as `CanvasRenderingContext2D.getImageData` returns) as RGB.
pub fn from_rgba(
    width: u32,
    height: u32,
    rgba: &[u8],
    limits: &DecodeLimits,
) -> Result<RgbImage, DecodeError> {
    check_dims(width, height, limits)?;
    let expected = width as usize * height as usize * 4;
    if rgba.len() != expected {
        return Err(DecodeError::BadFrame {
            width,
            height,
            expected,
            got: rgba.len(),
        });
    }
    let rgb: Vec<u8> = rgba
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    RgbImage::from_raw(width, height, rgb).ok_or(DecodeError::BadFrame {
        width,
        height,
        expected,
        got: rgba.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_pixel(width, height, image::Rgb([10, 20, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_png_and_rejects_garbage() {
        let l = DecodeLimits::default();
        let img = decode_image(&png(7, 5), &l).unwrap();
        assert_eq!(img.dimensions(), (7, 5));
        assert_eq!(decode_image(b"", &l), Err(DecodeError::Empty));
        assert_eq!(
            decode_image(b"hello, not an image", &l),
            Err(DecodeError::UnsupportedFormat)
        );
        let mut truncated = png(64, 64);
        truncated.truncate(60);
        assert!(matches!(
            decode_image(&truncated, &l),
            Err(DecodeError::Corrupt(_))
        ));
    }

    /// CRC-32 (IEEE), as PNG chunks use.
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn refuses_bombs_from_the_header() {
        // A 20000x20000 PNG header: refused before allocating 1.2 GB.
        let l = DecodeLimits {
            max_pixels: 1_000_000,
            max_side: 4096,
            ..Default::default()
        };
        let big = png(2000, 1000);
        assert!(matches!(
            decode_image(&big, &l),
            Err(DecodeError::TooManyPixels {
                width: 2000,
                height: 1000,
                ..
            })
        ));
        // A PNG whose header claims 100000x100000: patch the IHDR of a small one.
        let mut bomb = png(8, 8);
        bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode_image(&bomb, &DecodeLimits::default()),
            Err(DecodeError::TooManyPixels { width: 100_000, .. })
        ));
        let l = DecodeLimits {
            max_bytes: 10,
            ..Default::default()
        };
        assert!(matches!(
            decode_image(&png(4, 4), &l),
            Err(DecodeError::TooManyBytes { .. })
        ));
    }

    #[test]
    fn honours_exif_orientation() {
        use image::ImageEncoder;
        // 8x4, left half red, right half blue, tagged "rotate 90° clockwise" (orientation 6).
        let img = RgbImage::from_fn(8, 4, |x, _| {
            if x < 4 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let exif: Vec<u8> = vec![
            0x4D, 0x4D, 0x00, 0x2A, 0x00, 0x00, 0x00,
            0x08, // TIFF header, big-endian, IFD at 8
            0x00, 0x01, // one entry
            0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x00,
            0x00, // Orientation = 6
            0x00, 0x00, 0x00, 0x00, // no next IFD
        ];
        let mut out = Vec::new();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95);
        enc.set_exif_metadata(exif).unwrap();
        enc.write_image(img.as_raw(), 8, 4, image::ExtendedColorType::Rgb8)
            .unwrap();
        let upright = decode_image(&out, &DecodeLimits::default()).unwrap();
        // Rotated clockwise: 4 wide, 8 tall, the former left (red) half now on top.
        assert_eq!(upright.dimensions(), (4, 8));
        let top = upright.get_pixel(2, 1).0;
        let bottom = upright.get_pixel(2, 6).0;
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    }

    #[test]
    fn rgba_frames() {
        let l = DecodeLimits::default();
        let img = from_rgba(2, 1, &[1, 2, 3, 255, 4, 5, 6, 255], &l).unwrap();
        assert_eq!(img.get_pixel(1, 0).0, [4, 5, 6]);
        assert!(matches!(
            from_rgba(2, 2, &[0; 8], &l),
            Err(DecodeError::BadFrame { .. })
        ));
    }
}
