//! Pseudo-random test data from a linear congruential generator: the same inputs on every run,
//! for the tests that compare two computations of one thing.

use image::{Rgb, RgbImage};

/// The generator's state.
pub(crate) struct Noise(u32);

impl Noise {
    pub(crate) fn new(seed: u32) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u32 {
        self.0 = self.0.wrapping_mul(1664525).wrapping_add(1013904223);
        self.0
    }

    /// `n` floats in [-1, 1).
    pub(crate) fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next() >> 8) as f32 / (1 << 24) as f32 * 2.0 - 1.0)
            .collect()
    }

    /// A `width` x `height` image of noise.
    pub(crate) fn image(&mut self, width: u32, height: u32) -> RgbImage {
        RgbImage::from_fn(width, height, |_, _| {
            let s = self.next();
            Rgb([(s >> 24) as u8, (s >> 16) as u8, (s >> 8) as u8])
        })
    }
}
