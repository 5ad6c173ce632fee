//! Image resizing shared by the stages (one place to swap the implementation).

use image::RgbImage;
use image::imageops::{FilterType, resize};

/// Resizes with a triangle (bilinear) filter whose support widens when shrinking, so large
/// photos are low-pass filtered rather than aliased.
pub fn resize_rgb(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    resize(img, width, height, FilterType::Triangle)
}
